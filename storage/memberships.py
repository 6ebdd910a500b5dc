"""Cached Slack user-group memberships, so permission checks stay local work.

Grants may name user groups (``S…``). Asking Slack who is in a group takes a network call, which
must not happen before a slash command is acknowledged; a background refresh keeps this table
current. A group never fetched has no members here, so the check denies (default deny).

A refresh that fails keeps the last known members, but only for :data:`MAX_AGE`: members not
confirmed by Slack for longer than that no longer count, so a lookup that keeps failing ends in
denial (fail closed) rather than in grants nobody can revoke.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["MAX_AGE", "groups_of", "migrations", "replace_members"]

#: seconds a fetched membership counts without Slack confirming it (six 10-minute refreshes)
MAX_AGE = 3600.0

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


def groups_of(db: Database, user_id: str, *, now: float | None = None, max_age: float = MAX_AGE) -> set[str]:
    """The groups *user_id* was in when Slack last answered, if that was within *max_age*."""
    oldest = (time.time() if now is None else now) - max_age
    rows = db.execute(
        "SELECT group_id FROM group_members WHERE user_id = ? AND fetched_at >= ?", [user_id, oldest]
    ).fetchall()
    return {r[0] for r in rows}
