"""Pending actions: what a Confirm or Approve button is bound to.

A pending action holds the exact device set (and its digest), who asked, why, and when it
expires. Claiming it is a single conditional UPDATE, so a double click acts once and an expired
or already-used card acts never.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = [
    "PendingAction",
    "cancel",
    "claim",
    "create",
    "device_digest",
    "get",
    "migrations",
    "set_reason",
    "set_state",
]

migrations = Migrations("tsbot.pending")

#: ``superseded``: replaced by a smaller action after the line limits were read (its buttons stop)
STATES = (
    "pending",
    "awaiting_approval",
    "confirmed",
    "approved",
    "cancelled",
    "denied",
    "expired",
    "superseded",
)


@migrations()
def create_pending(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE pending_actions (
            id TEXT PRIMARY KEY,
            verb TEXT NOT NULL,
            actor TEXT NOT NULL,
            channel TEXT NOT NULL,
            devices TEXT NOT NULL,
            digest TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            options TEXT NOT NULL DEFAULT '{}',
            needs_approval INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            decided_by TEXT,
            response_url TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            decided_at REAL
        )
        """
    )


@dataclass(frozen=True)
class PendingAction:
    id: str
    verb: str
    actor: str
    channel: str
    devices: list[str]
    digest: str
    reason: str
    options: dict[str, Any]
    needs_approval: bool
    state: str
    decided_by: str | None
    response_url: str
    created_at: float
    expires_at: float


def device_digest(devices: Sequence[str]) -> str:
    """A short digest of the exact device set, shown on the card and checked on click."""
    joined = "\n".join(sorted(devices)).encode()
    return hashlib.sha256(joined).hexdigest()[:12]


def create(
    db: Database,
    *,
    verb: str,
    actor: str,
    channel: str,
    devices: Sequence[str],
    reason: str,
    options: dict[str, Any],
    needs_approval: bool,
    ttl: float,
    response_url: str = "",
    now: float | None = None,
) -> PendingAction:
    now = time.time() if now is None else now
    action_id = secrets.token_urlsafe(12)
    digest = device_digest(devices)
    db.execute(
        """
        INSERT INTO pending_actions (id, verb, actor, channel, devices, digest, reason, options,
            needs_approval, response_url, created_at, expires_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            action_id,
            verb,
            actor,
            channel,
            json.dumps(list(devices)),
            digest,
            reason,
            json.dumps(options),
            int(needs_approval),
            response_url,
            now,
            now + ttl,
        ],
    )
    found = get(db, action_id)
    assert found is not None
    return found


def _row(row: Any) -> PendingAction:
    return PendingAction(
        id=row[0],
        verb=row[1],
        actor=row[2],
        channel=row[3],
        devices=json.loads(row[4]),
        digest=row[5],
        reason=row[6],
        options=json.loads(row[7]),
        needs_approval=bool(row[8]),
        state=row[9],
        decided_by=row[10],
        response_url=row[11],
        created_at=row[12],
        expires_at=row[13],
    )


_COLUMNS = (
    "id, verb, actor, channel, devices, digest, reason, options, needs_approval, state, decided_by, "
    "response_url, created_at, expires_at"
)


def get(db: Database, action_id: str) -> PendingAction | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM pending_actions WHERE id = ?", [action_id]).fetchone()
    return _row(row) if row else None


def claim(
    db: Database, action_id: str, *, from_state: str, to_state: str, by: str, now: float | None = None
) -> PendingAction | None:
    """Move the action from *from_state* to *to_state* if it is still there and unexpired.

    Returns the updated action, or None when someone else got there first, or it expired.
    """
    now = time.time() if now is None else now
    row = db.execute(
        f"""
        UPDATE pending_actions SET state = ?, decided_by = ?, decided_at = ?
        WHERE id = ? AND state = ? AND expires_at > ?
        RETURNING {_COLUMNS}
        """,
        [to_state, by, now, action_id, from_state, now],
    ).fetchone()
    return _row(row) if row else None


def set_reason(db: Database, action_id: str, reason: str) -> None:
    """The reason given when the action was confirmed (in a modal), while it is still pending."""
    db.execute(
        "UPDATE pending_actions SET reason = ? WHERE id = ? AND state = 'pending'", [reason, action_id]
    )


def set_state(db: Database, action_id: str, state: str, *, expires_at: float | None = None) -> None:
    if expires_at is None:
        db.execute("UPDATE pending_actions SET state = ? WHERE id = ?", [state, action_id])
    else:
        db.execute(
            "UPDATE pending_actions SET state = ?, expires_at = ? WHERE id = ?",
            [state, expires_at, action_id],
        )


def cancel(db: Database, action_id: str, *, by: str, now: float | None = None) -> PendingAction | None:
    """Cancel a pending or awaiting-approval action (single use, like claim)."""
    for state in ("pending", "awaiting_approval"):
        done = claim(db, action_id, from_state=state, to_state="cancelled", by=by, now=now)
        if done:
            return done
    return None


def expired_approvals(db: Database, now: float) -> list[str]:
    """Ids of actions still awaiting approval whose window has passed, oldest first."""
    rows = db.execute(
        "SELECT id FROM pending_actions WHERE state = 'awaiting_approval' AND expires_at <= ? ORDER BY expires_at",
        [now],
    ).fetchall()
    return [str(r[0]) for r in rows]
