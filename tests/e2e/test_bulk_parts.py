"""A bulk action larger than one ThingSpace request: sent in parts under one results message, one
progress bar and one summary across the parts, and Retry failed across them (``[limits]
request_size`` set low so a small sandbox fleet needs several requests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlite_utils import Database

from bot.local_stack import LocalStack
from storage import directory, request_devices, requests

SIZE = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("parts"),
        devices=40,
        settings_overrides={"request_size": SIZE, "approval_size": 1000},
        scheduler=False,
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def test_a_big_suspend_goes_out_in_parts_with_one_bar_one_summary_and_one_retry(stack: LocalStack) -> None:
    db = _db(stack)
    active = [d.key for d in directory.group_members(db, "plant-7") if d.state == "active"]
    assert len(active) > 2 * SIZE
    before = len(stack.sandbox.requests_received("*/devices/actions/suspend"))

    stack.command("suspend group:plant-7 --reason parts", user="U0OPS1")
    stack.standin.wait_for(lambda m: m.ephemeral and m.updated and "Confirm" in str(m.blocks), timeout=30)
    stack.click("Confirm", user="U0OPS1")
    summary = stack.standin.wait_for(lambda m: "> suspended " in m.text and "done:" in m.text, timeout=60)
    assert stack.settle(60)

    rows = db.execute("SELECT request_id FROM ts_requests ORDER BY created_at").fetchall()
    tracked = [t for t in (requests.get_request(db, r[0]) for r in rows) if t is not None]
    parts = [t for t in tracked if t.detail.get("batch")]
    n = sum(t.device_count for t in parts)
    assert len(active) - 1 <= n <= len(active)  # demo-action-limit is at its daily limit
    assert len(parts) == -(-n // SIZE) > 2 and all(t.device_count <= SIZE for t in parts)
    assert len(stack.sandbox.requests_received("*/devices/actions/suspend")[before:]) == len(parts)
    assert len({t.thread_key for t in parts}) == 1 and all(t.state == "completed" for t in parts)
    root = stack.standin.message(summary.channel, summary.ts)
    text = str(root.blocks)
    assert f"Sent in {len(parts)} requests of at most {SIZE} lines" in text
    assert f"100% · {n:,} of {n:,}" in text and f"of {n:,} suspended" in root.text
    # no reply per device, no second summary: the one new message is the settle message
    (settled,) = stack.standin.thread(root.channel, root.ts)[1:]
    assert f"of {n:,} suspended" in settled.text and "<@U0OPS1>" in settled.text

    # at least one plant-7 line fails its first provisioning action (the sandbox's flaky lines)
    failed = [
        key for part in parts for key in request_devices.devices_with_status(db, part.request_id, ["failed"])
    ]
    assert failed and f"{len(failed):,} failed" in root.text
    retry = [b for b in root.buttons() if b.text == "Retry failed"]
    assert len(retry) == 1
    stack.click("Retry failed", user="U0OPS1")
    card = stack.standin.wait_for(
        lambda m: m.ephemeral and m.user == "U0OPS1" and "retry of request" in str(m.blocks), timeout=20
    )
    assert f"Suspend {len(failed)} device" in card.text
