"""Seen Slack requests: refuse a validly signed request replayed inside Slack's 5-minute window.

The key is ``sha256(timestamp + signature)``; rows older than the window (plus margin) are pruned.
"""

from __future__ import annotations

import hashlib
import time

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["first_sighting", "migrations", "prune"]

migrations = Migrations("tsbot.seen")

KEEP_SECONDS = 15 * 60


@migrations()
def create_seen(db: Database) -> None:
    db.execute("CREATE TABLE seen_requests (key TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID")


def first_sighting(db: Database, timestamp: str, signature: str, *, now: float | None = None) -> bool:
    """Record the request; True the first time, False for a replay."""
    now = time.time() if now is None else now
    key = hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()
    cursor = db.execute(
        "INSERT INTO seen_requests (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", [key, now]
    )
    return cursor.rowcount == 1


def prune(db: Database, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return db.execute("DELETE FROM seen_requests WHERE at < ?", [now - KEEP_SECONDS]).rowcount
