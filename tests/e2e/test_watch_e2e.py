"""The whole path over loopback: /ts watch → ThingSpace monitor (sandbox) → the sandbox flips a
device's reachability → DiagnosticsService callback → state → evaluation job → card in the Slack
stand-in → buttons → recovery in place → unwatch stops the monitor."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.console.records import Message
from bot.local_stack import LocalStack
from bot.sandbox import EXAMPLE_ICCID
from bot.scheduler.reachability_tasks import evaluate_task, monitors_task
from storage import alerts, directory, watches

MONITOR_PATH = "/m2m/v1/diagnostics/basic/devicereachability"
DEVICE = f"iccid:{EXAMPLE_ICCID}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    s = LocalStack(tmp_path, devices=60, scheduler=False)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _state(stack: LocalStack, device: str) -> bool | None:
    state = watches.get_state(_db(stack), device)
    return None if state is None else state.reachable


def _active(stack: LocalStack, device: str) -> bool:
    return any(m.state == "active" and m.monitor_id for m in watches.monitors_of(_db(stack), device))


def _card(stack: LocalStack, predicate: Callable[[Message], bool]) -> Message:
    return stack.standin.wait_for(
        lambda m: m.thread_ts is None and m.user is None and predicate(m), timeout=15
    )


def test_sandbox_reachability_flip_raises_a_card_that_acts_and_recovers_in_place(stack: LocalStack) -> None:
    """Down → one card with buttons; Acknowledge and Diagnose work from Slack; back up → 'recovered after' in place."""
    assert stack.runtime is not None
    stack.command(f"watch {DEVICE} --alert-after 10m")
    _wait(
        lambda: _active(stack, DEVICE)
    )  # the worker started the monitor; the registration callback named it
    [start] = stack.sandbox.requests_received(MONITOR_PATH, "POST")
    assert start["status"] == 200
    _wait(lambda: _state(stack, DEVICE) is True)

    stack.sandbox.set_reachability(EXAMPLE_ICCID, False)
    _wait(lambda: _state(stack, DEVICE) is False)
    assert evaluate_task(stack.runtime.deps, now=time.time() + 9 * 60).raised == 0
    assert evaluate_task(stack.runtime.deps, now=time.time() + 10 * 60 + 5).raised == 1
    card = _card(stack, lambda m: "Unreachable" in str(m.blocks))
    assert [b.text for b in card.buttons()] == [
        "Acknowledge",
        "Snooze 1 h",
        "Snooze 4 h",
        "Snooze 24 h",
        "Diagnose",
    ]

    assert stack.click("Acknowledge", user="U0OPS1").status_code == 200
    acked = _card(stack, lambda m: m.ts == card.ts and "Acknowledged by <@U0OPS1>" in str(m.blocks))
    assert acked.updated

    assert stack.click("Diagnose", user="U0OPS2").status_code == 200
    stack.standin.wait_for(
        lambda m: m.thread_ts == card.ts and "<@U0OPS2> asked for diagnostics" in m.text, timeout=20
    )

    stack.sandbox.set_reachability(EXAMPLE_ICCID, True)
    _wait(lambda: _state(stack, DEVICE) is True)
    evaluate_task(stack.runtime.deps, now=time.time() + 14 * 60)  # not yet 15 min back up: flap damping
    assert alerts.count_open(_db(stack)) == 1
    assert evaluate_task(stack.runtime.deps, now=time.time() + 16 * 60).recovered == 1
    _card(stack, lambda m: m.ts == card.ts and "Recovered" in str(m.blocks))
    stack.standin.wait_for(lambda m: m.thread_ts == card.ts and "recovered after" in m.text, timeout=15)
    roots = [
        m
        for m in stack.standin.messages("C0OPS")
        if m.thread_ts is None and "Unreachable" in str(m.versions[0].blocks)
    ]
    assert len(roots) == 1

    stack.command(f"unwatch {DEVICE}")
    _wait(lambda: bool(stack.sandbox.requests_received(MONITOR_PATH, "DELETE")))
    assert [m.state for m in watches.monitors_of(_db(stack), DEVICE)] == ["stopped"]


def test_many_devices_down_together_make_one_grouped_card(stack: LocalStack) -> None:
    """Eight trackers go dark at once: the channel gets one grouped card, not eight."""
    assert stack.runtime is not None
    members = [d.key for d in directory.group_members(_db(stack), "trackers")][:8]
    assert len(members) == 8
    stack.standin.add_channel("C0FEEDER", "feeder-9")
    for key in members:
        stack.sandbox.set_reachability(key.split(":", 1)[1], True)
    stack.command(f"watch {' '.join(members)} --alert-after 5m --channel #C0FEEDER")
    _wait(lambda: all(_active(stack, key) for key in members))
    for key in members:
        stack.sandbox.set_reachability(key.split(":", 1)[1], False)
    _wait(lambda: all(_state(stack, key) is False for key in members))
    tick = evaluate_task(stack.runtime.deps, now=time.time() + 5 * 60 + 5)
    assert (tick.raised, tick.groups_opened) == (8, 1)
    group = stack.standin.wait_for(
        lambda m: m.channel == "C0FEEDER" and "8 devices went down together" in str(m.blocks)
    )
    assert [m.ts for m in stack.standin.messages("C0FEEDER") if m.thread_ts is None] == [group.ts]
    assert stack.click("Snooze 4 h", user="U0OPS2", channel="C0FEEDER").status_code == 200
    stack.standin.wait_for(lambda m: m.ts == group.ts and "8 snoozed" in str(m.blocks), timeout=15)


def test_monitors_are_renewed_before_they_expire(stack: LocalStack) -> None:
    """Six days later (a quarter of the week-long monitor left) the job starts a new one and stops the old."""
    assert stack.runtime is not None
    stack.command(f"watch {DEVICE} --alert-after 1h")
    _wait(lambda: _active(stack, DEVICE))
    [old] = watches.monitors_of(_db(stack), DEVICE)
    assert monitors_task(stack.runtime.deps, now=time.time() + 3600).requested == 0
    renewed = monitors_task(stack.runtime.deps, now=time.time() + 6 * 86400)
    assert renewed.requested == 1
    _wait(lambda: len([m for m in watches.monitors_of(_db(stack), DEVICE) if m.state == "active"]) == 1)
    rows = {m.id: m for m in watches.monitors_of(_db(stack), DEVICE)}
    assert rows[old.id].state in {"stop", "stopped"}
    monitors_task(stack.runtime.deps, now=time.time() + 6 * 86400)
    assert watches.monitors_of(_db(stack), DEVICE)[0].state == "stopped"
    assert stack.sandbox.requests_received(MONITOR_PATH, "DELETE")


def test_a_refused_monitor_start_is_reported_and_retried(stack: LocalStack) -> None:
    """ThingSpace answering 500 to the start: the requester is told, the watch waits 15 min to retry."""
    assert stack.runtime is not None
    stack.sandbox.inject_fault(MONITOR_PATH, count=1, status=500)
    stack.command(f"watch {DEVICE} --alert-after 1h")
    stack.standin.wait_for(lambda m: "did not accept the reachability monitors" in m.text, timeout=15)
    watch = watches.get_watch(_db(stack), DEVICE)
    assert watch is not None and watch.monitor_error and watch.monitor_retry_at is not None
    assert monitors_task(stack.runtime.deps, now=time.time() + 60).requested == 0
    assert monitors_task(stack.runtime.deps, now=time.time() + 16 * 60).requested == 1


def test_a_reach_query_answer_also_updates_the_reachability_state(stack: LocalStack) -> None:
    """/ts reach: its DiagnosticsService answer lands in the thread and in the device's state and history."""
    stack.command(f"reach {DEVICE}")
    _wait(lambda: _state(stack, DEVICE) is True)
    assert [reachable for _, reachable in watches.history(_db(stack), DEVICE)] == [True]


def test_a_failed_monitor_callback_marks_the_monitor_failed_and_schedules_a_retry(stack: LocalStack) -> None:
    """ThingSpace accepts the start but answers the device with a bare faultResponse callback.

    The body names no service; the bot knows the request id as a monitor start, so the failure is
    a DiagnosticsService one: the monitor is marked failed and the watch retries in 15 minutes.
    """
    assert stack.runtime is not None
    unknown = "iccid:89148000000800999998"  # a valid check digit, unknown to the account
    stack.command(f"watch {unknown} --alert-after 1h")
    _wait(lambda: any(m.state == "failed" for m in watches.monitors_of(_db(stack), unknown)))
    [monitor] = watches.monitors_of(_db(stack), unknown)
    assert "No device with iccid" in (monitor.error or "")
    watch = watches.get_watch(_db(stack), unknown)
    assert watch is not None and watch.monitor_retry_at is not None
    assert "No device with iccid" in (watch.monitor_error or "")
    assert monitors_task(stack.runtime.deps, now=time.time() + 60).requested == 0
    assert monitors_task(stack.runtime.deps, now=time.time() + 16 * 60).requested == 1
