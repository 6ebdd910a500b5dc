"""Helpers for the audit-log tests: real database files, an attacker with SQL access, an independent hasher."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from sqlite_utils import Database

from storage.audit.log import AuditEvent, AuditLog, Outcome, Verb
from storage.schema import open_database

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
ICCIDS = ("89148000000800139708", "89148000000800139716", "89148000000800139724")
USERS = ("U0ALICE", "U0BOB", "U0CAROL")


def event(i: int, *, at: datetime | None = None) -> AuditEvent:
    """A varied, deterministic event: actors, verbs, targets and times differ with *i*."""
    verbs = (Verb.SUSPEND, Verb.DIAG, Verb.CONFIRM, Verb.RESUME, Verb.ALERT_SNOOZE)
    return AuditEvent(
        at=at or START + timedelta(minutes=i),
        actor=USERS[i % len(USERS)],
        channel="C0NOC",
        verb=verbs[i % len(verbs)],
        targets=[f"iccid:{ICCIDS[i % len(ICCIDS)]}", "mdn:5551234567"]
        if i % 4 == 0
        else [f"iccid:{ICCIDS[i % 3]}"],
        reason=f"case {i} — ünïcode",
        outcome=Outcome.ACCEPTED if i % 2 else Outcome.OK,
        request_id=f"req-{i:04d}",
        detail={"n": i, "nested": {"list": [1, 2.5, None, True]}},
    )


def build_log(path: Path, rows: int) -> tuple[Database, AuditLog]:
    """A real database file at *path* with *rows* events recorded one by one (each its own transaction)."""
    db = open_database(path, synchronous="NORMAL")
    log = AuditLog(db)
    for i in range(rows):
        log.record(event(i))
    return db, log


def copy_database(db: Database, src: Path, dst_dir: Path) -> Path:
    """Checkpoint *db* and copy its file and head file into *dst_dir*; returns the copy's path."""
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    head = Path(str(src) + ".audit-head")
    if head.exists():
        shutil.copyfile(head, Path(str(dst) + ".audit-head"))
    return dst


def independent_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The documented chain rule, written from the docs with hashlib and json only."""
    body = {
        k: row[k]
        for k in (
            "actor",
            "at",
            "channel",
            "detail",
            "id",
            "outcome",
            "reason",
            "request_id",
            "targets",
            "verb",
        )
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + text).encode("utf-8")).hexdigest()


class Attacker:
    """Someone with write access to a copy of the database file: drops the triggers, edits, puts them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> Self:
        self.triggers = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit%'"
        ).fetchall()
        for name, _sql in self.triggers:
            self.conn.execute(f"DROP TRIGGER {name}")
        return self

    def __exit__(self, *exc: object) -> None:
        for _name, sql in self.triggers:
            self.conn.execute(sql)
        self.conn.close()

    def sql(self, statement: str, *params: Any) -> None:
        self.conn.execute(statement, params)

    def row(self, row_id: int) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM audit_log WHERE id = ?", (row_id,))
        names = [d[0] for d in cur.description]
        found = cur.fetchone()
        data = dict(zip(names, found, strict=True))
        data["targets"] = json.loads(data["targets"])
        data["detail"] = json.loads(data["detail"])
        return data

    def rehash(self, row_id: int, prev_hash: str) -> str:
        """Set *row_id*'s prev_hash and recompute its hash (the documented rule); returns the hash."""
        data = self.row(row_id)
        digest = independent_hash(prev_hash, data)
        self.sql("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?", prev_hash, digest, row_id)
        return digest

    def rechain(self, from_id: int) -> None:
        """Recompute every hash from *from_id* to the end so the chain is consistent again."""
        prev = self.conn.execute("SELECT hash FROM audit_log WHERE id = ?", (from_id - 1,)).fetchone()
        prev_hash = prev[0] if prev else "0" * 64
        for (row_id,) in self.conn.execute(
            "SELECT id FROM audit_log WHERE id >= ? ORDER BY id", (from_id,)
        ).fetchall():
            prev_hash = self.rehash(row_id, prev_hash)
