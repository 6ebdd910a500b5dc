"""Tamper tests: each edit to a COPY of a real audit database is caught, naming the first bad row."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from storage.audit.log import AuditLog, verify
from storage.schema import open_database
from tests.helpers.audit import Attacker, build_log, copy_database, event

ROWS = 30


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, Path]]:
    path = tmp_path_factory.mktemp("original") / "tsbot.db"
    db, _log = build_log(path, ROWS)
    yield db, path
    db.conn.close()


@pytest.fixture
def copy(original: tuple[Database, Path], tmp_path: Path) -> Path:
    """A fresh copy of the original database file and its head file."""
    db, path = original
    return copy_database(db, path, tmp_path)


def check(path: Path) -> tuple[bool, int | None, str]:
    db = open_database(path, migrate=False)
    try:
        result = verify(db)
    finally:
        db.conn.close()
    return result.ok, result.first_bad_row, result.reason


def test_untouched_copy_verifies(copy: Path) -> None:
    """A copy nobody touched verifies, with every row counted."""
    db = open_database(copy, migrate=False)
    result = verify(db)
    assert (result.ok, result.rows, result.first_id, result.last_id, result.anchored_id) == (
        True,
        ROWS,
        1,
        ROWS,
        ROWS,
    )


def test_edited_field_is_caught(copy: Path) -> None:
    """Changing one field of row 12 is reported at row 12."""
    with Attacker(copy) as a:
        a.sql("UPDATE audit_log SET reason = 'routine maintenance' WHERE id = 12")
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 12)
    assert "changed" in reason


def test_edited_field_with_recomputed_hash_is_caught(copy: Path) -> None:
    """Editing row 12 and recomputing its own hash still breaks row 13's link: row 12 is named."""
    with Attacker(copy) as a:
        a.sql("UPDATE audit_log SET actor = 'U0SOMEONEELSE' WHERE id = 12")
        a.rehash(12, a.row(12)["prev_hash"])
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 12)
    assert "row 12 was changed" in reason and "row 13" in reason


def test_deleted_row_is_caught(copy: Path) -> None:
    """Deleting row 12 is reported as row 12 missing."""
    with Attacker(copy) as a:
        a.sql("DELETE FROM audit_log WHERE id = 12")
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 12)
    assert "row 12 is missing" in reason


def test_deleted_first_rows_are_caught(copy: Path) -> None:
    """Deleting the oldest rows without a retention checkpoint is reported from row 1."""
    with Attacker(copy) as a:
        a.sql("DELETE FROM audit_log WHERE id <= 3")
        a.sql("DELETE FROM audit_target WHERE row_id <= 3")
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 1)
    assert "rows 1–3 are missing" in reason


def test_deleted_and_renumbered_rows_are_caught(copy: Path) -> None:
    """Deleting row 12 and renumbering the rest to close the gap is reported at row 12."""
    with Attacker(copy) as a:
        a.sql("DELETE FROM audit_log WHERE id = 12")
        a.sql("DELETE FROM audit_target WHERE row_id = 12")
        for old in range(13, ROWS + 1):
            a.sql("UPDATE audit_log SET id = ? WHERE id = ?", old - 1, old)
    ok, row, _reason = check(copy)
    assert (ok, row) == (False, 12)


def test_inserted_row_is_caught(copy: Path) -> None:
    """A forged row slipped in as row 12 (later rows renumbered, its own hash correct) is named."""
    with Attacker(copy) as a:
        for old in range(ROWS, 11, -1):
            a.sql("UPDATE audit_log SET id = ? WHERE id = ?", old + 1, old)
        a.sql(
            "INSERT INTO audit_log SELECT 12, at, 'U0ALICE', channel, 'resume', targets, 'forged', outcome, "
            "request_id, detail, hash, '' FROM audit_log WHERE id = 11"
        )
        a.rehash(12, a.row(11)["hash"])
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 12)
    assert "row 12 was inserted" in reason


def test_row_appended_outside_the_bot_is_caught(copy: Path) -> None:
    """A forged row appended at the end with a correct hash is caught by the head file."""
    with Attacker(copy) as a:
        a.sql(
            "INSERT INTO audit_log SELECT 31, at, actor, channel, verb, targets, 'forged', outcome, request_id, "
            "detail, hash, '' FROM audit_log WHERE id = 30"
        )
        a.sql("INSERT INTO audit_target SELECT target, 31 FROM audit_target WHERE row_id = 30")
        a.rehash(31, a.row(30)["hash"])
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 31)
    assert "added after the anchored head" in reason


def test_whole_chain_rewritten_is_caught_by_the_head_file(copy: Path) -> None:
    """Editing row 5 and recomputing every hash after it passes the chain but not the head file."""
    with Attacker(copy) as a:
        a.sql("UPDATE audit_log SET outcome = 'denied' WHERE id = 5")
        a.rechain(5)
    ok, row, reason = check(copy)
    assert (ok, row) == (False, ROWS)
    assert "rewritten" in reason


def test_truncated_tail_is_caught(copy: Path) -> None:
    """Deleting the newest rows is caught: the head file names a row past the end."""
    with Attacker(copy) as a:
        a.sql("DELETE FROM audit_log WHERE id >= 28")
        a.sql("DELETE FROM audit_target WHERE row_id >= 28")
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 28)
    assert "removed from the end" in reason


def test_missing_head_file_is_caught(copy: Path) -> None:
    """Deleting the head file while rows exist fails verification."""
    Path(str(copy) + ".audit-head").unlink()
    ok, row, reason = check(copy)
    assert (ok, row) == (False, None)
    assert "missing" in reason


def test_garbled_head_file_is_caught(copy: Path) -> None:
    """A head file that is not a valid anchor fails verification."""
    head = Path(str(copy) + ".audit-head")
    data = json.loads(head.read_text())
    head.write_text(json.dumps({**data, "hash": "not-a-hash"}))
    ok, row, reason = check(copy)
    assert (ok, row) == (False, None)
    assert "not a valid audit head file" in reason


def test_device_index_entry_removed_is_caught(copy: Path) -> None:
    """Removing a row's device-index entries (hiding it from history) is caught at that row."""
    with Attacker(copy) as a:
        a.sql("DELETE FROM audit_target WHERE row_id = 9")
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 9)
    assert "lost a target of row 9" in reason


def test_device_index_entry_added_is_caught(copy: Path) -> None:
    """Adding a device-index entry a row does not have (planting history) is caught at that row."""
    with Attacker(copy) as a:
        a.sql("INSERT INTO audit_target VALUES ('iccid:00000000000000000000', 7)")
    ok, row, reason = check(copy)
    assert (ok, row) == (False, 7)
    assert "does not have" in reason


def test_dropped_trigger_is_caught(copy: Path) -> None:
    """A dropped append-only trigger fails verification even when no row was changed yet."""
    with Attacker(copy) as a:
        a.triggers = [t for t in a.triggers if t[0] != "audit_log_no_update"]
    ok, row, reason = check(copy)
    assert (ok, row) == (False, None)
    assert "audit_log_no_update" in reason


def test_the_bot_does_not_launder_a_rewrite(copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After a consistent rewrite, the bot's next append leaves the head file alone and verify still fails."""
    with Attacker(copy) as a:
        a.sql("UPDATE audit_log SET reason = 'nothing to see' WHERE id = 20")
        a.rechain(20)
    head = Path(str(copy) + ".audit-head")
    before = head.read_text()
    db = open_database(copy)
    with caplog.at_level(logging.ERROR, logger="storage.audit.chain"):
        AuditLog(db).record(event(99))
    assert head.read_text() == before
    assert "does not match the audit log" in caplog.text
    result = verify(db)
    assert (result.ok, result.first_bad_row) == (False, ROWS)


def test_the_bot_does_not_recreate_a_deleted_head_file(copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A deleted head file stays deleted (the bot cannot tell it from tampering); verify keeps failing."""
    head = Path(str(copy) + ".audit-head")
    head.unlink()
    db = open_database(copy)
    with caplog.at_level(logging.ERROR, logger="storage.audit.chain"):
        AuditLog(db).record(event(99))
    assert not head.exists()
    assert "missing although the log has rows" in caplog.text
    assert verify(db).ok is False


def test_verify_reads_a_read_only_copy(copy: Path) -> None:
    """An auditor's read-only copy verifies without needing write access."""
    import os
    import stat

    db = open_database(copy, migrate=False)
    db.conn.execute("PRAGMA journal_mode=DELETE")
    db.conn.close()
    os.chmod(copy, stat.S_IRUSR)
    try:
        import sqlite3

        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True, isolation_level=None)
        result = verify(Database(conn), Path(str(copy) + ".audit-head"))
        conn.close()
    finally:
        os.chmod(copy, stat.S_IRUSR | stat.S_IWUSR)
    assert (result.ok, result.rows) == (True, ROWS)
