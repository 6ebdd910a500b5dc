"""Retention: old rows go to an archive file, a checkpoint re-anchors the chain, verify still works."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from storage.audit.log import (
    AuditIntegrityError,
    AuditLog,
    Verb,
    apply_retention,
    default_archive_path,
    verify,
)
from storage.schema import open_database
from tests.helpers.audit import ICCIDS, START, Attacker, build_log, event, independent_hash

ROWS = 20
#: rows 1–10 are stamped before this (event i is at START + i minutes)
CUTOFF = START + timedelta(minutes=10)


@pytest.fixture
def built(tmp_path: Path) -> tuple[Database, AuditLog, Path]:
    path = tmp_path / "tsbot.db"
    db, log = build_log(path, ROWS)
    return db, log, path


def test_retention_archives_old_rows_and_verify_still_passes(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """Rows older than the cutoff are archived and removed; a checkpoint row follows; verify passes."""
    db, log, _path = built
    archive = tmp_path / "archive.jsonl"
    result = apply_retention(db, older_than=CUTOFF, archive_path=archive)
    assert (result.removed, result.first_removed_id, result.last_removed_id) == (10, 1, 10)
    assert (result.checkpoint_id, result.archive_path) == (ROWS + 1, archive)
    assert log.count() == ROWS - 10 + 1
    checkpoint = log.get(ROWS + 1)
    assert checkpoint is not None
    assert (checkpoint.verb, checkpoint.actor) == (Verb.AUDIT_CHECKPOINT, "system")
    assert checkpoint.detail["removed"] == 10
    assert checkpoint.detail["archive"] == "archive.jsonl"
    assert checkpoint.detail["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    verdict = verify(db)
    assert (verdict.ok, verdict.rows, verdict.first_id, verdict.last_id) == (True, 11, 11, ROWS + 1)
    assert not list(tmp_path.glob("*.partial"))


def test_archive_lines_rehash_on_their_own(built: tuple[Database, AuditLog, Path], tmp_path: Path) -> None:
    """Each archived line carries its hashes, and the archive chains from genesis to the checkpoint's hash."""
    db, log, _path = built
    archive = tmp_path / "archive.jsonl"
    apply_retention(db, older_than=CUTOFF, archive_path=archive)
    prev = "0" * 64
    lines = archive.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10
    for n, line in enumerate(lines, start=1):
        row = json.loads(line)
        assert (row["id"], row["prev_hash"]) == (n, prev)
        assert row["hash"] == independent_hash(prev, row)
        prev = row["hash"]
    checkpoint = log.get(ROWS + 1)
    assert checkpoint is not None and checkpoint.detail["last_removed_hash"] == prev
    first_kept = log.get(11)
    assert first_kept is not None and first_kept.prev_hash == prev


def test_archived_rows_leave_the_device_index(built: tuple[Database, AuditLog, Path], tmp_path: Path) -> None:
    """History for a device shows only the rows still held after retention."""
    db, log, _path = built
    apply_retention(db, older_than=CUTOFF, archive_path=tmp_path / "a.jsonl")
    rows = log.query(target=f"iccid:{ICCIDS[0]}", limit=100)
    assert [r.id for r in rows] == [19, 16, 13]
    assert db.execute("SELECT min(row_id) FROM audit_target").fetchone() == (11,)


def test_tampering_after_retention_is_still_caught(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """After retention, editing a remaining row or deleting the first one is still named."""
    db, _log, path = built
    apply_retention(db, older_than=CUTOFF, archive_path=tmp_path / "a.jsonl")
    db.conn.close()
    with Attacker(path) as a:
        a.sql("UPDATE audit_log SET reason = 'edited' WHERE id = 15")
    check = open_database(path, migrate=False)
    result = verify(check)
    assert (result.ok, result.first_bad_row) == (False, 15)
    with Attacker(path) as a:
        a.sql("UPDATE audit_log SET reason = ? WHERE id = 15", a.row(14)["reason"].replace("13", "14"))
        a.sql("DELETE FROM audit_log WHERE id = 11")
    result = verify(check)
    assert (result.ok, result.first_bad_row) == (False, 11)
    assert "retention checkpoint archived up to row 10" in result.reason


def test_second_run_and_new_appends_keep_verifying(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """Appends after retention chain on; later runs (one archiving every row, checkpoints too) verify."""
    db, log, _path = built
    apply_retention(db, older_than=CUTOFF, archive_path=tmp_path / "one.jsonl")
    log.record_many(event(i, at=START + timedelta(hours=2, minutes=i)) for i in range(5))
    assert verify(db).ok
    second = apply_retention(db, older_than=START + timedelta(hours=1), archive_path=tmp_path / "two.jsonl")
    assert (second.first_removed_id, second.last_removed_id, second.removed) == (11, 20, 10)
    result = verify(db)
    assert (result.ok, result.first_id, result.last_id) == (True, 21, 27)
    everything = apply_retention(
        db, older_than=datetime.now(UTC) + timedelta(minutes=1), archive_path=tmp_path / "three.jsonl"
    )
    assert (everything.first_removed_id, everything.last_removed_id) == (21, 27)
    result = verify(db)
    assert (result.ok, result.rows, result.first_id, result.anchored_id) == (True, 1, 28, 28)
    log.record(event(0))
    assert verify(db).ok


def test_nothing_old_enough_changes_nothing(built: tuple[Database, AuditLog, Path], tmp_path: Path) -> None:
    """With no row older than the cutoff there is no archive, no checkpoint, no change."""
    db, log, _path = built
    result = apply_retention(db, older_than=START - timedelta(days=1), archive_path=tmp_path / "a.jsonl")
    assert result.removed == 0 and result.archive_path is None
    assert not (tmp_path / "a.jsonl").exists()
    assert log.count() == ROWS


def test_an_old_checkpoint_alone_is_left_in_place(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """A quiet log is not re-archived every day: a run that would only remove checkpoints does nothing."""
    db, log, _path = built
    apply_retention(
        db, older_than=datetime.now(UTC) + timedelta(minutes=1), archive_path=tmp_path / "a.jsonl"
    )
    assert log.count() == 1
    later = apply_retention(
        db, older_than=datetime.now(UTC) + timedelta(days=1), archive_path=tmp_path / "b.jsonl"
    )
    assert later.removed == 0 and not (tmp_path / "b.jsonl").exists()
    assert verify(db).ok


def test_retention_refuses_to_archive_tampered_rows(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """A changed row among those to archive stops retention: nothing removed, no archive left behind."""
    db, log, path = built
    with Attacker(path) as a:
        a.sql("UPDATE audit_log SET actor = 'U0NOBODY' WHERE id = 4")
    with pytest.raises(AuditIntegrityError, match="row 4 was changed"):
        apply_retention(db, older_than=CUTOFF, archive_path=tmp_path / "a.jsonl")
    assert log.count() == ROWS
    assert list(tmp_path.glob("a.jsonl*")) == []


def test_retention_refuses_when_the_head_file_disagrees(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """A head file that does not match the log (a rewrite) stops retention before anything is archived."""
    db, log, path = built
    with Attacker(path) as a:
        a.sql("UPDATE audit_log SET reason = 'x' WHERE id = 3")
        a.rechain(3)
    with pytest.raises(AuditIntegrityError, match="does not match the log"):
        apply_retention(db, older_than=CUTOFF, archive_path=tmp_path / "a.jsonl")
    Path(str(path) + ".audit-head").unlink()
    with pytest.raises(AuditIntegrityError, match="missing"):
        apply_retention(db, older_than=CUTOFF, archive_path=tmp_path / "a.jsonl")
    assert log.count() == ROWS


def test_retention_never_overwrites_an_archive(
    built: tuple[Database, AuditLog, Path], tmp_path: Path
) -> None:
    """An existing archive file is refused by name and left as it was."""
    db, log, _path = built
    archive = tmp_path / "a.jsonl"
    archive.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="never overwrites"):
        apply_retention(db, older_than=CUTOFF, archive_path=archive)
    assert archive.read_text() == "keep me\n"
    assert log.count() == ROWS


def test_retention_refuses_naive_cutoff(built: tuple[Database, AuditLog, Path], tmp_path: Path) -> None:
    """A cutoff without a time zone is refused."""
    db, _log, _path = built
    with pytest.raises(ValueError, match="time zone"):
        apply_retention(db, older_than=CUTOFF.replace(tzinfo=None), archive_path=tmp_path / "a.jsonl")


def test_default_archive_path_is_dated() -> None:
    """The default archive name carries the UTC time of the run."""
    path = default_archive_path("/var/lib/tsbot", datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC))
    assert path == Path("/var/lib/tsbot/audit-archive-20260509T073525Z.jsonl")
