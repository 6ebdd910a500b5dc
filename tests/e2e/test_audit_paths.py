"""Every verb, on every path (ok, invalid, denied, dry-run, clicked), leaves exactly one audit entry
under its own name — the story an incident review reads back."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from bot.local_stack import LocalStack
from storage import directory
from storage.audit.log import AuditLog
from storage.pool import ConnectionPool
from tests.helpers.stacks import stack_fixture

ADMIN, VIEWER, NOBODY = "U012ADMIN", "U0NOC1", "U0NOBODY"


stack = stack_fixture(devices=60, scheduler=False)


def _count(pool: ConnectionPool, verb: str, actor: str) -> int:
    return sum(1 for row in AuditLog(pool.get()).query(actor=actor, verb=verb, limit=1000))


def _key(stack: LocalStack, label: str) -> str:
    assert stack.runtime is not None
    return directory.find(stack.runtime.pool.get(), label, limit=1)[0][0].key


CASES = [
    ("help", ADMIN, "C0OPS", "help"),
    ("help", NOBODY, "C0OPS", "help"),
    ("find", ADMIN, "C0OPS", "find 9708"),
    ("find", ADMIN, "C0OPS", "find ab"),  # invalid: too short
    ("history", VIEWER, "C0NOC", "history --since 1h"),
    ("history", NOBODY, "C0OPS", "history"),  # denied
    ("watches", VIEWER, "C0NOC", "watches"),
    ("status", VIEWER, "C0NOC", "status iccid:89148000000800139708"),
    ("status", ADMIN, "C0OPS", "status 12345"),  # invalid id
    ("request", ADMIN, "C0OPS", "request 595f5c44-c31c-4552-8670-020a1545a84d"),
    ("diag", VIEWER, "C0NOC", "diag iccid:89148000000800139708"),
    ("reach", VIEWER, "C0NOC", "reach iccid:89148000000800139708"),
    ("suspend", ADMIN, "C0OPS", "suspend {healthy} --dry-run"),
    ("suspend", VIEWER, "C0NOC", "suspend {healthy}"),  # denied
    ("suspend", ADMIN, "C0OPS", "suspend group:nowhere"),  # invalid
    ("resume", ADMIN, "C0OPS", "resume {suspended} --dry-run"),
    ("sms", ADMIN, "C0OPS", 'sms {healthy} "x" --dry-run'),
    ("cancel-location", ADMIN, "C0OPS", "cancel-location {healthy} --dry-run"),
    ("cancel-location", "U0OPS1", "C0OPS", "cancel-location {healthy}"),  # denied: admin only
    ("watch", ADMIN, "C0OPS", "watch {healthy} --dry-run"),
    ("unwatch", ADMIN, "C0OPS", "unwatch {healthy} --dry-run"),
    ("frobnicate", ADMIN, "C0OPS", "frobnicate"),  # unknown verb: recorded as "unknown"
]


@pytest.mark.parametrize(("verb", "user", "channel", "text"), CASES)
def test_each_command_path_leaves_one_entry(
    stack: LocalStack, verb: str, user: str, channel: str, text: str
) -> None:
    """One command, one audit entry under the command's verb (or "unknown")."""
    assert stack.runtime is not None
    pool = stack.runtime.pool
    name = "unknown" if verb == "frobnicate" else verb
    before = _count(pool, name, user)
    text = text.format(healthy=_key(stack, "demo-healthy"), suspended=_key(stack, "demo-suspended"))
    assert stack.command(text, user=user, channel=channel).status_code == 200
    assert stack.settle(30)
    assert _count(pool, name, user) == before + 1


def test_confirm_and_cancel_clicks_are_recorded_once_each(stack: LocalStack) -> None:
    """The suspend request, the Cancel click and (on a second request) the Confirm click: one entry each."""
    assert stack.runtime is not None
    pool = stack.runtime.pool
    key = _key(stack, "demo-no-traffic")
    counts = {v: _count(pool, v, ADMIN) for v in ("suspend", "cancel", "confirm", "thingspace.call")}
    stack.command(f"suspend {key}")
    stack.click("Cancel")
    stack.command(f"suspend {key}")
    stack.click("Confirm")
    assert stack.settle(30)
    assert _count(pool, "suspend", ADMIN) == counts["suspend"] + 2
    assert _count(pool, "cancel", ADMIN) == counts["cancel"] + 1
    assert _count(pool, "confirm", ADMIN) == counts["confirm"] + 1
    assert _count(pool, "thingspace.call", ADMIN) == counts["thingspace.call"] + 1


def _post_click(stack: LocalStack, payload: dict[str, object]) -> None:
    assert stack.driver is not None
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert stack.driver.post_raw(body, stack.driver.sign(body)).status_code == 200


def test_every_click_that_changes_or_is_refused_is_recorded_once(stack: LocalStack) -> None:
    """Someone else's Confirm, a Confirm on a card that no longer exists, the requester's Confirm
    and a second press of it: four clicks, four entries, each under the clicker."""
    assert stack.runtime is not None and stack.driver is not None
    pool = stack.runtime.pool
    key = _key(stack, "demo-hung")
    mine, theirs = _count(pool, "confirm", ADMIN), _count(pool, "confirm", "U0OPS1")
    stack.command(f"suspend {key}")
    message, button = stack.driver.find_button("Confirm", user=ADMIN)
    _post_click(stack, stack.driver.block_actions_payload(message, button, user="U0OPS1"))
    gone = stack.driver.block_actions_payload(message, button, user=ADMIN)
    gone["actions"][0]["value"] = "no-such-card"  # type: ignore[index]
    _post_click(stack, gone)
    assert stack.settle(30)
    message, button = stack.driver.find_button("Confirm", user=ADMIN)
    for _ in range(2):  # a double click: the second is refused ("already confirmed")
        _post_click(stack, stack.driver.block_actions_payload(message, button, user=ADMIN))
    assert stack.settle(30)
    assert _count(pool, "confirm", "U0OPS1") == theirs + 1
    assert _count(pool, "confirm", ADMIN) == mine + 3
    outcomes = [r.outcome for r in AuditLog(pool.get()).query(actor=ADMIN, verb="confirm", limit=3)]
    assert outcomes == ["refused", "ok", "refused"]
