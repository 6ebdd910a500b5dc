"""Named leases in SQLite: at most one holder at a time, with an expiry the holder keeps renewing.

The scheduler takes the lease ``"scheduler"`` so that, when two bot processes are started on one
database by mistake (two uvicorn workers, a second ``tsbot serve``), only one of them runs the
scheduled jobs (APScheduler cannot share one job store between processes: see its FAQ, "How do
I share a single job store among one or more worker processes?"). The other keeps trying; it takes over
once the holder has stopped renewing and the lease has expired, or at once after a clean release.

Times are wall-clock epoch seconds passed in by the caller (tests inject them). The table also
keeps, per job, the last run and who ran it, so ``/readyz``-style checks and tests can see that
jobs run in one process only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import write

__all__ = [
    "JobRun",
    "Lease",
    "acquire",
    "current",
    "job_runs",
    "migrations",
    "record_job_run",
    "release",
]

migrations = Migrations("tsbot.lease")


@migrations()
def create_leases(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            acquired_at REAL NOT NULL,
            renewed_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE scheduler_job_runs (
            job_id TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            runs INTEGER NOT NULL DEFAULT 0,
            last_started_at REAL NOT NULL,
            last_finished_at REAL,
            last_status TEXT NOT NULL DEFAULT 'running'
        )
        """
    )


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: float
    renewed_at: float
    expires_at: float


@dataclass(frozen=True)
class JobRun:
    job_id: str
    holder: str
    runs: int
    last_started_at: float
    last_finished_at: float | None
    last_status: str


def _check(name: str, holder: str, ttl: float) -> None:
    if not name or not holder:
        raise ValueError("a lease needs a name and a holder")
    if ttl <= 0:
        raise ValueError(f"a lease's ttl must be positive, not {ttl}")


def acquire(db: Database, name: str, holder: str, *, ttl: float, now: float) -> Lease | None:
    """Take or renew the lease for *ttl* seconds; the lease if *holder* has it now, else None.

    The holder renews by calling this again. Anyone else gets it only once it has expired.
    """
    _check(name, holder, ttl)
    with write(db):
        db.execute(
            """
            INSERT INTO leases (name, holder, acquired_at, renewed_at, expires_at)
            VALUES (:name, :holder, :now, :now, :expires)
            ON CONFLICT (name) DO UPDATE SET
                acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at
                                   ELSE excluded.acquired_at END,
                holder = excluded.holder,
                renewed_at = excluded.renewed_at,
                expires_at = excluded.expires_at
            WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.renewed_at
            """,
            {"name": name, "holder": holder, "now": now, "expires": now + ttl},
        )
        lease = current(db, name)
    return lease if lease is not None and lease.holder == holder else None


def release(db: Database, name: str, holder: str) -> bool:
    """Give the lease up (clean shutdown) so another process may take it at once."""
    with write(db):
        cursor = db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", [name, holder])
    return cursor.rowcount == 1


def current(db: Database, name: str) -> Lease | None:
    """The lease row as stored (it may have expired: compare ``expires_at`` with the time)."""
    row = db.execute(
        "SELECT name, holder, acquired_at, renewed_at, expires_at FROM leases WHERE name = ?", [name]
    ).fetchone()
    return None if row is None else Lease(*row)


def record_job_run(
    db: Database, job_id: str, holder: str, *, started_at: float, finished_at: float, status: str
) -> None:
    """Remember that *holder* ran *job_id* (one row per job, with a run counter)."""
    with write(db):
        db.execute(
            """
            INSERT INTO scheduler_job_runs
                (job_id, holder, runs, last_started_at, last_finished_at, last_status)
            VALUES (?, ?, 1, ?, ?, ?)
            ON CONFLICT (job_id) DO UPDATE SET
                holder = excluded.holder, runs = scheduler_job_runs.runs + 1,
                last_started_at = excluded.last_started_at,
                last_finished_at = excluded.last_finished_at, last_status = excluded.last_status
            """,
            [job_id, holder, started_at, finished_at, status],
        )


def job_runs(db: Database) -> list[JobRun]:
    """Every job's last run, by job id."""
    rows = db.execute(
        "SELECT job_id, holder, runs, last_started_at, last_finished_at, last_status "
        "FROM scheduler_job_runs ORDER BY job_id"
    ).fetchall()
    return [JobRun(*r) for r in rows]
