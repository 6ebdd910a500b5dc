"""Cached Slack user-group memberships, so permission checks stay local work.

Grants may name user groups (``S…``). Asking Slack who is in a group takes a network call, which
must not happen before a slash command is acknowledged; a background refresh keeps this table
current. A group never fetched has no members here, so the check denies (default deny).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["groups_of", "migrations", "replace_members"]

migrations = Migrations("tsbot.memberships")


@migrations()
def create_memberships(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE group_members (
            group_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            fetched_at REAL NOT NULL,
            PRIMARY KEY (group_id, user_id)
        ) WITHOUT ROWID
        """
    )
    db.execute("CREATE INDEX group_members_user ON group_members (user_id)")


def replace_members(db: Database, group_id: str, users: Iterable[str], *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    db.execute("DELETE FROM group_members WHERE group_id = ?", [group_id])
    db.conn.executemany(
        "INSERT INTO group_members (group_id, user_id, fetched_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(group_id, u, now) for u in users],
    )


def groups_of(db: Database, user_id: str) -> set[str]:
    rows = db.execute("SELECT group_id FROM group_members WHERE user_id = ?", [user_id]).fetchall()
    return {r[0] for r in rows}
