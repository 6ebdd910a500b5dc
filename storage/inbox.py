"""The callback inbox: every ThingSpace callback the intake acknowledged, durably, exactly once.

The intake answers ThingSpace's POST only after the row is committed here, so a callback that got
its 2xx survives a crash. One row is one *fact*: the unique index on
``(request_id, device, outcome_key)`` turns ThingSpace's retries (same message, rising
``callbackCount``) into no-ops with ``ON CONFLICT DO NOTHING`` — never ``INSERT OR IGNORE``, which
would also hide ``NOT NULL``/``CHECK`` violations. The payload is stored without the echoed
credentials (the caller strips them), which keeps enough to replay the callback.

States: ``received`` → ``processed`` (the worker turned it into results, in the same transaction
as those results) | ``unmatched`` (a request id the bot never issued and no service-specific
route: kept for audit, no action) | ``failed`` (processing raised; kept with the error, retried
after restart or by hand).

Processing happens exactly once even with two bot processes on one database (started by
mistake): :func:`claim_received` must be called inside the write transaction that also records
the rows' effects and marks them. Its ``UPDATE … WHERE state = 'received' … RETURNING`` runs after
``BEGIN IMMEDIATE`` has taken SQLite's write lock, so another process's worker either committed
before (the rows are no longer ``received``) or waits until this transaction commits. A crash
rolls the claim back with the effects, so no claim is ever left behind to recover: the rows are
simply ``received`` again. ``claimed_by`` / ``claimed_at`` record which worker processed a row.

ThingSpace may call back before the bot has recorded the request it answers (the callback can
arrive while the bot is still committing the API call's ``requestId``). So a row left unmatched
for an *unknown request* (``last_error`` :data:`UNKNOWN_REQUEST`) is revived by
:func:`revive_unmatched` once that request exists, within a grace period.

A request whose callback never came and that ThingSpace's request status still lists as
``Pending`` is looked up again later (``bot.inbox.unanswered``); ``request_rechecks`` remembers how
often and when next (:func:`schedule_recheck`, :func:`recheck_of`, :func:`settle_recheck`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import write

__all__ = [
    "STATES",
    "UNKNOWN_REQUEST",
    "UNSOLICITED",
    "InboxItem",
    "InboxRow",
    "NotInTransaction",
    "Recheck",
    "claim_received",
    "count_by_state",
    "depth",
    "due_rechecks",
    "get",
    "has_received",
    "insert_many",
    "mark",
    "migrations",
    "purge",
    "received_ids",
    "recheck_of",
    "requeue_failed",
    "revive_unmatched",
    "schedule_recheck",
    "settle_recheck",
    "waiting",
]

migrations = Migrations("tsbot.inbox")

STATES = ("received", "processed", "unmatched", "failed")
#: ``last_error`` of a row unmatched because its request id is not (yet) known
UNKNOWN_REQUEST = "unknown request"
#: ``request_id`` of a callback that came without one (a device-originated SMS in the older form)
UNSOLICITED = "-"


@migrations()
def create_inbox(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL CHECK (request_id != ''),
            device TEXT NOT NULL,
            outcome_key TEXT NOT NULL CHECK (outcome_key != ''),
            service TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            callback_count INTEGER NOT NULL DEFAULT 1,
            state TEXT NOT NULL DEFAULT 'received'
                CHECK (state IN ('received', 'processed', 'unmatched', 'failed')),
            received_at REAL NOT NULL,
            processed_at REAL,
            last_error TEXT
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX inbox_fact ON inbox (request_id, device, outcome_key)")
    db.execute("CREATE INDEX inbox_received ON inbox (id) WHERE state = 'received'")


@migrations()
def index_unmatched(db: Database) -> None:
    db.execute("CREATE INDEX inbox_unmatched ON inbox (received_at) WHERE state = 'unmatched'")


@migrations()
def add_claims(db: Database) -> None:
    db.execute("ALTER TABLE inbox ADD COLUMN claimed_by TEXT")
    db.execute("ALTER TABLE inbox ADD COLUMN claimed_at REAL")


@migrations()
def create_rechecks(db: Database) -> None:
    # Requests with no callback that ThingSpace still listed as pending: when to look again.
    db.execute(
        """
        CREATE TABLE request_rechecks (
            request_id TEXT PRIMARY KEY,
            checks INTEGER NOT NULL,
            first_checked_at REAL NOT NULL,
            next_check_at REAL NOT NULL
        )
        """
    )


class NotInTransaction(RuntimeError):
    """:func:`claim_received` was called outside the write transaction that processes the rows."""


@dataclass(frozen=True)
class InboxItem:
    """A callback to store: what identifies the fact, and the body without credentials (a
    mapping, or its JSON text already serialised)."""

    request_id: str
    device: str
    outcome_key: str
    service: str
    kind: str
    payload: Mapping[str, Any] | str
    callback_count: int = 1


@dataclass(frozen=True)
class InboxRow:
    id: int
    request_id: str
    device: str
    outcome_key: str
    service: str
    kind: str
    payload: dict[str, Any]
    callback_count: int
    state: str
    received_at: float
    processed_at: float | None
    last_error: str | None


_COLUMNS = (
    "id, request_id, device, outcome_key, service, kind, payload, callback_count, state, received_at, "
    "processed_at, last_error"
)


def _row(r: Sequence[Any]) -> InboxRow:
    return InboxRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8], r[9], r[10], r[11])


_INSERT = """
    INSERT INTO inbox (request_id, device, outcome_key, service, kind, payload, callback_count, received_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (request_id, device, outcome_key) DO NOTHING
"""


def insert_many(db: Database, items: Sequence[InboxItem], *, now: float | None = None) -> list[bool]:
    """Store callbacks (inside the caller's write transaction); for each, True if it is new and
    False if the same fact was already stored (a retry or a replay)."""
    now = time.time() if now is None else now
    conn = db.conn
    out: list[bool] = []
    for item in items:
        cursor = conn.execute(
            _INSERT,
            (
                item.request_id,
                item.device,
                item.outcome_key,
                item.service,
                item.kind,
                item.payload
                if isinstance(item.payload, str)
                else json.dumps(dict(item.payload), separators=(",", ":"), ensure_ascii=False),
                item.callback_count,
                now,
            ),
        )
        out.append(cursor.rowcount == 1)
    return out


def get(db: Database, row_id: int) -> InboxRow | None:
    found = db.execute(f"SELECT {_COLUMNS} FROM inbox WHERE id = ?", [row_id]).fetchone()
    return None if found is None else _row(found)


def claim_received(
    db: Database,
    *,
    holder: str,
    limit: int = 500,
    after_id: int = 0,
    ids: Sequence[int] | None = None,
    now: float | None = None,
) -> list[InboxRow]:
    """Claim the oldest ``received`` rows (id order) for *holder*, or those of *ids* still
    ``received``; the caller processes and marks them before its transaction commits.

    Must run inside :func:`storage.db.write` (raises :class:`NotInTransaction` otherwise): the
    claim, the rows' effects and their marks commit together, which is what makes processing
    happen once across threads and processes.
    """
    if not db.conn.in_transaction:
        raise NotInTransaction("claim inbox rows inside the write transaction that processes them")
    now = time.time() if now is None else now
    if ids is not None:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        where, params = f"id IN ({marks})", [*ids]
    else:
        where = "id IN (SELECT id FROM inbox WHERE state = 'received' AND id > ? ORDER BY id LIMIT ?)"
        params = [after_id, limit]
    rows = db.execute(
        f"""
        UPDATE inbox SET claimed_by = ?, claimed_at = ?
        WHERE state = 'received' AND {where}
        RETURNING {_COLUMNS}
        """,
        [holder, now, *params],
    ).fetchall()
    return sorted((_row(r) for r in rows), key=lambda r: r.id)


def mark(
    db: Database, row_ids: Sequence[int], state: str, *, error: str | None = None, now: float | None = None
) -> None:
    """Move ``received`` rows to ``processed``, ``unmatched`` or ``failed`` (rows another worker
    has already moved are left as they are)."""
    if state not in STATES or state == "received":
        raise ValueError(f"state must be one of processed, unmatched, failed, not {state!r}")
    now = time.time() if now is None else now
    db.conn.executemany(
        "UPDATE inbox SET state = ?, processed_at = ?, last_error = ? WHERE id = ? AND state = 'received'",
        [(state, now, error, row_id) for row_id in row_ids],
    )


def requeue_failed(db: Database) -> int:
    """Put ``failed`` rows back to ``received`` (after a fix, or at start); returns how many."""
    cursor = db.execute("UPDATE inbox SET state = 'received', last_error = NULL WHERE state = 'failed'")
    return int(cursor.rowcount)


def revive_unmatched(db: Database, *, since: float) -> int:
    """Put back to ``received`` the rows unmatched for an unknown request (received at or after
    *since*) whose request the bot has recorded meanwhile; returns how many. Writes (in its own
    transaction, or the caller's) only when there is something to revive."""
    where = """
        state = 'unmatched' AND received_at >= ? AND last_error = ?
        AND request_id IN (SELECT request_id FROM ts_requests)
    """
    params = [since, UNKNOWN_REQUEST]
    if db.execute(f"SELECT 1 FROM inbox WHERE {where} LIMIT 1", params).fetchone() is None:
        return 0  # the usual case: no write transaction at all
    with write(db):
        cursor = db.execute(
            f"UPDATE inbox SET state = 'received', last_error = NULL, processed_at = NULL WHERE {where}",
            params,
        )
        return int(cursor.rowcount)


def has_received(db: Database, request_id: str, *, after_id: int = 0) -> bool:
    """Whether a ``received`` row of *request_id* with an id above *after_id* is waiting."""
    found = db.execute(
        "SELECT 1 FROM inbox WHERE state = 'received' AND id > ? AND request_id = ? LIMIT 1",
        [after_id, request_id],
    ).fetchone()
    return found is not None


def waiting(db: Database) -> bool:
    """Whether any callback is ``received`` and not processed yet (a read, no transaction)."""
    return db.execute("SELECT 1 FROM inbox WHERE state = 'received' LIMIT 1").fetchone() is not None


def received_ids(db: Database, *, limit: int = 500) -> list[int]:
    """Ids of the oldest ``received`` rows (to claim one by one after a failed batch)."""
    rows = db.execute("SELECT id FROM inbox WHERE state = 'received' ORDER BY id LIMIT ?", [limit])
    return [int(r[0]) for r in rows.fetchall()]


def depth(db: Database) -> int:
    """Callbacks stored and not yet processed."""
    return int(db.execute("SELECT count(*) FROM inbox WHERE state = 'received'").fetchone()[0])


def count_by_state(db: Database) -> dict[str, int]:
    rows = db.execute("SELECT state, count(*) FROM inbox GROUP BY state").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def purge(db: Database, *, before: float) -> int:
    """Delete processed/unmatched rows received before *before* (retention), and the re-check
    records of requests that are no longer open; returns how many inbox rows."""
    cursor = db.execute(
        "DELETE FROM inbox WHERE state IN ('processed', 'unmatched') AND received_at < ?", [before]
    )
    db.execute(
        """
        DELETE FROM request_rechecks WHERE request_id NOT IN (
            SELECT request_id FROM ts_requests WHERE state = 'accepted'
        )
        """
    )
    return int(cursor.rowcount)


@dataclass(frozen=True)
class Recheck:
    """A request ThingSpace still listed as pending: how often it was checked, when next."""

    request_id: str
    checks: int
    first_checked_at: float
    next_check_at: float


def due_rechecks(db: Database, *, first_after: float, now: float, limit: int = 200) -> list[str]:
    """Open requests whose next question is due: first *first_after* seconds after they were
    made, then when :func:`schedule_recheck` said; oldest first."""
    rows = db.execute(
        """
        SELECT r.request_id FROM ts_requests r LEFT JOIN request_rechecks c USING (request_id)
        WHERE r.state = 'accepted' AND coalesce(c.next_check_at, r.created_at + ?) <= ?
        ORDER BY coalesce(c.next_check_at, r.created_at + ?) LIMIT ?
        """,
        [first_after, now, first_after, limit],
    ).fetchall()
    return [str(r[0]) for r in rows]


def recheck_of(db: Database, request_id: str) -> Recheck | None:
    row = db.execute(
        "SELECT request_id, checks, first_checked_at, next_check_at FROM request_rechecks WHERE request_id = ?",
        [request_id],
    ).fetchone()
    return None if row is None else Recheck(str(row[0]), int(row[1]), float(row[2]), float(row[3]))


def schedule_recheck(db: Database, request_id: str, *, checks: int, next_check_at: float, now: float) -> None:
    """Record that *request_id* has been checked *checks* times and is to be checked again."""
    db.execute(
        """
        INSERT INTO request_rechecks (request_id, checks, first_checked_at, next_check_at)
        VALUES (?, ?, ?, ?)
        ON CONFLICT (request_id) DO UPDATE SET checks = excluded.checks,
            next_check_at = excluded.next_check_at
        """,
        [request_id, checks, now, next_check_at],
    )


def settle_recheck(db: Database, request_id: str) -> None:
    """Forget the re-checks of a request that is settled."""
    db.execute("DELETE FROM request_rechecks WHERE request_id = ?", [request_id])
