"""Authenticated ThingSpace callbacks the bot could not interpret, kept raw until it can.

The intake answers every authentic JSON callback 2xx (ThingSpace would otherwise retry it and
then drop it), so one it cannot read — no request id, a shape nobody has seen yet, or a result
for a request the bot never made whose content says nothing it knows — is stored here instead
of the inbox, without its ``username``/``password``. ``tsbot callbacks unknown`` lists them;
``tsbot callbacks reprocess`` runs them through the current parser after an upgrade and moves
each one it can now read into the inbox.

One row is one body: ThingSpace's retries of it (same content, rising ``callbackCount``) only
raise ``copies`` (the unique ``fingerprint`` is a hash of the body without the volatile keys).
States: ``waiting`` → ``reprocessed`` (moved to the inbox as ``inbox_id``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = [
    "UnknownCallback",
    "UnknownItem",
    "count_waiting",
    "fingerprint",
    "get",
    "insert_many",
    "listing",
    "mark_reprocessed",
    "migrations",
]

migrations = Migrations("tsbot.unknown_callbacks")

#: keys that differ between ThingSpace's retries of one message
_VOLATILE: Final = frozenset({"username", "password", "callbackCount", "maxCallbackThreshold"})


@migrations()
def create_unknown_callbacks(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE unknown_callbacks (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            service_guess TEXT NOT NULL,
            request_id TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL,
            payload TEXT NOT NULL,
            copies INTEGER NOT NULL DEFAULT 1,
            state TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'reprocessed')),
            received_at REAL NOT NULL,
            last_received_at REAL NOT NULL,
            reprocessed_at REAL,
            inbox_id INTEGER
        )
        """
    )
    db.execute("CREATE INDEX unknown_callbacks_waiting ON unknown_callbacks (id) WHERE state = 'waiting'")


def fingerprint(payload: Mapping[str, Any]) -> str:
    """A hash of the body without credentials and retry counters (same for every retry)."""
    stable = {k: v for k, v in payload.items() if k not in _VOLATILE}
    text = json.dumps(stable, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class UnknownItem:
    """A callback to keep: the body already serialised without credentials."""

    fingerprint: str
    service_guess: str
    request_id: str
    reason: str
    payload: str


@dataclass(frozen=True)
class UnknownCallback:
    id: int
    service_guess: str
    request_id: str
    reason: str
    payload: dict[str, Any]
    copies: int
    state: str
    received_at: float
    last_received_at: float
    reprocessed_at: float | None
    inbox_id: int | None


_COLUMNS = (
    "id, service_guess, request_id, reason, payload, copies, state, received_at, last_received_at, "
    "reprocessed_at, inbox_id"
)


def _row(r: Sequence[Any]) -> UnknownCallback:
    return UnknownCallback(
        int(r[0]), str(r[1]), str(r[2]), str(r[3]), json.loads(r[4]), int(r[5]), str(r[6]),
        float(r[7]), float(r[8]), r[9], r[10],
    )  # fmt: skip


def insert_many(db: Database, items: Sequence[UnknownItem], *, now: float | None = None) -> list[bool]:
    """Keep callbacks (inside the caller's write transaction); True for each one new, False for a
    copy of one already kept (its ``copies`` is raised)."""
    now = time.time() if now is None else now
    out: list[bool] = []
    for item in items:
        cursor = db.conn.execute(
            """
            INSERT INTO unknown_callbacks (fingerprint, service_guess, request_id, reason, payload,
                received_at, last_received_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (fingerprint) DO UPDATE SET copies = copies + 1,
                last_received_at = excluded.last_received_at
            RETURNING copies
            """,
            [item.fingerprint, item.service_guess, item.request_id, item.reason, item.payload, now, now],
        )
        copies = cursor.fetchone()
        out.append(copies is not None and int(copies[0]) == 1)
    return out


def get(db: Database, row_id: int) -> UnknownCallback | None:
    found = db.execute(f"SELECT {_COLUMNS} FROM unknown_callbacks WHERE id = ?", [row_id]).fetchone()
    return None if found is None else _row(found)


def listing(db: Database, *, waiting_only: bool = True, limit: int = 1000) -> list[UnknownCallback]:
    """The kept callbacks, oldest first (only those still waiting, by default)."""
    where = "WHERE state = 'waiting'" if waiting_only else ""
    rows = db.execute(f"SELECT {_COLUMNS} FROM unknown_callbacks {where} ORDER BY id LIMIT ?", [limit])
    return [_row(r) for r in rows.fetchall()]


def count_waiting(db: Database) -> int:
    return int(db.execute("SELECT count(*) FROM unknown_callbacks WHERE state = 'waiting'").fetchone()[0])


def mark_reprocessed(db: Database, row_id: int, *, inbox_id: int | None, now: float | None = None) -> None:
    """The callback is readable now and is in the inbox as *inbox_id* (None: it was there already)."""
    now = time.time() if now is None else now
    db.execute(
        "UPDATE unknown_callbacks SET state = 'reprocessed', reprocessed_at = ?, inbox_id = ? WHERE id = ?",
        [now, inbox_id, row_id],
    )
