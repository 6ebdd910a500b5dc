"""The directory sync against the sandbox: lines that left the account leave their groups and are
refused by name, with a reason, before ThingSpace is asked."""

from __future__ import annotations

import time
from dataclasses import replace

from bot.core.directory_sync import SyncProgress, sync_directory
from bot.local_stack import LocalStack
from bot.scheduler.tasks import sync_directory_task
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


def test_later_syncs_read_only_lines_added_since_and_a_daily_one_reads_everything(stack: LocalStack) -> None:
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    first = directory.sync_marks(db)
    assert first.last_full_at is not None and first.newest_created is not None and first.lines == 30
    with write(db):  # a line only an incremental sync would not notice leaving
        directory.upsert_devices(db, [{"ids": LEFT, "state": "active", "groups": ["plant-7"]}], now=1.0)
    seen: list[SyncProgress] = []

    read = sync_directory(
        stack.runtime.thingspace, db, complete=False, on_progress=lambda p: seen.append(replace(p))
    )

    assert 1 <= read < 30  # the newest line (and any within a minute of it), not the fleet
    assert seen[-1].done and not seen[-1].complete and seen[-1].lines == read
    assert directory.lookup(db, "iccid", LEFT["iccid"]).state == "active"  # type: ignore[union-attr]
    assert directory.sync_marks(db).last_full_at == first.last_full_at

    now = time.time()
    sync_directory_task(stack.runtime.deps, now=now)  # the last complete sync is fresh
    assert directory.sync_marks(db).last_full_at == first.last_full_at
    sync_directory_task(stack.runtime.deps, now=now + 25 * 3600)  # a day later: complete
    marks = directory.sync_marks(db)
    assert marks.last_full_at is not None and marks.last_full_at > first.last_full_at and marks.lines == 30
    assert directory.lookup(db, "iccid", LEFT["iccid"]).state == directory.GONE  # type: ignore[union-attr]


def test_sync_progress_reaches_metrics(stack: LocalStack) -> None:
    assert stack.runtime is not None
    metrics = stack.runtime.metrics
    assert metrics.value("directory_sync_lines") == 30
    assert metrics.value("directory_sync_running") == 0
    assert metrics.value("directory_lines") >= 30
    assert metrics.value("directory_synced_timestamp_seconds", kind="complete") > 0
