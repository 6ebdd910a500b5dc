"""A durable work queue for what a command does after Slack has its ack.

A slash command or a button click writes a job row (in the same transaction as its audit row)
and only then acknowledges Slack; a worker thread claims jobs with a lease and runs them. A job
that dies with its process is picked up again when its lease expires, or at once when the next
start on the same host sees that its process (``owner``) is gone — except jobs marked
``mutating`` (suspend, resume, SMS, cancel location): those are never re-sent blindly after a
crash mid-submit, because ThingSpace may already have accepted them. They become ``unknown`` and
the requester is told to check the device before retrying.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = [
    "Job",
    "claim",
    "count_open",
    "enqueue",
    "finish",
    "migrations",
    "reclaim_expired",
    "reclaim_orphans",
    "start_submit",
]

migrations = Migrations("tsbot.jobs")


@migrations()
def create_jobs(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            mutating INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'submitting', 'done', 'failed', 'unknown')),
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_until REAL,
            error TEXT,
            created_at REAL NOT NULL,
            finished_at REAL
        )
        """
    )
    db.execute(
        "CREATE INDEX jobs_open ON jobs (state, id) WHERE state IN ('queued', 'running', 'submitting')"
    )


@dataclass(frozen=True)
class Job:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    mutating: bool
    attempts: int


def enqueue(db: Database, *, key: str, kind: str, payload: Mapping[str, Any], mutating: bool = False) -> bool:
    """Add a job; a second enqueue with the same *key* is a no-op. Returns True if added."""
    cursor = db.execute(
        """
        INSERT INTO jobs (key, kind, payload, mutating, created_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (key) DO NOTHING
        """,
        [key, kind, json.dumps(dict(payload), separators=(",", ":")), int(mutating), time.time()],
    )
    return cursor.rowcount == 1


@migrations()
def add_owner(db: Database) -> None:
    """Which process runs a job (``host:pid:start``), so a restart finds the jobs of a dead one."""
    db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")


def claim(db: Database, *, lease: float = 120.0, now: float | None = None, owner: str = "") -> Job | None:
    """Take the oldest queued job, or one whose run died before it submitted anything."""
    now = time.time() if now is None else now
    row = db.execute(
        """
        UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ?, owner = ?
        WHERE id = (
            SELECT id FROM jobs
            WHERE state = 'queued' OR (state = 'running' AND lease_until < ?)
            ORDER BY id LIMIT 1
        )
        RETURNING id, key, kind, payload, mutating, attempts
        """,
        [now + lease, owner or None, now],
    ).fetchone()
    if row is None:
        return None
    return Job(row[0], row[1], row[2], json.loads(row[3]), bool(row[4]), row[5])


def start_submit(db: Database, job_id: int) -> None:
    """Mark that a mutating call to ThingSpace is about to be made (no blind resend after this)."""
    db.execute("UPDATE jobs SET state = 'submitting' WHERE id = ?", [job_id])


def extend_lease(db: Database, job_id: int, *, lease: float = 120.0, now: float | None = None) -> None:
    """Keep a long job (a bulk action sent in several requests) from being taken for dead."""
    now = time.time() if now is None else now
    db.execute("UPDATE jobs SET lease_until = ? WHERE id = ?", [now + lease, job_id])


def finish(db: Database, job_id: int, *, ok: bool = True, error: str | None = None) -> None:
    db.execute(
        "UPDATE jobs SET state = ?, error = ?, finished_at = ?, lease_until = NULL WHERE id = ?",
        ["done" if ok else "failed", error, time.time(), job_id],
    )


def reclaim_expired(db: Database, *, now: float | None = None) -> list[Job]:
    """Jobs whose process died while submitting to ThingSpace: mark them ``unknown``, return them."""
    now = time.time() if now is None else now
    rows = db.execute(
        """
        UPDATE jobs SET state = 'unknown', finished_at = ?
        WHERE state = 'submitting' AND lease_until < ?
        RETURNING id, key, kind, payload, mutating, attempts
        """,
        [now, now],
    ).fetchall()
    return [Job(r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), r[5]) for r in rows]


def reclaim_orphans(db: Database, dead: Callable[[str], bool]) -> list[Job]:
    """Jobs that were ``running`` (not yet submitting) in a process that is gone (``dead(owner)``):
    queued again at once instead of waiting for their lease, and returned."""
    rows = db.execute("SELECT id, owner FROM jobs WHERE state = 'running' AND owner IS NOT NULL").fetchall()
    gone = [job_id for job_id, owner in rows if dead(owner)]
    out: list[Job] = []
    for job_id in gone:
        row = db.execute(
            """
            UPDATE jobs SET state = 'queued', lease_until = NULL, owner = NULL
            WHERE id = ? AND state = 'running'
            RETURNING id, key, kind, payload, mutating, attempts
            """,
            [job_id],
        ).fetchone()
        if row is not None:
            out.append(Job(row[0], row[1], row[2], json.loads(row[3]), bool(row[4]), row[5]))
    return out


def count_open(db: Database) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running', 'submitting')"
    ).fetchone()
    return int(row[0])
