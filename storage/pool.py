"""One SQLite connection per thread to one database file, migrated once."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from sqlite_utils import Database

from storage.db import connect
from storage.schema import open_database

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """One connection per thread to one database file, migrated once.

    Bolt listeners, the inbox worker, the outbox relay and scheduler jobs each run on their own
    threads; SQLite connections must not be shared across threads mid-transaction.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[Database] = []
        first = open_database(self.path, migrate=True, synchronous=synchronous)
        self._local.db = first
        self._all.append(first)

    def get(self) -> Database:
        """This thread's connection, opened on first use."""
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path, synchronous=self.synchronous)
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                with contextlib.suppress(sqlite3.Error):
                    db.conn.close()
            self._all.clear()
        self._local = threading.local()
