"""The directory sync against the sandbox: lines that left the account leave their groups and are
refused by name, with a reason, before ThingSpace is asked."""

from __future__ import annotations

from bot.core.directory_sync import sync_directory
from bot.local_stack import LocalStack
from storage import directory
from storage.db import write
from tests.helpers.stacks import stack_fixture

LEFT = {"iccid": "89148000000000000017", "mdn": "5550000017"}


stack = stack_fixture(scope="function", devices=30, scheduler=False)


def test_a_line_the_account_no_longer_lists_leaves_its_groups_and_is_refused(stack: LocalStack) -> None:
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    with write(db):  # a line the directory knew from an earlier sync, in group plant-7
        directory.upsert_devices(db, [{"ids": LEFT, "state": "active", "groups": ["plant-7"]}], now=1.0)
    key = f"iccid:{LEFT['iccid']}"
    assert key in {d.key for d in directory.group_members(db, "plant-7")}

    seen = sync_directory(stack.runtime.thingspace, db)

    assert seen == 30
    entry = directory.lookup(db, "iccid", LEFT["iccid"])
    assert entry is not None and entry.state == directory.GONE and entry.groups == []
    assert key not in {d.key for d in directory.group_members(db, "plant-7")}
    assert all(d.state != directory.GONE for d in directory.group_members(db, "plant-7"))

    answer = stack.command(f"suspend {key} --reason audit")
    assert "no longer in the ThingSpace account" in answer.text
