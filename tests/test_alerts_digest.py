"""The daily digest per channel at the configured local time, and the alert settings it relies on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import ConfigError, parse_config
from bot.reachability_jobs import digest_day, send_digests
from tests.helpers_alerts import HOUR, ICCIDS, AlertBench, alert_bench

MIN = 60.0
D1, D2, D3 = (f"iccid:{i}" for i in ICCIDS[:3])
NEW_YORK_9AM = datetime(2027, 1, 15, 14, 0, tzinfo=UTC).timestamp()  # 09:00 EST


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[AlertBench]:
    yield from alert_bench(tmp_path, timezone="America/New_York", digest_time="09:00")


def _digests(bench: AlertBench) -> list[str]:
    return [c.key for c in bench.cards() if c.key.startswith("digest:")]


def test_the_digest_is_due_at_the_local_time_in_the_configured_zone(bench: AlertBench) -> None:
    """09:00 in New York is 14:00 UTC in January; the digest is due from then for a few hours."""
    assert digest_day(bench.settings, NEW_YORK_9AM - 1) is None
    assert digest_day(bench.settings, NEW_YORK_9AM) == "2027-01-15"
    assert digest_day(bench.settings, NEW_YORK_9AM + 5 * HOUR) == "2027-01-15"
    assert digest_day(bench.settings, NEW_YORK_9AM + 7 * HOUR) is None
    summer = datetime(2027, 7, 15, 13, 0, tzinfo=UTC).timestamp()  # 09:00 EDT
    assert digest_day(bench.settings, summer) == "2027-07-15"


def test_one_digest_per_channel_per_day_with_the_day_figures(bench: AlertBench) -> None:
    """Each channel with watches gets one digest a day: watched, unreachable, open, longest outage, raised, resolved."""
    bench.now = NEW_YORK_9AM - 20 * HOUR
    bench.command(f"watch {D1} {D2} --alert-after 1h")
    bench.command(f"watch {D3} --wake-every 12h --channel #C0METERS")
    for device in (D1, D2):
        bench.callback(device, True, at=bench.now - 1)
        bench.callback(device, False)
    bench.advance(HOUR)  # both alert
    bench.advance(3 * HOUR)
    bench.callback(D1, True)  # D1 was down 4 h
    bench.advance(15 * MIN)
    bench.now = NEW_YORK_9AM - MIN
    assert send_digests(bench.db, bench.settings, now=bench.now) == 0
    bench.now = NEW_YORK_9AM
    assert send_digests(bench.db, bench.settings, now=bench.now) == 2
    assert send_digests(bench.db, bench.settings, now=bench.now + 10 * MIN) == 0
    assert _digests(bench) == ["digest:C0METERS:2027-01-15", "digest:C0OPS:2027-01-15"]
    ops = bench.card("digest:C0OPS:2027-01-15")
    fields = {
        f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1]
        for b in ops["blocks"]
        if b["type"] == "section" and "fields" in b
        for f in b["fields"]
    }
    assert fields["Devices watched"] == "2"
    assert fields["Unreachable now"] == "1"
    assert fields["Alerts open now"] == "1"
    assert fields["Alerts raised (24 h)"] == "2"
    assert fields["Alerts resolved (24 h)"] == "1"
    assert (
        fields["Longest outage (24 h)"].endswith("(ongoing)") and "…0002" in fields["Longest outage (24 h)"]
    )
    assert "2027-01-15 (America/New_York)" in ops["blocks"][0]["text"]["text"]
    meters = bench.card("digest:C0METERS:2027-01-15")
    assert "1 watched" in meters["text"] and "0 alerts raised" in meters["text"]
    bench.now = NEW_YORK_9AM + 24 * HOUR
    assert send_digests(bench.db, bench.settings, now=bench.now) == 2


def test_no_watches_no_digest(bench: AlertBench) -> None:
    """A workspace that watches nothing gets no digest."""
    assert send_digests(bench.db, bench.settings, now=NEW_YORK_9AM) == 0
    assert bench.cards() == []


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "is not a time zone"),
        ({"digest_time": "9am"}, "is not a time of day"),
        ({"digest_time": "24:00"}, "is not a time of day"),
        ({"alert_after": "soon"}, "alerts.alert_after"),
        ({"missed_wakes": 0}, "must be a positive whole number"),
    ],
)
def test_bad_alert_settings_are_refused_with_a_clear_message(alerts: dict[str, object], message: str) -> None:
    """The [alerts] table rejects an unknown zone, a malformed time and bad rule defaults."""
    with pytest.raises(ConfigError, match=message):
        parse_config({"alerts": alerts})


def test_alert_rule_defaults_come_from_the_config_file() -> None:
    """[alerts] alert_after and missed_wakes set the watch defaults."""
    out = parse_config({"alerts": {"alert_after": "45m", "missed_wakes": 3, "timezone": "Europe/Paris"}})
    assert out["watch_alert_after"].total_seconds() == 45 * 60
    assert out["watch_missed_wakes"] == 3
    assert out["timezone"] == "Europe/Paris"
