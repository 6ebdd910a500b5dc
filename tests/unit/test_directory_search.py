"""``find``'s index: an FTS5 trigram index over the directory, kept in step by every write, ranked,
paged, and literal about ``%``, ``_`` and quotes (real SQLite, no mocks)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from storage import directory
from storage.db import write
from storage.schema import open_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "bot.db")
    try:
        yield database
    finally:
        database.conn.close()


def line(n: int, label: str, **extra: Any) -> dict[str, Any]:
    iccid = extra.pop("iccid", f"8914800000{n:09d}1")
    return {
        "ids": {"iccid": iccid, "mdn": f"908{n:07d}"},
        "state": extra.pop("state", "active"),
        "label": label,
        "groups": extra.pop("groups", ["plant-7"]),
        "custom": {"CustomField1": label, "CustomField2": "Acme Logistics", **extra.pop("custom", {})},
    }


def put(db: Database, *rows: dict[str, Any], now: float | None = None) -> None:
    with write(db):
        directory.upsert_devices(db, list(rows), now=now)


def labels(page: directory.SearchPage) -> list[str]:
    return [d.label for d in page.devices]


def everything(db: Database, text: str, limit: int) -> list[str]:
    page = directory.search(db, text, limit=limit)
    found = labels(page)
    while page.after is not None:
        page = directory.search(db, text, limit=limit, after=page.after)
        found += labels(page)
    return found


def test_sqlite_has_the_trigram_tokenizer() -> None:
    assert sqlite3.sqlite_version_info >= (3, 34, 0)


def test_a_label_word_that_starts_with_the_text_ranks_before_an_id_that_only_contains_it(
    db: Database,
) -> None:
    # gateway-0037 comes first in the directory and its ICCID contains 0042
    put(
        db,
        line(1, "gateway-0037", iccid="89148000000000420012"),
        line(2, "tracker-100042"),
        line(3, "gateway-0042"),
    )

    page = directory.search(db, "0042", limit=10)

    assert labels(page) == ["gateway-0042", "gateway-0037", "tracker-100042"]
    assert page.total == 3 and not page.capped


def test_an_exact_id_or_label_comes_first(db: Database) -> None:
    put(db, line(1, "gateway-00421"), line(2, "x-gateway-0042"), line(3, "gateway-0042"))

    assert labels(directory.search(db, "gateway-0042", limit=10)) == [
        "gateway-0042",
        "gateway-00421",
        "x-gateway-0042",
    ]
    exact_id = directory.search(db, "89148000000000000021", limit=10)
    assert exact_id.devices[0].key == "iccid:89148000000000000021"


def test_percent_underscore_and_quotes_are_plain_characters(db: Database) -> None:
    put(db, line(1, "50%_off"), line(2, "50x1off"), line(3, 'say "hi" now'))

    assert labels(directory.search(db, "50%_", limit=10)) == ["50%_off"]
    assert labels(directory.search(db, "%_o", limit=10)) == ["50%_off"]
    assert labels(directory.search(db, '"hi"', limit=10)) == ['say "hi" now']
    assert labels(directory.search(db, "hi* OR x", limit=10)) == []


def test_case_does_not_matter_and_custom_fields_and_groups_are_searched(db: Database) -> None:
    put(db, line(1, "Meter-North", groups=["Feeder-12"], custom={"CustomField4": "Route 66"}))

    for text in ("meter-no", "METER-NORTH", "feeder-1", "route 6", "acme log"):
        assert labels(directory.search(db, text, limit=5)) == ["Meter-North"], text


def test_short_or_empty_text_finds_nothing(db: Database) -> None:
    put(db, line(1, "ab"))

    assert directory.search(db, "ab", limit=5).devices == []
    assert directory.search(db, "  \x02\x03 ", limit=5).total == 0


def test_pages_cover_every_match_once_in_rank_order(db: Database) -> None:
    rows = [line(n, f"gateway-{n:04d}") for n in range(1, 60)]
    rows.append(line(99, "0042-first-word"))
    put(db, *rows)

    found = everything(db, "gateway-00", limit=7)

    assert found == [f"gateway-{n:04d}" for n in range(1, 60)]
    ranked = everything(db, "004", limit=3)
    starts = {f"gateway-{n:04d}" for n in range(40, 50)} | {"0042-first-word"}
    assert set(ranked[:11]) == starts  # a label or one of its words starts with 004
    assert "gateway-0004" in ranked[11:] and len(ranked) == len(set(ranked))
    assert sorted(everything(db, "908", limit=11)) == sorted(r["label"] for r in rows)


def test_a_long_id_fragment_is_checked_whole(db: Database) -> None:
    # every ICCID shares 891480000000…; the fragment's tail alone matches more than the fragment
    put(db, *(line(n, f"meter-{n}") for n in range(1, 40)))

    iccid = "89148000000000000121"  # meter-12's
    page = directory.search(db, iccid[1:], limit=50)

    assert labels(page) == ["meter-12"]
    assert page.total == 1
    tens = directory.search(db, iccid[:18], limit=50)  # 891480000000000001: meter-10 … meter-19
    assert sorted(labels(tens)) == sorted(f"meter-{n}" for n in range(10, 20)) and tens.total == 10


def test_the_count_is_capped(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    put(db, *(line(n, f"vending-{n}") for n in range(1, 30)))

    assert directory.count_matches(db, "vending", cap=10) == (10, True)
    assert directory.count_matches(db, "vending", cap=100) == (29, False)


def test_the_index_follows_updates_state_changes_and_lines_that_left(db: Database) -> None:
    put(db, line(1, "pump-one", groups=["north"]), now=1.0)
    assert labels(directory.search(db, "pump-one", limit=5)) == ["pump-one"]

    put(db, line(1, "pump-renamed", groups=["south"]), now=2.0)
    assert directory.search(db, "pump-one", limit=5).total == 0
    assert directory.search(db, "north", limit=5).total == 0
    assert labels(directory.search(db, "south", limit=5)) == ["pump-renamed"]

    with write(db):
        directory.set_state(db, "iccid:89148000000000000011", "suspend")
    assert [d.state for d in directory.search(db, "pump-renamed", limit=5).devices] == ["suspend"]

    with write(db):
        assert directory.mark_missing(db, synced_before=3.0) == 1
    gone = directory.search(db, "pump-renamed", limit=5).devices
    assert [d.state for d in gone] == [directory.GONE]
    assert directory.search(db, "south", limit=5).total == 0  # no longer in the group


def test_an_existing_directory_is_indexed_by_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = open_database(path, migrate=False)
    directory.migrations.apply(old, stop_before="index_directory_for_search")
    with write(old):  # a row as the earlier schema wrote it
        old.execute(
            "INSERT INTO devices (key, iccid, state, label, groups_json, custom_json, search, synced_at) "
            "VALUES (?, ?, 'active', 'legacy-7', '[\"plant-7\"]', '{\"CustomField3\": \"Acme\"}', 'legacy-7', 1)",
            ["iccid:89148000000000000011", "89148000000000000011"],
        )
        old.execute("INSERT INTO device_groups (name, key) VALUES ('plant-7', 'iccid:89148000000000000011')")
    old.conn.close()

    db = open_database(path)
    try:
        assert labels(directory.search(db, "legacy", limit=5)) == ["legacy-7"]
        assert labels(directory.search(db, "acme", limit=5)) == ["legacy-7"]
        members = directory.group_member_rows(db, "plant-7")
        assert members == [("iccid:89148000000000000011", "legacy-7", "active", None, "")]
    finally:
        db.conn.close()


def test_the_size_read_from_one_seek_is_the_count_through_updates_and_lines_that_left(db: Database) -> None:
    assert directory.size(db) == directory.count(db) == 0
    put(db, *(line(n, f"pump-{n}") for n in range(1, 6)), now=1.0)
    put(db, line(2, "pump-two", groups=["south"]), line(9, "pump-nine"), now=2.0)
    with write(db):
        directory.set_state(db, "iccid:89148000000000000011", "suspend")
        directory.mark_missing(db, synced_before=2.0)

    assert directory.size(db) == directory.count(db) == 6


def test_group_names_come_in_order_from_a_loose_index_scan(db: Database) -> None:
    put(db, *(line(n, f"pump-{n}", groups=[f"site-{n % 4}", "pumps"]) for n in range(40)))

    assert directory.group_names(db) == ["pumps", "site-0", "site-1", "site-2", "site-3"]
    assert directory.group_names(db, limit=2) == ["pumps", "site-0"]
