"""The daily digest per channel at the configured local time, and the alert settings it relies on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.core.config import ConfigError, parse_config
from bot.scheduler.reachability_tasks import digest_day, send_digests
from tests.helpers.alerts import HOUR, ICCIDS, AlertBench, alert_bench

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
        fields["Longest outage (24 h)"].endswith("(ongoing)")
        and f"…{D2[-4:]}" in fields["Longest outage (24 h)"]
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


def _at(text: str) -> float:
    """An instant written in UTC, e.g. ``2027-11-07 03:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def late(tmp_path: Path) -> Iterator[AlertBench]:
    """Digest at 23:00 New York time: its catch-up window crosses midnight."""
    yield from alert_bench(tmp_path, timezone="America/New_York", digest_time="23:00")


def test_a_late_digest_is_still_due_after_local_midnight(late: AlertBench) -> None:
    """23:00 EST is 04:00 UTC the next day; the day's digest stays due for six hours, past midnight."""
    assert digest_day(late.settings, _at("2027-01-16 03:59")) is None  # 22:59 on the 15th
    assert digest_day(late.settings, _at("2027-01-16 04:00")) == "2027-01-15"  # 23:00
    assert digest_day(late.settings, _at("2027-01-16 05:30")) == "2027-01-15"  # 00:30 on the 16th
    assert digest_day(late.settings, _at("2027-01-16 09:59")) == "2027-01-15"  # 04:59
    assert digest_day(late.settings, _at("2027-01-16 10:00")) is None  # 05:00: six hours have passed


def test_a_bot_down_at_digest_time_sends_that_day_digest_after_midnight(late: AlertBench) -> None:
    """Down at 23:00, back at 00:30: the day that ended gets its digest (dated that day), once; the
    next day's follows at its own 23:00."""
    late.now = _at("2027-01-15 20:00")
    late.command(f"watch {D1} --alert-after 1h")
    assert send_digests(late.db, late.settings, now=_at("2027-01-16 05:30")) == 1  # 00:30 local
    assert send_digests(late.db, late.settings, now=_at("2027-01-16 06:00")) == 0
    assert _digests(late) == ["digest:C0OPS:2027-01-15"]
    assert (
        "2027-01-15 (America/New_York)" in late.card("digest:C0OPS:2027-01-15")["blocks"][0]["text"]["text"]
    )
    assert send_digests(late.db, late.settings, now=_at("2027-01-17 03:59")) == 0  # 22:59 on the 16th
    assert send_digests(late.db, late.settings, now=_at("2027-01-17 04:00")) == 1
    assert _digests(late) == ["digest:C0OPS:2027-01-15", "digest:C0OPS:2027-01-16"]


def test_the_catch_up_window_is_six_real_hours_across_a_dst_change(late: AlertBench) -> None:
    """New York falls back at 02:00 on 2027-11-07 and springs forward at 02:00 on 2027-03-14. The
    window is six hours of real time from the moment 23:00 happened, whatever the wall clock did."""
    # fall back: 23:00 EDT on the 6th is 03:00 UTC; six hours later it is 04:00 EST (wall clock +5 h)
    assert digest_day(late.settings, _at("2027-11-07 02:59")) is None
    assert digest_day(late.settings, _at("2027-11-07 03:00")) == "2027-11-06"
    assert digest_day(late.settings, _at("2027-11-07 08:59")) == "2027-11-06"
    assert digest_day(late.settings, _at("2027-11-07 09:00")) is None
    # spring forward: 23:00 EST on the 13th is 04:00 UTC; six hours later it is 06:00 EDT (wall +7 h)
    assert digest_day(late.settings, _at("2027-03-14 03:59")) is None
    assert digest_day(late.settings, _at("2027-03-14 04:00")) == "2027-03-13"
    assert digest_day(late.settings, _at("2027-03-14 09:59")) == "2027-03-13"
    assert digest_day(late.settings, _at("2027-03-14 10:00")) is None


def test_a_digest_time_skipped_by_spring_forward_falls_an_hour_later(tmp_path: Path) -> None:
    """02:30 does not exist in New York on 2027-03-14: that day's digest is due at 03:30 EDT."""
    for bench in alert_bench(tmp_path, timezone="America/New_York", digest_time="02:30"):
        assert digest_day(bench.settings, _at("2027-03-14 07:29")) is None
        assert digest_day(bench.settings, _at("2027-03-14 07:30")) == "2027-03-14"  # 03:30 EDT
        assert digest_day(bench.settings, _at("2027-03-15 06:30")) == "2027-03-15"  # 02:30 EDT
