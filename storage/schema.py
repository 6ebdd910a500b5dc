"""The database schema: every table's migrations, listed here in the order they are applied.

Each storage module owns its tables and declares them in its own ``migrations`` set
(``Migrations("tsbot.<module>")``, the name sqlite-utils records as applied); this list is the
one place that says which sets exist. A new storage module adds its set here. The order is the
order the sets were first applied in (alphabetical by module, as they were once discovered), so
an existing database sees no change.
"""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage import (
    alerts,
    device_messages,
    directory,
    inbox,
    jobs,
    lease,
    login_gate,
    memberships,
    outbox,
    pending,
    reach_polls,
    requests,
    seen,
    unknown_callbacks,
    watches,
)
from storage.audit import log as audit_log
from storage.db import connect

__all__ = ["MIGRATIONS", "open_database"]

MIGRATIONS: tuple[Migrations, ...] = (
    alerts.migrations,
    audit_log.migrations,
    directory.migrations,
    inbox.migrations,
    jobs.migrations,
    lease.migrations,
    login_gate.migrations,
    memberships.migrations,
    outbox.migrations,
    pending.migrations,
    requests.migrations,
    seen.migrations,
    watches.migrations,
    device_messages.migrations,
    unknown_callbacks.migrations,  # added after the others: applied last on existing databases
    reach_polls.migrations,
)


def open_database(path: str | Path, *, migrate: bool = True, synchronous: str = "FULL") -> Database:
    """Open (creating if needed) the SQLite file at *path*, set the pragmas, apply migrations.

    The connection is in driver autocommit mode (``isolation_level=None``): transactions are only
    the ones opened explicitly with :func:`storage.db.write` or ``db.atomic()``.
    """
    db = connect(path, synchronous=synchronous)
    if migrate:
        for migration_set in MIGRATIONS:
            migration_set.apply(db)
    return db
