"""``/ts watch``, ``/ts unwatch`` and ``/ts watches`` through the real command router and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from storage import alerts, watches
from storage.db import write
from tests.helpers.alerts import HOUR, ICCIDS, AlertBench, alert_bench, seed_directory

D1, D2, D3 = (f"iccid:{i}" for i in ICCIDS[:3])


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[AlertBench]:
    yield from alert_bench(tmp_path)


def _count(bench: AlertBench, table: str) -> int:
    return int(bench.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_watch_records_the_rule_and_queues_the_monitor_start(bench: AlertBench) -> None:
    """watch stores one watch per device with its rule and channel, audits it and queues the monitor job."""
    reply = bench.command(f"watch {D1},{D2} {D3} --alert-after 30m --channel <#C0ALERTS|alerts>")
    assert "Watching 3 devices" in reply.text and "<#C0ALERTS>" in reply.text
    rows = watches.watched(bench.db, [D1, D2, D3])
    assert {w.channel for w in rows.values()} == {"C0ALERTS"}
    assert {w.alert_after for w in rows.values()} == {1800.0}
    assert all(w.wake_every is None and w.condition == "unreachable" for w in rows.values())
    assert bench.jobs("watch-monitors") == 1
    [entry] = bench.audit("watch")
    assert entry["outcome"] == "ok" and sorted(entry["targets"]) == sorted([D1, D2, D3])
    assert entry["detail"]["added"] == 3


def test_watch_defaults_to_the_configured_alert_after_and_the_alerts_channel(tmp_path: Path) -> None:
    """Without options a watch uses [alerts] alert_after and [channels] alerts."""
    for bench in alert_bench(tmp_path, watch_alert_after=timedelta(minutes=45), alerts_channel="C0ALERTS"):
        bench.command(f"watch {D1}")
        watch = watches.get_watch(bench.db, D1)
        assert watch is not None and watch.alert_after == 45 * 60 and watch.channel == "C0ALERTS"


def test_sleepy_watch_uses_wake_every_and_missed_wakes(bench: AlertBench) -> None:
    """--wake-every makes the device sleepy: no alert-after, N missed wakes from the settings."""
    reply = bench.command(f"watch {D1} --wake-every 12h")
    assert "sleepy" in reply.text and "3 missed wakes" in reply.text
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None
    assert (watch.wake_every, watch.alert_after, watch.missed_wakes) == (12 * HOUR, None, 2)
    assert watch.condition == "missed-wakes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"watch {D1} --alert-after soon", "is not a duration"),
        (f"watch {D1} --alert-after 5s", "must be between 10 s and 30 d"),
        (f"watch {D1} --wake-every 40d", "must be between 10 s and 30 d"),
        (f"watch {D1} --alert-after 2h --wake-every 6h", "not both"),
        (f"watch {D1} --channel general", "is not a channel"),
        ("watch", "needs one or more devices"),
        ("watch meid:A100008385E561", "monitors reachability only by"),
        ("watch iccid:123", "is not a valid iccid"),
        (f"watch {D1} --every 2h", "does not take --every"),
    ],
)
def test_bad_watch_input_gets_a_clear_error_and_changes_nothing(
    bench: AlertBench, text: str, expected: str
) -> None:
    """Each wrong watch command says what is wrong; no watch, no job, an 'invalid' audit row."""
    reply = bench.command(text)
    assert expected in reply.text
    assert _count(bench, "watches") == 0
    assert bench.jobs("watch-monitors") == 0
    assert [e["outcome"] for e in bench.audit("watch")] == ["invalid"]


def test_dry_run_shows_the_plan_and_changes_nothing(bench: AlertBench) -> None:
    """--dry-run names the API call and the device count; nothing is stored or queued."""
    reply = bench.command(f"watch {D1} {D2} --alert-after 1h --dry-run")
    assert "Dry run" in reply.text and "2 devices" in reply.text and "devicereachability" in reply.text
    assert _count(bench, "watches") == 0 and bench.jobs("watch-monitors") == 0
    assert [e["outcome"] for e in bench.audit("watch")] == ["dry-run"]


def test_a_viewer_may_list_watches_but_not_watch(bench: AlertBench) -> None:
    """The NOC analyst (viewer by channel) is refused watch and allowed watches."""
    refused = bench.command(f"watch {D1}", user="U0NOC1", channel="C0NOC")
    assert "needs the *operator* role" in refused.text
    assert _count(bench, "watches") == 0
    assert "Nothing is watched yet" in bench.command("watches", user="U0NOC1", channel="C0NOC").text
    operator = bench.command(f"watch {D1}", user="U0OPS1", channel="C0NOC")
    assert "Watching 1 device" in operator.text


def test_watching_a_group_watches_its_members(bench: AlertBench) -> None:
    """group:NAME resolves through the device directory."""
    members = [f"iccid:{i}" for i in ICCIDS[:12]]
    seed_directory(bench, members, group="meters")
    reply = bench.command("watch group:meters --wake-every 12h")
    assert "Watching 12 devices" in reply.text
    assert watches.count_watches(bench.db) == 12


def test_watching_again_changes_the_rule_and_closes_alerts_of_the_old_rule(bench: AlertBench) -> None:
    """Re-watching updates in place; an open alert of the other condition is closed on its card."""
    bench.command(f"watch {D1} --alert-after 1h")
    bench.callback(D1, False)
    bench.advance(HOUR)
    assert alerts.count_open(bench.db) == 1
    reply = bench.command(f"watch {D1} --wake-every 6h --channel #C0OTHER")
    assert "1 updated" in reply.text and "1 open alert(s) of the old rule were closed" in reply.text
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None and watch.wake_every == 6 * HOUR and watch.channel == "C0OTHER"
    assert alerts.count_open(bench.db) == 0
    assert "rule was changed" in bench.card_text("alert:1")
    assert watches.count_watches(bench.db) == 1


def test_unwatch_removes_watches_closes_alerts_and_stops_monitors(bench: AlertBench) -> None:
    """unwatch deletes the watch, resolves its alert (card updated) and marks its monitors to stop."""
    bench.command(f"watch {D1} {D2} --alert-after 1h")
    db = bench.db
    watch = watches.get_watch(db, D1)
    assert watch is not None
    with write(db):  # as the monitor job does when ThingSpace accepts the start
        [row] = watches.claim_monitor_starts(db, [watch], expires_at=bench.now + 86400, now=bench.now)
        watches.mark_monitors_requested(db, [row], request_id="req-1", now=bench.now)
    bench.callback(D1, False, request_id="req-1", monitor_id="mon-d1")
    bench.advance(HOUR)
    reply = bench.command(f"unwatch {D1} {D3}")
    assert "Stopped watching 1 device" in reply.text and "1 named were not watched" in reply.text
    assert "closed 1 open alert" in reply.text
    assert watches.get_watch(bench.db, D1) is None and watches.get_watch(bench.db, D2) is not None
    assert [m.state for m in watches.monitors_of(bench.db, D1)] == ["stop"]
    assert "no longer watched" in bench.card_text("alert:1")
    assert bench.jobs("watch-monitors") == 2
    assert bench.audit("unwatch")[-1]["detail"]["removed"] == 1


def test_unwatching_devices_that_are_not_watched_changes_nothing(bench: AlertBench) -> None:
    """unwatch of an unwatched device says so and queues nothing."""
    reply = bench.command(f"unwatch {D1}")
    assert "is watched; nothing changed" in reply.text
    assert bench.jobs("watch-monitors") == 0


def test_watches_lists_channels_and_open_alerts_and_device_details(bench: AlertBench) -> None:
    """watches: counts per channel, open alerts; with a target, that device's rule, state and monitor."""
    bench.command(f"watch {D1} {D2} --alert-after 1h")
    bench.command(f"watch {D3} --wake-every 12h --channel #C0METERS")
    bench.callback(D1, False)
    bench.advance(HOUR)
    summary = bench.command("watches").text
    assert "3 devices watched" in summary
    assert "<#C0OPS>: 2 watched · 1 unreachable now · 1 open alert(s)" in summary
    assert "<#C0METERS>: 1 watched (1 sleepy)" in summary
    assert "unreachable, firing" in summary
    detail = bench.command(f"watches {D1} {D3}").text
    assert "alert when unreachable for 1 h" in detail and "unreachable since" in detail
    assert "unreachable alert firing" in detail
    assert "wakes every 12 h" in detail or "expected to wake every 12 h" in detail
    assert "not heard from yet" in detail and "monitor: none yet" in detail
