"""Reachability asked for, not called back: the status queries the bot has open for watched
devices when ThingSpace's results are polled (no callback listener).

One row per watched device with a query open: the ``requestId`` of its
``POST /diagnostics/basic/devicereachability/status``, when it was asked, and what the bot has
already recorded from it (``reported``: ``""``, ``unreachable``, ``reachable``), so each answer
becomes one observation. A row is removed when the query has its final answer or has expired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["ReachPoll", "due_devices", "finish", "migrations", "open_polls", "set_reported", "start"]

migrations = Migrations("tsbot.reach_polls")


@migrations()
def create_reach_polls(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE reach_polls (
            device TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            asked_at REAL NOT NULL,
            reported TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute(
        """
        CREATE TABLE reach_poll_runs (
            device TEXT PRIMARY KEY,
            last_asked_at REAL NOT NULL
        )
        """
    )


@dataclass(frozen=True)
class ReachPoll:
    device: str
    request_id: str
    asked_at: float
    reported: str


def _poll(r: Sequence[Any]) -> ReachPoll:
    return ReachPoll(str(r[0]), str(r[1]), float(r[2]), str(r[3]))


def open_polls(db: Database, *, limit: int = 500) -> list[ReachPoll]:
    rows = db.execute(
        "SELECT device, request_id, asked_at, reported FROM reach_polls ORDER BY asked_at LIMIT ?", [limit]
    )
    return [_poll(r) for r in rows.fetchall()]


def due_devices(db: Database, *, asked_before: float, limit: int) -> list[str]:
    """Watched devices with no open query whose last one was asked before *asked_before*."""
    rows = db.execute(
        """
        SELECT w.device FROM watches w
        LEFT JOIN reach_polls p ON p.device = w.device
        LEFT JOIN reach_poll_runs r ON r.device = w.device
        WHERE p.device IS NULL AND coalesce(r.last_asked_at, 0) < ?
        ORDER BY coalesce(r.last_asked_at, 0), w.device LIMIT ?
        """,
        [asked_before, limit],
    )
    return [str(r[0]) for r in rows.fetchall()]


def start(db: Database, device: str, request_id: str, *, now: float) -> None:
    db.execute(
        """
        INSERT INTO reach_polls (device, request_id, asked_at) VALUES (?, ?, ?)
        ON CONFLICT (device) DO UPDATE SET request_id = excluded.request_id,
            asked_at = excluded.asked_at, reported = ''
        """,
        [device, request_id, now],
    )
    db.execute(
        """
        INSERT INTO reach_poll_runs (device, last_asked_at) VALUES (?, ?)
        ON CONFLICT (device) DO UPDATE SET last_asked_at = excluded.last_asked_at
        """,
        [device, now],
    )


def set_reported(db: Database, device: str, reported: str) -> None:
    db.execute("UPDATE reach_polls SET reported = ? WHERE device = ?", [reported, device])


def finish(db: Database, device: str) -> None:
    db.execute("DELETE FROM reach_polls WHERE device = ?", [device])
