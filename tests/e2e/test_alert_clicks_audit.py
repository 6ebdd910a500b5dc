"""Alert card clicks that change nothing still leave exactly one audit entry each."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

from bot.local_stack import LocalStack
from bot.sandbox import EXAMPLE_ICCID
from bot.scheduler.reachability_tasks import evaluate_task
from storage import watches
from storage.audit.log import AuditLog
from tests.helpers.stacks import stack_fixture

DEVICE = f"iccid:{EXAMPLE_ICCID}"


stack = stack_fixture(scope="function", devices=30, scheduler=False)


def _until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _outcomes(stack: LocalStack, verb: str, actor: str) -> list[str]:
    assert stack.runtime is not None
    rows = AuditLog(stack.runtime.pool.get()).query(actor=actor, verb=verb, limit=100)
    return sorted(row.outcome for row in rows)


def test_a_second_acknowledge_is_refused_and_audited_once(stack: LocalStack) -> None:
    """Acknowledge, then Acknowledge again: one ok row, one refused row saying why, no second change."""
    assert stack.runtime is not None
    stack.command(f"watch {DEVICE} --alert-after 10m")
    db = stack.runtime.pool.get()
    _until(lambda: watches.get_state(db, DEVICE) is not None)
    stack.sandbox.set_reachability(EXAMPLE_ICCID, False)
    _until(lambda: (state := watches.get_state(db, DEVICE)) is not None and state.reachable is False)
    assert evaluate_task(stack.runtime.deps, now=time.time() + 11 * 60).raised == 1
    stack.standin.wait_for(lambda m: m.thread_ts is None and "Unreachable" in str(m.blocks), timeout=15)

    driver = stack.driver
    assert driver is not None
    card, button = driver.find_button("Acknowledge", user="U0OPS1")
    stale_click = driver.block_actions_payload(card, button, user="U0OPS1")  # the card as first seen
    assert stack.click("Acknowledge", user="U0OPS1").status_code == 200
    stack.standin.wait_for(lambda m: "Acknowledged by <@U0OPS1>" in str(m.blocks), timeout=15)
    body = urlencode({"payload": json.dumps(stale_click)}).encode()
    assert driver.post_raw(body, driver.sign(body)).status_code == 200  # a double click on the old card
    refusal = stack.standin.wait_for(lambda m: m.text.startswith("Nothing to do"), timeout=15)
    assert refusal.ephemeral
    assert _outcomes(stack, "alert.ack", "U0OPS1") == ["ok", "refused"]
    [refused] = [
        row
        for row in AuditLog(db).query(actor="U0OPS1", verb="alert.ack", limit=10)
        if row.outcome == "refused"
    ]
    assert refused.detail["why"] == "already resolved or in that state"
