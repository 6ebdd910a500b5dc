"""Guard rails for sets of any size: each line's provisioning limits (five actions a day, 90 days
suspended in a row, 180 a year) are read from ThingSpace for every device after the ack, and
applied on the confirmation card, in --dry-run and again at execution, with the reason per device.

The sandbox keeps the limits (a line at its daily limit: the ``action-limit`` condition; near its
yearly allowance: :func:`bot.sandbox.rules.add_past_suspension`)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.console.records import Message
from bot.local_stack import LocalStack
from bot.sandbox import rules
from bot.thingspace.ids import DeviceId
from commands import guards
from commands.targets import ResolvedDevice
from storage import directory
from storage.audit.log import AuditLog
from storage.directory import DirectoryDevice
from tests.helpers.stacks import stack_fixture

stack = stack_fixture(devices=200, settings_overrides={"approval_size": 1000}, scheduler=False)


def _db(stack: LocalStack) -> Any:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _key(stack: LocalStack, label: str) -> str:
    return directory.find(_db(stack), label, limit=1)[0][0].key


def _plant(stack: LocalStack) -> list[str]:
    return [d.key for d in directory.group_members(_db(stack), "plant-7") if d.state == "active"]


def _active(stack: LocalStack, group: str, n: int) -> list[str]:
    """*n* active lines of *group* that no other test of this module touches."""
    found = [
        d.key
        for d in directory.group_members(_db(stack), group)
        if d.state == "active" and not d.label.startswith("demo-")
    ]
    assert len(found) >= n
    return found[:n]


def _near_yearly_limit(stack: LocalStack, key: str, days: int = 185) -> None:
    """Give the line a past suspension of *days* days within the last 12 months."""
    sandbox = stack.sandbox
    with sandbox.state.lock:
        device = sandbox.state.resolve_text(key)
        now = sandbox.clock()
        rules.add_past_suspension(device, now - timedelta(days=days + 100), now - timedelta(days=100))


def _completed(stack: LocalStack, marker: str) -> Message:
    """The ephemeral answer once the worker redrew it with the limits read."""
    return stack.standin.wait_for(
        lambda m: m.ephemeral and marker in json.dumps(list(m.blocks)) and m.updated, timeout=30
    )


def _audit(stack: LocalStack, actor: str) -> list[Any]:
    return AuditLog(_db(stack)).query(actor=actor, limit=100)


def _request_devices(stack: LocalStack, request_id: str) -> list[str]:
    rows = _db(stack).execute("SELECT device FROM ts_request_devices WHERE request_id = ?", [request_id])
    return [r[0] for r in rows]


def test_the_ack_is_local_and_the_card_then_shows_every_lines_limits(stack: LocalStack) -> None:
    """Story 2 with more than 25 lines: the card comes back at once (no ThingSpace call in the
    ack), then is redrawn without the line that used its five actions today, with the reason; the
    Confirm sends the rest, and ThingSpace never sees the line at its limit."""
    limited = _key(stack, "demo-action-limit")
    plant = _plant(stack)
    assert len(plant) > 25 and limited in plant
    diags = len(stack.sandbox.requests_received("/m2m/v1/devices/history/actions/list"))
    answer = stack.command("suspend group:plant-7 --reason decommissioned", user="U0OPS1").json()
    assert answer["text"] == f"Suspend {len(plant)} devices?"
    assert "Reading each line's provisioning limits" in json.dumps(answer["blocks"])
    card = _completed(stack, "provisioning actions today")
    blocks_text = json.dumps(list(card.blocks))
    assert card.text == f"Suspend {len(plant) - 1} devices?"
    assert "demo-action-limit" in blocks_text and "Refused (1)" in blocks_text
    assert "ThingSpace auto-resumes a suspended line after at most 90 days" in blocks_text
    read = len(stack.sandbox.requests_received("/m2m/v1/devices/history/actions/list")) - diags
    assert read >= len(plant)  # every listed line, not only the first 25
    stack.click("Confirm", user="U0OPS1")
    root = stack.standin.wait_for(
        lambda m: not m.ephemeral and ("is suspending" in m.text or "> suspended " in m.text), timeout=30
    )
    assert "decommissioned" in root.text and "Not sent" not in json.dumps(list(root.blocks))
    assert stack.settle(60)
    (request_id,) = [
        r[0] for r in _db(stack).execute("SELECT request_id FROM ts_requests WHERE reason = 'decommissioned'")
    ]
    sent = _request_devices(stack, request_id)
    assert limited not in sent and len(sent) == len(plant) - 1
    failures = [
        r for r in stack.sandbox.requests_received() if "DailyProvisioningLimit" in str(r.get("errorCode"))
    ]
    assert failures == []
    refused = [r for r in _audit(stack, "system") if r.verb == "suspend" and r.outcome == "refused"]
    assert refused and list(refused[0].targets) == [limited]
    assert "provisioning actions today" in json.dumps(refused[0].detail)


def test_dry_run_reads_the_limits_of_every_line(stack: LocalStack) -> None:
    """--dry-run answers at once and is then completed with each line's limits: the line near its
    180 days a year is refused with the reason, the others are listed, nothing is sent."""
    near, *others = _active(stack, "depot-1", 4)
    _near_yearly_limit(stack, near)
    suspends = len(stack.sandbox.requests_received("/m2m/v1/devices/actions/suspend"))
    answer = stack.command(f"suspend {near},{','.join(others)} --dry-run").json()
    assert "for 4 devices" in answer["text"] and "Reading each line's" in json.dumps(answer["blocks"])
    done = _completed(stack, "suspended 185 days")
    text = json.dumps(list(done.blocks))
    assert "for 3 devices" in done.text
    assert "suspended 185 days in the last 12 months" in text and "Refused (1)" in text
    assert "Provisioning limits read from ThingSpace" in text
    assert stack.settle()
    assert len(stack.sandbox.requests_received("/m2m/v1/devices/actions/suspend")) == suspends


def test_a_line_that_reaches_a_limit_before_execution_is_not_sent(tmp_path: Path) -> None:
    """Between the second person's approval and the card, one line used its five actions (someone
    in the portal): execution reads the limits again, drops it with the reason, sends the other."""
    with LocalStack(tmp_path, devices=60, settings_overrides={"approval_size": 1}, scheduler=False) as local:
        first, second = _active(local, "depot-2", 2)
        local.command(f"suspend {first},{second} --reason race", user="U0OPS1")
        _completed(local, "every line listed is within them")
        local.click("Confirm", user="U0OPS1")
        card = local.standin.wait_for(lambda m: not m.ephemeral and "Approval needed" in m.text)
        local.sandbox.set_condition(first, "action-limit")
        assert local.driver is not None
        local.driver.click("Approve", user="U0OPS2", ts=card.ts)
        root = local.standin.wait_for(
            lambda m: (
                not m.ephemeral
                and m.thread_ts is None
                and any(w in m.text for w in ("is suspending", "> suspended ", "Suspended "))
                and "race" in m.text
            )
        )
        blocks_text = json.dumps(list(root.blocks))
        assert "Not sent (1)" in blocks_text and "provisioning actions today" in blocks_text
        assert local.settle()
        (request_id,) = [
            r[0] for r in _db(local).execute("SELECT request_id FROM ts_requests WHERE reason = 'race'")
        ]
        assert _request_devices(local, request_id) == [second]


def test_a_card_whose_every_line_is_at_a_limit_says_nothing_to_do(stack: LocalStack) -> None:
    """All lines at their limits: the card is replaced by "Nothing to do" with each reason, and
    its Confirm no longer works."""
    line = _key(stack, "demo-action-limit")
    body = stack.command(f"suspend {line}").json()
    assert body["text"] == "Suspend 1 device?"
    done = stack.standin.wait_for(
        lambda m: m.ephemeral and m.updated and "Nothing to do" in m.text, timeout=30
    )
    assert done.buttons() == [] and "provisioning actions today" in done.text


# -- the rules themselves (pure) --------------------------------------------------------------------


def _device(key: str = "iccid:89148000000800139708", state: str = "active") -> ResolvedDevice:
    kind, _, value = key.partition(":")
    entry = DirectoryDevice(key=key, ids={kind: value}, state=state, plan="", label="x", groups=[], custom={})
    return ResolvedDevice(DeviceId.from_wire({"kind": kind, "id": value}), key, entry)


@pytest.mark.parametrize(
    ("limits", "refused", "allowance"),
    [
        (guards.LineLimits(suspended_days_year=180), "180 days in the last 12 months", None),
        (guards.LineLimits(suspended_days_year=179), None, 1),
        (guards.LineLimits(suspended_days_continuous=90), "90 days in a row", None),
        (guards.LineLimits(suspended_days_year=100, suspended_days_continuous=0), None, 80),
        (guards.LineLimits(suspended_days_year=0, suspended_days_continuous=0), None, 90),
        (guards.LineLimits(actions_today=5), "5 provisioning actions today", None),
        (guards.LineLimits(), None, None),
    ],
)
def test_suspend_limits_per_device(
    limits: guards.LineLimits, refused: str | None, allowance: int | None
) -> None:
    """Both suspend-day limits and the daily action limit refuse with the reason; otherwise the
    allowance (days until ThingSpace auto-resumes) is the smaller of what is left."""
    device = _device()
    result = guards.check("suspend", [device], bot_actions_today={}, limits={device.key: limits})
    if refused:
        assert result.ok == [] and refused in result.refused[0][1]
    else:
        assert result.ok == [device] and result.allowance.get(device.key) == allowance


def test_fresh_state_from_diagnostics_wins_over_the_directory() -> None:
    """The directory says active, ThingSpace says suspended: skipped as already suspended."""
    device = _device(state="active")
    result = guards.check(
        "suspend", [device], bot_actions_today={}, limits={device.key: guards.LineLimits(state="suspend")}
    )
    assert result.ok == [] and "already suspended" in result.skipped[0][1]


def test_lines_whose_limits_were_not_read_are_said_and_left_to_thingspace() -> None:
    """A read that runs out of time calls nothing more and leaves the lines unread (listed, and
    said), so the job stays inside its lease instead of being taken by a second worker."""
    from bot.thingspace.client import ThingSpaceClient

    devices = [_device(), _device("iccid:89148000000800139716")]
    with ThingSpaceClient(
        "http://127.0.0.1:9", client_id="c", client_secret="s", username="u", password="p", account="a"
    ) as client:
        read = guards.read_limits(client, devices, budget=-1)
    assert read == {}
    result = guards.check("suspend", devices, bot_actions_today={}, limits=read)
    assert result.ok == devices and result.unread == devices
    assert guards.check("suspend", devices, bot_actions_today={}).unread == []
