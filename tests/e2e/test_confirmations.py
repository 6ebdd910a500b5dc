"""Confirmation and approval cards end to end: signed requests over HTTP, the sandbox behind the
real client, the Slack stand-in recording what people see.

The card is bound to exactly the devices it lists; the approval threshold counts only those; the
clicker is authorized again on every click; the requester may withdraw but not approve; an
approval nobody decides expires on its card; a requester whose response_url is too old to use is
told by chat.postEphemeral."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bot.console.records import Message
from bot.local_stack import LocalStack
from bot.scheduler.tasks import refresh_memberships_task
from storage import directory
from storage.audit.log import AuditLog
from tests.helpers.sandbox import wait_until
from tests.helpers.stacks import stack_fixture

EXTERNAL = "ExternalProvisioningChanges"


stack = stack_fixture(
    devices=120, settings_overrides={"approval_size": 2, "approval_ttl": timedelta(hours=2)}, scheduler=False
)


def _db(stack: LocalStack) -> Any:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _active(stack: LocalStack, n: int, *, offset: int) -> list[str]:
    rows = (
        _db(stack)
        .execute(
            "SELECT key FROM devices WHERE state = 'active' AND label NOT LIKE 'demo-%' ORDER BY key LIMIT ? OFFSET ?",
            [n, offset],
        )
        .fetchall()
    )
    assert len(rows) == n
    return [r[0] for r in rows]


def _state(stack: LocalStack, key: str) -> str:
    kind, _, value = key.partition(":")
    entry = directory.lookup(_db(stack), kind, value)
    return entry.state if entry else ""


def _change_outside(stack: LocalStack, key: str, change: str, expect: str) -> None:
    """Someone changes the line in the ThingSpace portal; the bot hears of it by callback."""
    stack.sandbox.notify(EXTERNAL, key, change=change)
    wait_until(lambda: _state(stack, key) == expect, timeout=15)


def _request_devices(stack: LocalStack, verb: str, actor: str) -> list[list[str]]:
    rows = (
        _db(stack)
        .execute(
            "SELECT request_id FROM ts_requests WHERE verb = ? AND actor = ? ORDER BY created_at",
            [verb, actor],
        )
        .fetchall()
    )
    return [
        sorted(
            r[0]
            for r in _db(stack).execute("SELECT device FROM ts_request_devices WHERE request_id = ?", [rid])
        )
        for (rid,) in rows
    ]


def _audit(stack: LocalStack, **filters: Any) -> list[Any]:
    return AuditLog(_db(stack)).query(limit=1000, **filters)


def _suspend_calls(stack: LocalStack) -> int:
    return len(stack.sandbox.requests_received("/m2m/v1/devices/actions/suspend"))


def _click_as(stack: LocalStack, label: str, *, owner: str, clicker: str) -> None:
    """*clicker* presses a button on a message only *owner* sees (a forwarded or replayed click)."""
    assert stack.driver is not None
    message, button = stack.driver.find_button(label, user=owner)
    payload = stack.driver.block_actions_payload(message, button, user=clicker)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert stack.driver.post_raw(body, stack.driver.sign(body)).status_code == 200


def _approval_card(stack: LocalStack, marker: str) -> Message:
    return stack.standin.wait_for(
        lambda m: not m.ephemeral and "Approval needed" in m.text and marker in m.text, timeout=10
    )


def test_a_device_skipped_on_the_card_is_not_acted_on_when_it_becomes_eligible(stack: LocalStack) -> None:
    """The card skips an already-suspended line; it is resumed in the portal before Confirm; Confirm
    suspends only the device the card listed."""
    (listed,) = _active(stack, 1, offset=0)
    skipped = directory.find(_db(stack), "demo-suspended", limit=1)[0][0].key
    body = stack.command(f"suspend {listed},{skipped} --reason bound-set").json()
    assert body["text"] == "Suspend 1 device?"
    assert "Skipped (1)" in json.dumps(body["blocks"]) and "already suspended" in json.dumps(body["blocks"])
    _change_outside(stack, skipped, "Resume", "active")
    stack.click("Confirm")
    stack.standin.wait_for(
        lambda m: (
            not m.ephemeral
            and ("is suspending" in m.text or "Suspended " in m.text)
            and "bound-set" in m.text
        )
    )
    assert stack.settle()
    assert _request_devices(stack, "suspend", "U012ADMIN")[-1] == [listed]
    assert stack.sandbox.device(skipped)["state"] == "active"


def test_the_approval_threshold_counts_only_the_listed_devices(stack: LocalStack) -> None:
    """approval_size 2: two active lines and one already suspended is a two-device card that needs
    no second person."""
    first, second, third = _active(stack, 3, offset=1)
    _change_outside(stack, third, "Suspend", "suspend")
    body = stack.command(f"suspend {first},{second},{third} --reason threshold").json()
    assert body["text"] == "Suspend 2 devices?"
    assert "approval size" not in json.dumps(body["blocks"])
    confirmed = stack.click("Confirm")
    assert confirmed.status_code == 200
    stack.standin.wait_for(
        lambda m: (
            ("is suspending 2 devices" in m.text or "suspended 2 devices" in m.text) and "threshold" in m.text
        )
    )
    assert stack.settle()
    assert not [m for m in stack.standin.messages() if "Approval needed" in m.text and "threshold" in m.text]
    assert _request_devices(stack, "suspend", "U012ADMIN")[-1] == sorted([first, second])


def test_a_confirm_by_someone_else_is_refused_and_audited(stack: LocalStack) -> None:
    """A Confirm replayed by another operator does nothing and leaves one audit entry."""
    (key,) = _active(stack, 1, offset=4)
    before = _suspend_calls(stack)
    entries = len(_audit(stack, actor="U0OPS1", verb="confirm"))
    stack.command(f"suspend {key}")
    _click_as(stack, "Confirm", owner="U012ADMIN", clicker="U0OPS1")
    told = stack.standin.wait_for(lambda m: m.user == "U0OPS1" and "Only the person who asked" in m.text)
    assert told.ephemeral
    assert stack.settle()
    assert _suspend_calls(stack) == before
    rows = _audit(stack, actor="U0OPS1", verb="confirm")
    assert len(rows) == entries + 1 and rows[0].outcome == "refused"
    stack.click("Cancel")


def test_viewer_approve_self_approval_and_withdrawal(stack: LocalStack) -> None:
    """On an approval card: a viewer's Approve is refused (role checked again), the requester's
    Approve is refused (four eyes), the requester's Reject withdraws it; each click leaves one
    audit entry and nothing reaches ThingSpace."""
    keys = _active(stack, 3, offset=5)
    before = _suspend_calls(stack)
    stack.command("suspend " + ",".join(keys) + " --reason withdraw-me", user="U0OPS1")
    stack.click("Confirm", user="U0OPS1")
    card = _approval_card(stack, "withdraw-me")
    assert "expires in 2 h" in json.dumps(list(card.blocks))
    assert stack.driver is not None
    stack.driver.click("Approve", user="U0NOC1", ts=card.ts)
    stack.standin.wait_for(lambda m: m.user == "U0NOC1" and "needs the *operator* role" in m.text)
    stack.driver.click("Approve", user="U0OPS1", ts=card.ts)
    stack.standin.wait_for(lambda m: m.user == "U0OPS1" and "someone else must approve" in m.text)
    stack.driver.click("Reject", user="U0OPS1", ts=card.ts)
    withdrawn = stack.standin.wait_for(lambda m: m.ts == card.ts and "Withdrawn by <@U0OPS1>" in m.text)
    assert withdrawn.buttons() == [] and "withdraw-me" in withdrawn.text
    assert stack.settle()
    assert _suspend_calls(stack) == before
    assert [r.outcome for r in _audit(stack, actor="U0NOC1", verb="approve")] == ["denied"]
    mine = [(r.verb, r.outcome) for r in _audit(stack, actor="U0OPS1") if r.verb in ("approve", "cancel")]
    assert mine == [("cancel", "ok"), ("approve", "refused")]  # newest first
    assert _audit(stack, actor="U0OPS1", verb="cancel")[0].detail.get("withdrawn") is True


def test_a_role_revoked_before_confirm_is_refused(stack: LocalStack) -> None:
    """An operator loses the on-call group between the command and Confirm: the click is refused
    with the role it needs, audited, and nothing is sent."""
    assert stack.runtime is not None
    (key,) = _active(stack, 1, offset=8)
    before = _suspend_calls(stack)
    stack.command(f"suspend {key} --reason revoked", user="U0OPS1")
    stack.standin.add_usergroup("S0ONCALL", ["U0OPS2"])
    refresh_memberships_task(stack.runtime.deps)
    try:
        stack.click("Confirm", user="U0OPS1")
        stack.standin.wait_for(lambda m: m.user == "U0OPS1" and "You can't confirm a `suspend`" in m.text)
    finally:
        stack.standin.add_usergroup("S0ONCALL", ["U0OPS1", "U0OPS2"])
        refresh_memberships_task(stack.runtime.deps)
    assert stack.settle()
    assert _suspend_calls(stack) == before
    assert _audit(stack, actor="U0OPS1", verb="confirm")[0].outcome == "denied"


def test_after_a_long_approval_the_requester_is_told_by_ephemeral(stack: LocalStack) -> None:
    """An approval that came after the requester's response_url died (30 min): "ThingSpace
    accepted" reaches them by chat.postEphemeral, not the dead URL."""
    keys = _active(stack, 3, offset=9)
    stack.command("suspend " + ",".join(keys) + " --reason slow-approval", user="U0OPS1")
    stack.click("Confirm", user="U0OPS1")
    card = _approval_card(stack, "slow-approval")
    action_id = card.buttons()[0].value
    with _db(stack).conn:  # forty minutes pass before anyone approves
        _db(stack).execute(
            "UPDATE pending_actions SET created_at = created_at - 2400 WHERE id = ?", [action_id]
        )
    assert stack.driver is not None
    stack.driver.click("Approve", user="U0OPS2", ts=card.ts)
    call = stack.standin.wait_for_call(
        lambda c: c.method == "chat.postEphemeral" and "ThingSpace accepted" in str(c.params.get("text")),
        timeout=15,
    )
    assert call.params["user"] == "U0OPS1" and call.params["channel"] == "C0OPS"
    assert stack.settle()


def test_an_approval_nobody_decides_expires_on_its_card(tmp_path: Path) -> None:
    """approval_ttl 1 s with the scheduler running: the approval card loses its buttons and says
    it expired, the requester is told, the expiry is audited, and a late Approve is refused."""
    overrides = {"approval_size": 1, "approval_ttl": timedelta(seconds=1)}
    with LocalStack(tmp_path, devices=40, settings_overrides=overrides, scheduler=True) as local:
        keys = _active(local, 2, offset=0)
        before = _suspend_calls(local)
        local.command("suspend " + ",".join(keys) + " --reason too-slow", user="U0OPS1")
        local.click("Confirm", user="U0OPS1")
        card = _approval_card(local, "too-slow")
        assert "expires in 1 s" in json.dumps(list(card.blocks))
        expired = local.standin.wait_for(
            lambda m: m.ts == card.ts and "Expired, nobody approved" in m.text, timeout=15
        )
        assert expired.buttons() == [] and "too-slow" in expired.text
        local.standin.wait_for(lambda m: m.user == "U0OPS1" and "Nobody approved your suspend" in m.text)
        rows = [r for r in _audit(local, actor="system", verb="approve") if r.outcome == "expired"]
        assert len(rows) == 1 and sorted(rows[0].targets) == sorted(keys)
        assert local.driver is not None
        message = local.standin.message(card.channel, card.ts)
        # a stale copy of the card (a client that never redrew it) still carries the old button
        stale = next(b for b in card.buttons() if b.text == "Approve")
        payload = local.driver.block_actions_payload(message, stale, user="U0OPS2")
        body = urlencode({"payload": json.dumps(payload)}).encode()
        assert local.driver.post_raw(body, local.driver.sign(body)).status_code == 200
        local.standin.wait_for(lambda m: m.user == "U0OPS2" and "approval window closed" in m.text)
        time.sleep(0.2)
        assert local.settle()
        assert _suspend_calls(local) == before
