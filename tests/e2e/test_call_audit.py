"""Every ThingSpace call made for someone is in the audit log: operation, outcome and latency."""

from __future__ import annotations

import time

from bot.local_stack import LocalStack
from bot.sandbox import EXAMPLE_ICCID
from storage import watches
from storage.audit.log import AuditLog, AuditRow
from tests.helpers.stacks import stack_fixture

DEVICE = f"iccid:{EXAMPLE_ICCID}"
USER = "U012ADMIN"


stack = stack_fixture(scope="function", devices=30, scheduler=False)


def _calls(stack: LocalStack) -> list[AuditRow]:
    assert stack.runtime is not None
    return list(AuditLog(stack.runtime.pool.get()).query(actor=USER, verb="thingspace.call", limit=100))


def test_status_and_diag_calls_are_audited_for_the_requester(stack: LocalStack) -> None:
    """A status and a diag each leave one row per ThingSpace read, with who, what, for what and how long."""
    stack.command(f"status {DEVICE}")
    assert stack.settle()
    status_calls = _calls(stack)
    # the line's details, and its provisioning history (who last changed it outside the bot)
    assert {row.detail["operation"] for row in status_calls} == {"get_device", "provisioning_history"}
    [status_call] = [row for row in status_calls if row.detail["operation"] == "get_device"]
    assert status_call.outcome == "ok"
    assert list(status_call.targets) == [DEVICE]
    assert status_call.channel == "C0OPS"
    assert status_call.detail["for"] == "status"
    assert isinstance(status_call.detail["latency_ms"], int)

    stack.command(f"diag {DEVICE}")
    assert stack.settle()
    diag_calls = [row for row in _calls(stack) if row.detail["for"] == "diag"]
    operations = {row.detail["operation"] for row in diag_calls}
    assert {"extended_diagnostics", "connection_history", "usage_history"} <= operations, operations
    assert all(list(row.targets) == [DEVICE] and row.outcome == "ok" for row in diag_calls)


def test_a_failed_call_is_audited_as_failed_with_its_error(stack: LocalStack) -> None:
    """ThingSpace answering 400 to the lookup: the row says failed and names the error."""
    stack.sandbox.inject_fault("/m2m/v1/devices/actions/list", count=1, status=400)
    stack.command(f"status {DEVICE}")
    assert stack.settle()
    failed = [row for row in _calls(stack) if row.outcome == "failed"]
    assert len(failed) == 1
    assert failed[0].detail["error"]


def test_calls_made_for_nobody_are_not_attributed(stack: LocalStack) -> None:
    """The directory sync at start made ThingSpace calls, but no user has a thingspace.call row."""
    assert stack.runtime is not None
    rows = list(AuditLog(stack.runtime.pool.get()).query(verb="thingspace.call", limit=100))
    assert rows == []


def test_watch_and_unwatch_monitor_calls_are_audited_for_the_user(stack: LocalStack) -> None:
    """The monitor start after `watch` and the stop after `unwatch` are the user's calls, each once."""
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    stack.command(f"watch {DEVICE} --alert-after 1h")
    deadline = time.monotonic() + 15
    while not any(m.state == "active" for m in watches.monitors_of(db, DEVICE)):
        assert time.monotonic() < deadline, "the monitor never became active"
        time.sleep(0.05)
    stack.command(f"unwatch {DEVICE}")
    assert stack.settle()
    calls = {row.detail["operation"]: row for row in _calls(stack)}
    start, stop = calls["start_reachability_monitor"], calls["stop_reachability_monitors"]
    assert list(start.targets) == [DEVICE] and start.outcome == "accepted" and start.request_id
    assert list(stop.targets) == [DEVICE] and stop.outcome == "accepted" and stop.request_id
    operations = [row.detail["operation"] for row in _calls(stack)]
    assert operations.count("start_reachability_monitor") == 1
    assert operations.count("stop_reachability_monitors") == 1
