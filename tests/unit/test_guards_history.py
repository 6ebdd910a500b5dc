"""The guard rails' numbers from a line's provisioning history (SDK ``ProvisioningHistory``):
actions today, days suspended in a row and in the last 12 months, and the state — as pure
functions, and against the sandbox's own rules over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.sandbox.rules import actions_today, suspended_days_continuous, suspended_days_year
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import ProvisioningEvent
from commands import actions, guards
from commands.guards import HISTORY_SPAN, limits_from_history
from commands.targets import ResolvedDevice
from tests.helpers.thingspace import START, Running, client_for, running_sandbox

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def event(days_ago: float, event_type: str, status: str = "Success") -> ProvisioningEvent:
    return ProvisioningEvent(occurred_at=NOW - timedelta(days=days_ago), event_type=event_type, status=status)


def test_actions_today_count_only_todays_done_changes() -> None:
    """Today's suspends and restores count; yesterday's, failed ones and device moves do not."""
    events = [
        event(1.2, "Suspend"),
        event(0.4, "Restore"),
        event(0.3, "Suspend", status="Failed"),
        event(0.2, "Device Move"),
        event(0.1, "Suspend"),
    ]
    limits = limits_from_history(events, NOW)
    assert limits.actions_today == 2
    assert limits.state == "suspend"
    assert limits.source == "provisioning history"


def test_suspension_days_in_a_row_and_in_twelve_months() -> None:
    """A 30-day suspension 200 days ago and the current one of 20 days: 20 in a row, 50 a year."""
    events = [event(300, "Activate"), event(200, "Suspend"), event(170, "Restore"), event(20, "Suspend")]
    limits = limits_from_history(events, NOW)
    assert (limits.suspended_days_continuous, limits.suspended_days_year) == (20, 50)
    assert limits.actions_today == 0


def test_a_history_that_starts_with_a_restore_was_suspended_before_the_window() -> None:
    """The first event in the window is a restore: the line was suspended since before it."""
    events = [event(360, "Restore")]
    limits = limits_from_history(events, NOW)
    assert limits.suspended_days_year == (HISTORY_SPAN - timedelta(days=360)).days
    assert limits.suspended_days_continuous == 0 and limits.state == "active"


def test_an_empty_history_knows_no_state() -> None:
    """No event in the window: nothing used, state unknown (the directory decides)."""
    limits = limits_from_history([], NOW)
    assert (limits.actions_today, limits.suspended_days_year, limits.state) == (0, 0, None)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Running]:
    with running_sandbox(devices=30) as running:
        yield running


@pytest.mark.parametrize("condition", ["suspended", "action-limit", "healthy"])
def test_the_history_gives_what_the_sandbox_rules_say(sandbox: Running, condition: str) -> None:
    """Read over loopback, the history of each demo line gives the numbers the sandbox's own
    provisioning rules enforce, and the state the last event left."""
    iccid = sandbox.sandbox.demo_devices()[condition]["iccid"]
    device_id = DeviceId("iccid", iccid)
    with client_for(sandbox.url) as client:
        events = list(client.provisioning_history(device_id, START - HISTORY_SPAN, START))
    limits = limits_from_history(events, START)
    with sandbox.sandbox.state.lock:
        line = sandbox.sandbox.state.resolve_text(f"iccid:{iccid}")
        expected = (
            actions_today(line, START),
            suspended_days_continuous(line, START),
            suspended_days_year(line, START),
            line.state if events else None,  # no event in the window: the directory decides
        )
    assert (
        limits.actions_today,
        limits.suspended_days_continuous,
        limits.suspended_days_year,
        limits.state,
    ) == expected


def test_limit_reads_stop_on_time_and_say_why_each_line_was_not_read(sandbox: Running) -> None:
    """Reads go in batches within a time budget; a line ThingSpace refuses is counted as failed,
    lines not reached in time as late, and the card's sentence gives both numbers."""
    demo = sandbox.sandbox.demo_devices()
    ids = [DeviceId("iccid", demo[c]["iccid"]) for c in ("healthy", "suspended")]
    ids.append(DeviceId("iccid", "89148000000000000001"))  # not in the account
    devices = [ResolvedDevice(i, f"iccid:{i.id}", None) for i in ids]
    with client_for(sandbox.url) as client:
        read = guards.read_limits(client, devices, budget=30, now=START)
        too_late = guards.read_limits(client, devices * 200, budget=0.0, now=START)
    assert set(read) == {d.key for d in devices[:2]} and read.failed == 1 and not read.late
    checked = guards.check("resume", devices, bot_actions_today={}, limits=read)
    assert [d.key for d in checked.unread] == [devices[2].key] and checked.unread_late == 0
    assert not too_late and too_late.late == {d.key for d in devices} and too_late.failed == 0
    late = guards.check("resume", devices[1:], bot_actions_today={}, limits=too_late)
    assert len(late.unread) == late.unread_late == 2
    sentence = actions.unread_sentence(3, 2, 90)
    assert "did not answer for 1 device" in sentence
    assert "2 devices were not reached within the 90 s" in sentence
