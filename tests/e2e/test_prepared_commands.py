"""An action on more lines than fit in Slack's 3 s (a ``group:`` of more than
:data:`commands.prepare.AFTER_ACK` lines) is acked with what is being checked, and the worker's
answer — the dry run or the confirmation card, through the user's own guard rails and role —
replaces that placeholder (the real stack: sandbox, stand-in, signed requests, SQLite)."""

from __future__ import annotations

import json
from typing import Any

from bot.local_stack import LocalStack
from commands import audit, prepare
from storage import directory, pending
from storage.audit.log import AuditLog
from tests.helpers.stacks import stack_fixture

#: plant-7 holds about 40 % of the sandbox's fleet: this makes it larger than AFTER_ACK
stack = stack_fixture(devices=15_000, settings_overrides={"approval_size": 100_000}, scheduler=False)


def _db(stack: LocalStack) -> Any:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _plant(stack: LocalStack) -> int:
    size = directory.group_count(_db(stack), "plant-7")
    assert size > prepare.AFTER_ACK
    return size


def test_a_dry_run_of_a_large_group_is_acked_at_once_and_completed_by_the_worker(stack: LocalStack) -> None:
    size = _plant(stack)
    answer = stack.command("suspend group:plant-7 --dry-run", user="U0OPS1").json()

    assert answer["text"] == f"Checking {size:,} lines for suspend --dry-run…"
    assert "Nothing is changed" in json.dumps(answer["blocks"])
    done = stack.standin.wait_for(
        lambda m: m.ephemeral and m.updated and m.text.startswith("Dry run — nothing was changed"), timeout=60
    )
    active = sum(1 for d in directory.group_members(_db(stack), "plant-7") if d.state == "active")
    assert f"for {active:,} devices" in done.text or f"for {active - 1:,} devices" in done.text
    assert stack.settle(120)
    entries = AuditLog(_db(stack)).query(actor="U0OPS1", limit=20)
    assert [e.outcome for e in entries if e.verb == "suspend"][:1] == [audit.Outcome.DRY_RUN]


def test_a_large_suspend_gets_its_confirmation_card_from_the_worker(stack: LocalStack) -> None:
    size = _plant(stack)
    answer = stack.command("suspend group:plant-7 --reason quarterly", user="U0OPS1").json()

    assert answer["text"] == f"Checking {size:,} lines for suspend…"
    assert "Nothing changes until you confirm" in json.dumps(answer["blocks"])
    card = stack.standin.wait_for(
        lambda m: m.ephemeral and m.updated and "Confirm" in json.dumps(list(m.blocks)), timeout=60
    )
    rows = (
        _db(stack)
        .execute(
            "SELECT id FROM pending_actions WHERE actor = 'U0OPS1' AND reason = 'quarterly' AND state = 'pending'"
        )
        .fetchall()
    )
    assert len(rows) == 1
    action = pending.get(_db(stack), rows[0][0])
    assert action is not None and f"{len(action.devices):,} devices" in card.text
    stack.click("Cancel", user="U0OPS1")
    assert stack.settle(120)
    cancelled = pending.get(_db(stack), action.id)
    assert cancelled is not None and cancelled.state == "cancelled"


def test_a_mistyped_group_is_answered_in_the_ack_with_the_closest_names(stack: LocalStack) -> None:
    answer = stack.command("suspend group:plant-77 --dry-run", user="U0OPS1").json()

    assert "There is no device group `plant-77`. Did you mean `group:plant-7`" in answer["text"]
