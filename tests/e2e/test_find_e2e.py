"""``/ts find`` against a synced sandbox fleet: ranked, counted, paged with More, states shown as
``status`` shows them, and ThingSpace's text escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bot.console.records import Message
from bot.local_stack import LocalStack
from storage import directory
from storage.db import write

VIEWER = {"user": "U0NOC1", "channel": "C0NOC"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("find"), devices=120, scheduler=False)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _keys(blocks: object) -> list[str]:
    return re.findall(r"status (iccid:\d+)", str(blocks))


def test_find_counts_pages_with_more_and_never_repeats_a_line(stack: LocalStack) -> None:
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    members = {d.key for d in directory.group_members(db, "plant-7")}
    assert len(members) > 30  # more than two pages

    first = stack.command("find plant-7", **VIEWER).json()
    assert f"*{len(members)} devices match `plant-7`*" in str(first["blocks"])
    seen = _keys(first["blocks"])
    assert len(seen) == 15 and "Showing 1–15 of" in str(first["blocks"])

    while len(seen) < len(members):
        answer = stack.click("More", **VIEWER)
        assert answer.status_code == 200
        wanted = f"Showing {len(seen) + 1:,}–"
        page: Message = stack.standin.wait_for(
            lambda m, wanted=wanted: m.ephemeral and wanted in str(m.blocks), timeout=10
        )
        seen += _keys(page.blocks)

    assert sorted(seen) == sorted(members) and len(seen) == len(set(seen))


def test_find_shows_states_as_status_does(stack: LocalStack) -> None:
    body = str(stack.command("find demo-suspended", **VIEWER).json()["blocks"])
    assert ":double_vertical_bar: *demo-suspended* — suspended" in body


def test_a_label_from_thingspace_is_escaped(stack: LocalStack) -> None:
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    with write(db):
        directory.upsert_devices(
            db, [{"ids": {"iccid": "89148000000000000993"}, "state": "active", "label": "<!channel> pump"}]
        )
    body = str(stack.command("find channel> pump", **VIEWER).json()["blocks"])
    assert "&lt;!channel&gt; pump" in body and "<!channel>" not in body
