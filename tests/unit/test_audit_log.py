"""AuditLog on a real SQLite file: appends, the chain, the head file, transactions, queries."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from storage.audit.log import AnchorConfirmer, AuditEvent, AuditLog, Outcome, Verb, verify
from storage.db import write
from storage.schema import open_database
from tests.helpers.audit import ICCIDS, START, build_log, event, independent_hash


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "tsbot.db", synchronous="NORMAL")
    database.execute("CREATE TABLE state (name TEXT PRIMARY KEY, value TEXT)")
    return database


COPY_ROW_2 = (
    "INSERT INTO audit_log SELECT {row_id}, at, actor, channel, verb, targets, reason, outcome, request_id, "
    "detail, {prev}, hash FROM audit_log WHERE id = 2"
)


def head_file(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / "tsbot.db.audit-head").read_text())
    return data


def test_record_returns_consecutive_ids_chained_by_the_documented_rule(tmp_path: Path) -> None:
    """Each row's hash is sha256(prev_hash + canonical JSON), recomputable with hashlib and json alone."""
    _db, log = build_log(tmp_path / "tsbot.db", 6)
    prev = "0" * 64
    for row_id in range(1, 7):
        row = log.get(row_id)
        assert row is not None
        assert row.prev_hash == prev
        data = row.to_dict()
        assert row.hash == independent_hash(prev, data)
        prev = row.hash
    assert log.count() == 6
    assert log.head() == (6, prev)


def test_record_writes_the_head_file_confirmed(tmp_path: Path, db: Database) -> None:
    """After a record outside any transaction the head file names the new row, confirmed."""
    log = AuditLog(db)
    row_id = log.record(event(0))
    head = head_file(tmp_path)
    assert (head["id"], head["base_id"]) == (row_id, row_id)
    assert head["hash"] == head["base_hash"] == log.head()[1]


def test_record_many_is_one_transaction_and_one_head(tmp_path: Path, db: Database) -> None:
    """record_many appends a batch with consecutive ids; the head file names the last one."""
    log = AuditLog(db)
    log.record(event(0))
    ids = log.record_many(event(i) for i in range(1, 101))
    assert ids == list(range(2, 102))
    assert head_file(tmp_path)["id"] == 101
    assert log.record_many([]) == []
    assert verify(db).ok


def test_record_many_refuses_other_objects(db: Database) -> None:
    """Only AuditEvent objects are recorded; anything else is refused before writing."""
    log = AuditLog(db)
    with pytest.raises(TypeError, match="AuditEvent"):
        log.record_many([event(0), {"actor": "U1"}])  # type: ignore[list-item]
    assert log.count() == 0


def test_audit_row_commits_with_the_state_change(db: Database) -> None:
    """Inside the caller's transaction the audit row commits together with the change it describes."""
    log = AuditLog(db)
    with log.transaction():
        db.execute("INSERT INTO state VALUES ('line', 'suspended')")
        log.record(event(0))
    assert db.execute("SELECT value FROM state").fetchall() == [("suspended",)]
    assert log.count() == 1
    assert verify(db).ok


def test_audit_row_rolls_back_with_the_state_change(tmp_path: Path, db: Database) -> None:
    """A failed log.transaction() leaves neither the change nor its audit row, and puts the head
    file back: the log verifies with no note, and the next append records no gap."""
    log = AuditLog(db)
    log.record(event(0))
    before = head_file(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), log.transaction():
        db.execute("INSERT INTO state VALUES ('line', 'suspended')")
        log.record(event(1))
        assert head_file(tmp_path)["id"] == 2  # announced before the commit
        raise RuntimeError("boom")
    assert db.execute("SELECT count(*) FROM state").fetchone() == (0,)
    assert log.count() == 1
    assert {k: v for k, v in head_file(tmp_path).items() if k != "written_at"} == {
        k: v for k, v in before.items() if k != "written_at"
    }
    result = verify(db)
    assert (result.ok, result.rows, result.note) == (True, 1, "")
    log.record(event(2))
    assert [row.verb for row in log.iter_rows()] == [event(0).verb, event(2).verb]
    assert verify(db).ok


def test_first_transaction_rolled_back_removes_the_head_file_it_created(tmp_path: Path, db: Database) -> None:
    """On an empty log, a failed first transaction leaves no head file behind (as before it began)."""
    log = AuditLog(db)
    with pytest.raises(RuntimeError, match="boom"), log.transaction():
        log.record(event(0))
        raise RuntimeError("boom")
    assert not (tmp_path / "tsbot.db.audit-head").exists()
    assert verify(db).ok


def test_bare_write_rolled_back_is_recorded_as_a_gap(tmp_path: Path, db: Database) -> None:
    """A bare write(db) that rolls back leaves the head file announcing a row the log lacks.

    verify fails on it, naming the announced row, unless that exact row is accepted as a crash;
    the next append records the finding as an audit.gap row before its own row, and then the
    log verifies, with the gap in the note.
    """
    log = AuditLog(db)
    log.record(event(0))
    with pytest.raises(RuntimeError, match="boom"), write(db):
        log.record(event(1))
        raise RuntimeError("boom")
    result = verify(db)
    assert (result.ok, result.first_bad_row) == (False, 2)
    assert "announces row 2" in result.reason and "--accept-uncommitted 2" in result.reason
    assert not verify(db, accept_uncommitted=3).ok
    accepted = verify(db, accept_uncommitted=2)
    assert accepted.ok and "accepted as a crash" in accepted.note
    announced = head_file(tmp_path)
    row_id = log.record(event(2))
    assert row_id == 3
    gap = log.get(2)
    assert gap is not None
    assert (gap.verb, gap.actor, gap.outcome) == (Verb.AUDIT_GAP, "system", Outcome.MISSING)
    assert gap.detail["announced_id"] == 2 and gap.detail["announced_hash"] == announced["hash"]
    assert gap.detail["log_ended_at_id"] == 1
    assert "crash" in gap.reason and "deletion" in gap.reason
    result = verify(db)
    assert (result.ok, result.rows) == (True, 3)
    assert "1 audit gap: row 2 (row 2 announced, never found)" in result.note


def test_anchor_records_a_gap_and_confirms(tmp_path: Path, db: Database) -> None:
    """anchor() (shutdown, the minute job, the confirmer) records a gap too, then confirms the head."""
    log = AuditLog(db)
    log.record(event(0))
    with pytest.raises(RuntimeError, match="boom"), write(db):
        log.record_many([event(1), event(2)])
        raise RuntimeError("boom")
    assert log.anchor() is True
    gap = log.get(2)
    assert gap is not None and gap.verb == Verb.AUDIT_GAP and gap.detail["first_missing_id"] == 2
    assert "rows 2–3" in gap.reason
    head = head_file(tmp_path)
    assert (head["id"], head["base_id"]) == (2, 2)
    assert log.anchor() is False
    assert verify(db).ok


def test_record_in_a_bare_write_is_pending_until_anchor(tmp_path: Path, db: Database) -> None:
    """A row recorded in a caller's write(db) is anchored as pending; anchor() confirms it after the commit."""
    log = AuditLog(db)
    with write(db):
        log.record(event(0))
        log.record(event(1))
    head = head_file(tmp_path)
    assert (head["id"], head["base_id"]) == (2, 0)
    assert verify(db).ok
    assert log.anchor() is True
    head = head_file(tmp_path)
    assert (head["id"], head["base_id"]) == (2, 2)
    assert log.anchor() is False


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_confirmer_confirms_after_the_transaction_ends(tmp_path: Path, db: Database) -> None:
    """A running AnchorConfirmer is woken by a pending append, waits for that transaction to end,
    confirms the head file, and stops cleanly (unregistered, thread ended)."""
    from storage.audit import log as audit

    confirmer = AnchorConfirmer(tmp_path / "tsbot.db", delay=0.01).start()
    try:
        assert confirmer.alive()
        log = AuditLog(db)
        with log.transaction(confirm=False):
            log.record(event(0))
            time.sleep(0.3)  # the confirmer is awake but must wait for the commit
            head = head_file(tmp_path)
            assert (head["id"], head["base_id"]) == (1, 0)
        _wait(lambda: head_file(tmp_path)["base_id"] == 1)
        log.record_many([event(1)], confirm=False)  # committed by itself, confirmed off this thread
        _wait(lambda: head_file(tmp_path)["base_id"] == 2)
        assert confirmer.writes >= 2
    finally:
        confirmer.stop()
    assert not confirmer.alive()
    assert not audit._CONFIRMERS
    assert AuditLog(db).request_confirmation() is False  # nobody to ask: stays pending until anchor()


def test_triggers_keep_the_log_append_only(db: Database) -> None:
    """UPDATE, DELETE and an out-of-place INSERT on the audit tables are refused by SQLite."""
    log = AuditLog(db)
    log.record(event(0))
    log.record(event(1))
    for statement in (
        "UPDATE audit_log SET reason = 'nothing happened' WHERE id = 1",
        "DELETE FROM audit_log WHERE id = 2",
        "UPDATE audit_target SET target = 'iccid:0' WHERE row_id = 1",
        "DELETE FROM audit_target",
        # a row that skips an id, and a row that repeats the previous row's prev_hash (a fork)
        COPY_ROW_2.format(row_id=7, prev="hash"),
        COPY_ROW_2.format(row_id=3, prev="prev_hash"),
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    assert log.count() == 2
    assert verify(db).ok


def test_text_round_trips_exactly(db: Database) -> None:
    """Unicode, quotes, newlines and NUL characters in free text are stored and hashed exactly."""
    log = AuditLog(db)
    reason = 'line "1"\nstolen — ✓ \x00 end'
    row_id = log.record(AuditEvent(actor="U1", verb=Verb.SUSPEND, reason=reason, detail={"k": "é\x00"}))
    row = log.get(row_id)
    assert row is not None
    assert (row.reason, row.detail) == (reason, {"k": "é\x00"})
    assert verify(db).ok


def test_query_by_device_newest_first(db: Database) -> None:
    """query(target=…) returns that device's rows only, newest first, using kind:id or a bare id."""
    log = AuditLog(db)
    log.record_many(event(i) for i in range(30))
    rows = log.query(target=f"iccid:{ICCIDS[1]}", limit=100)
    assert [r.id for r in rows] == sorted((i + 1 for i in range(30) if i % 3 == 1), reverse=True)
    assert all(f"iccid:{ICCIDS[1]}" in r.targets for r in rows)
    assert [r.id for r in log.query(target=ICCIDS[1], limit=100)] == [r.id for r in rows]
    assert [r.id for r in log.query(target="5551234567", limit=100)] == [29, 25, 21, 17, 13, 9, 5, 1]
    assert [r.id for r in log.query(target="MDN:5551234567", limit=3)] == [29, 25, 21]
    assert log.query(target="iccid:00000000000000000000") == []


def test_query_filters_combine(db: Database) -> None:
    """Actor, verb, since/until and target filters all apply together."""
    log = AuditLog(db)
    log.record_many(event(i) for i in range(30))
    rows = log.query(actor="U0BOB", limit=100)
    assert [r.id for r in rows] == [i + 1 for i in reversed(range(30)) if i % 3 == 1]
    rows = log.query(verb=Verb.SUSPEND, limit=100)
    assert {r.verb for r in rows} == {"suspend"} and len(rows) == 6
    since, until = START + timedelta(minutes=10), START + timedelta(minutes=20)
    rows = log.query(since=since, until=until, limit=100)
    assert [r.id for r in rows] == list(range(20, 10, -1))
    rows = log.query(target=f"iccid:{ICCIDS[0]}", actor="U0ALICE", since=since, limit=100)
    assert [r.id for r in rows] == [28, 25, 22, 19, 16, 13]


def test_query_pages_with_before_id(db: Database) -> None:
    """before_id gives the next page: no row twice, none skipped."""
    log = AuditLog(db)
    log.record_many(event(i) for i in range(25))
    seen: list[int] = []
    before = None
    while page := log.query(limit=10, before_id=before):
        seen.extend(r.id for r in page)
        before = page[-1].id
    assert seen == list(range(25, 0, -1))
    page = log.query(target="5551234567", limit=2, before_id=17)
    assert [r.id for r in page] == [13, 9]


@pytest.mark.parametrize("limit", [0, -1, 1001, True])
def test_query_limit_is_bounded(db: Database, limit: int) -> None:
    """A limit outside 1..1000 is refused with the accepted range."""
    with pytest.raises(ValueError, match="from 1 to 1000"):
        AuditLog(db).query(limit=limit)


def test_query_refuses_naive_times_and_empty_target(db: Database) -> None:
    """Filters that cannot be meant are refused rather than guessed."""
    log = AuditLog(db)
    with pytest.raises(ValueError, match="time zone"):
        log.query(since=START.replace(tzinfo=None))
    with pytest.raises(ValueError, match="target must not be empty"):
        log.query(target="  ")


def test_get_missing_row_is_none(db: Database) -> None:
    """get() of an id that is not in the log returns None."""
    assert AuditLog(db).get(42) is None


def test_in_memory_log_chains_without_a_head_file() -> None:
    """An in-memory database keeps the chain; verify says only the chain could be checked."""
    db = open_database(":memory:")
    log = AuditLog(db)
    assert log.head_path is None
    log.record_many(event(i) for i in range(5))
    result = verify(db)
    assert (result.ok, result.rows) == (True, 5)
    assert "no head file" in result.note


def test_iter_rows_streams_oldest_first_with_filters(db: Database) -> None:
    """iter_rows yields matching rows oldest first."""
    log = AuditLog(db)
    log.record_many(event(i) for i in range(12))
    assert [r.id for r in log.iter_rows(actor="U0CAROL")] == [3, 6, 9, 12]
    assert [r.id for r in log.iter_rows(target="5551234567", verb=Verb.SUSPEND)] == [1]
    assert next(log.iter_rows()).outcome == Outcome.OK
