"""Opening the database, applying migrations, and write transactions.

SQLite allows one writer at a time. Every write goes through :func:`write`, which starts with
``BEGIN IMMEDIATE`` so a writer takes the lock up front instead of failing halfway with
``SQLITE_BUSY`` (a deferred ``BEGIN`` that reads first can fail at once in WAL mode, whatever the
busy timeout). Threads each use their own connection: see :class:`ConnectionPool`.

A new database file is created mode 0600 whatever the umask (``storage.files``).

Durability: WAL with ``synchronous=FULL`` by default, so a commit survives power loss, not only a
process crash. ``TSBOT_DB_SYNCHRONOUS=NORMAL`` trades the last commits on power loss for speed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from storage.files import ensure_private_file

__all__ = ["connect", "select_in", "write", "writers_lock"]

BUSY_TIMEOUT_MS = 10_000


def connect(path: str | Path, *, synchronous: str = "FULL") -> Database:
    """Open (creating if needed) the SQLite file at *path* and set the pragmas; no migrations
    (:func:`storage.schema.open_database` applies them).

    The connection is in driver autocommit mode (``isolation_level=None``): transactions are only
    the ones opened explicitly with :func:`write` or ``db.atomic()``.
    """
    if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
        raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, not {synchronous!r}")
    if str(path) != ":memory:":
        # private whatever the umask: it holds live response_urls and full device ids; SQLite gives
        # the -wal and -shm files the database file's permissions
        ensure_private_file(Path(path))
    conn = sqlite3.connect(
        str(path),
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys=ON")
    db = Database(conn)
    db._tsbot_write_lock = _write_lock(path)  # type: ignore[attr-defined]
    return db


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _write_lock(path: str | Path) -> threading.Lock:
    """One lock per database file in this process (``:memory:`` databases get their own)."""
    key = str(path) if str(path) == ":memory:" else str(Path(path).resolve())
    if key == ":memory:":
        return threading.Lock()
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def writers_lock(db: Database) -> threading.Lock | None:
    """The lock this process's writers to *db*'s file take before ``BEGIN IMMEDIATE`` (see
    :func:`write`); None for a connection not opened by :func:`connect`."""
    lock: threading.Lock | None = getattr(db, "_tsbot_write_lock", None)
    return lock


@contextlib.contextmanager
def write(db: Database) -> Iterator[Database]:
    """A write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    Nested use becomes a savepoint, so helpers that write can be called inside a bigger
    transaction and commit together with it.

    Writers in this process queue on a lock before ``BEGIN IMMEDIATE``: SQLite's own busy
    handler makes a waiting writer sleep in growing steps (up to 100 ms at a time), which under
    twenty concurrent slash commands turned a few milliseconds of work into second-long tails;
    a lock hands the database to the next writer the moment it is free. Other processes still
    meet SQLite's busy timeout.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    lock = writers_lock(db)
    if lock is not None:
        lock.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
    finally:
        if lock is not None:
            lock.release()


#: SQLite allows a limited number of bound parameters; IN lists are sent in chunks of this size.
IN_CHUNK = 500


def select_in(
    db: Database, sql: str, values: Sequence[Any], *, before: Sequence[Any] = (), after: Sequence[Any] = ()
) -> Iterator[tuple[Any, ...]]:
    """Rows of *sql*, whose ``{marks}`` stands for an ``IN (...)`` list of *values*, sent in chunks.

    *before* and *after* are the query's other parameters, bound around the list.
    """
    for i in range(0, len(values), IN_CHUNK):
        part = list(values[i : i + IN_CHUNK])
        marks = ",".join("?" * len(part))
        yield from db.execute(sql.format(marks=marks), [*before, *part, *after]).fetchall()
