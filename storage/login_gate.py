"""The ThingSpace login gate, shared through SQLite by every process that uses one database.

Five failed logins lock the ThingSpace API user at Verizon. The ThingSpace auth
(``bot.thingspace.auth``) decides when a login may be sent; this module only keeps the count, so
that ``tsbot serve``, ``tsbot check``, ``tsbot callbacks`` and a restarted process all see the
same one. :class:`SqliteLoginGate` has the methods of the auth's ``LoginGate`` protocol.

Two tables:

* ``login_gate``: one row per set of credentials that has an attempt in flight or was refused,
  with its counts and the last refusal (HTTP status, error code, endpoint, ThingSpace's masked
  message, which program met it). A row is found by its credentials **fingerprint**,
  ``PBKDF2-HMAC-SHA256(credentials, salt, 200_000)`` with a random salt per row, compared in
  constant time; the credentials themselves are never stored.
* ``login_gate_meta``: one row: a ``version`` bumped by every write (so a claim can be made
  conditional on nothing having changed since the caller looked) and the ``streak`` of refusals
  in a row with any credentials since the last successful login.

Times are seconds on the gate's clock (wall clock by default: they are shared between processes).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import write
from storage.login_gate_state import LoginGateState

__all__ = ["ITERATIONS", "SqliteLoginGate", "migrations"]

migrations = Migrations("tsbot.login_gate")

#: PBKDF2 iterations for a new fingerprint (each row stores its own count).
ITERATIONS: Final = 200_000
_SALT_BYTES: Final = 16
_MEMO_SIZE: Final = 64

_ROW_COLUMNS: Final = (
    "attempts, refusals, in_flight_since, first_refused_at, last_refused_at, "
    "status, error_code, path, message, locked, refused_by"
)


@migrations()
def create_login_gate(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE login_gate (
            id INTEGER PRIMARY KEY,
            salt BLOB NOT NULL,
            fingerprint BLOB NOT NULL,
            iterations INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            refusals INTEGER NOT NULL DEFAULT 0,
            in_flight_since REAL NOT NULL DEFAULT 0,
            first_refused_at REAL NOT NULL DEFAULT 0,
            last_refused_at REAL NOT NULL DEFAULT 0,
            status INTEGER NOT NULL DEFAULT 0,
            error_code TEXT NOT NULL DEFAULT '',
            path TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL DEFAULT '',
            locked INTEGER NOT NULL DEFAULT 0,
            refused_by TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute(
        """
        CREATE TABLE login_gate_meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL DEFAULT 0,
            streak INTEGER NOT NULL DEFAULT 0,
            reopened_at REAL,
            reopened_by TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("INSERT INTO login_gate_meta (id) VALUES (1)")


class SqliteLoginGate:
    """The login gate in the database ``connect()`` returns (one connection per thread: pass
    ``ConnectionPool.get``). Thread-safe; every write is one ``BEGIN IMMEDIATE`` transaction.

    ``program`` names this process in the record of a refusal (``tsbot check``, ``the bot``...).
    """

    def __init__(
        self,
        connect: Callable[[], Database],
        *,
        clock: Callable[[], float] = time.time,
        program: str = "tsbot",
        iterations: int = ITERATIONS,
    ) -> None:
        self._connect = connect
        self._clock = clock
        self._iterations = int(iterations)
        self._who = f"{program} (pid {os.getpid()} on {socket.gethostname()})"
        self._lock = threading.Lock()
        self._memo: dict[tuple[bytes, int, bytes], bytes] = {}

    def __repr__(self) -> str:
        return f"SqliteLoginGate(program={self._who!r})"

    # -- fingerprints ----------------------------------------------------------------------------

    def _derive(self, credentials: bytes, salt: bytes, iterations: int) -> bytes:
        """PBKDF2 of the credentials; remembered per salt, since a row is compared on every load."""
        key = (salt, iterations, credentials)
        with self._lock:
            found = self._memo.get(key)
        if found is None:
            found = hashlib.pbkdf2_hmac("sha256", credentials, salt, iterations)
            with self._lock:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[key] = found
        return found

    def _new_fingerprint(self, credentials: bytes) -> tuple[bytes, bytes]:
        salt = secrets.token_bytes(_SALT_BYTES)
        return salt, self._derive(credentials, salt, self._iterations)

    def _matches(self, credentials: bytes, salt: bytes, iterations: int, fingerprint: bytes) -> bool:
        return hmac.compare_digest(self._derive(credentials, salt, iterations), fingerprint)

    def _find(self, db: Database, credentials: bytes) -> int | None:
        """The id of the row for these credentials, if any."""
        for row_id, salt, iterations, fingerprint in db.execute(
            "SELECT id, salt, iterations, fingerprint FROM login_gate ORDER BY id"
        ).fetchall():
            if self._matches(credentials, salt, iterations, fingerprint):
                return int(row_id)
        return None

    def _insert(self, db: Database, credentials: bytes, **values: Any) -> None:
        salt, fingerprint = self._new_fingerprint(credentials)
        columns = {"salt": salt, "fingerprint": fingerprint, "iterations": self._iterations, **values}
        names = ", ".join(columns)
        marks = ", ".join(f":{name}" for name in columns)
        db.execute(f"INSERT INTO login_gate ({names}) VALUES ({marks})", columns)

    @staticmethod
    def _bump(db: Database, *, streak: str = "streak") -> None:
        db.execute(f"UPDATE login_gate_meta SET version = version + 1, streak = {streak} WHERE id = 1")

    # -- the LoginGate protocol ------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def load(self, credentials: bytes) -> LoginGateState:
        """The state for these credentials, read in one statement (one consistent snapshot)."""
        rows = (
            self._connect()
            .execute(
                f"""
                SELECT m.version, m.streak, g.salt, g.iterations, g.fingerprint, {_ROW_COLUMNS}
                FROM login_gate_meta AS m LEFT JOIN login_gate AS g ON 1
                WHERE m.id = 1 ORDER BY g.id
                """
            )
            .fetchall()
        )
        if not rows:
            raise RuntimeError("login_gate_meta has no row: the database was not migrated")
        version, streak = int(rows[0][0]), int(rows[0][1])
        for row in rows:
            salt, iterations, fingerprint = row[2:5]
            if salt is not None and self._matches(credentials, salt, iterations, fingerprint):
                (attempts, refusals, in_flight, first_refused, last_refused) = row[5:10]
                status, error_code, path, message, locked, refused_by = row[10:16]
                return LoginGateState(
                    version=version,
                    attempts=int(attempts),
                    refusals=int(refusals),
                    streak=streak,
                    in_flight_since=float(in_flight),
                    first_refused_at=float(first_refused),
                    last_refused_at=float(last_refused),
                    status=int(status),
                    error_code=str(error_code),
                    path=str(path),
                    message=str(message),
                    locked=bool(locked),
                    refused_by=str(refused_by),
                )
        return LoginGateState(version=version, streak=streak)

    def claim(self, credentials: bytes, version: int) -> bool:
        """Count one attempt in flight, unless the gate changed since ``version`` was read."""
        db = self._connect()
        with write(db):
            current = db.execute("SELECT version FROM login_gate_meta WHERE id = 1").fetchone()
            if current is None or int(current[0]) != version:
                return False
            now = self.now()
            row_id = self._find(db, credentials)
            if row_id is None:
                self._insert(db, credentials, attempts=1, in_flight_since=now)
            else:
                db.execute(
                    "UPDATE login_gate SET attempts = attempts + 1, in_flight_since = ? WHERE id = ?",
                    [now, row_id],
                )
            self._bump(db)
        return True

    def record_failure(
        self, credentials: bytes, *, status: int, error_code: str, path: str, message: str, locked: bool
    ) -> None:
        """The claimed attempt was refused (recorded even if an operator reopened meanwhile)."""
        db = self._connect()
        refusal = {
            "now": self.now(),
            "status": status,
            "error_code": error_code,
            "path": path,
            "message": message,
            "locked": int(locked),
            "refused_by": self._who,
        }
        with write(db):
            row_id = self._find(db, credentials)
            if row_id is None:
                now = refusal.pop("now")
                self._insert(
                    db,
                    credentials,
                    attempts=1,
                    refusals=1,
                    first_refused_at=now,
                    last_refused_at=now,
                    **refusal,
                )
            else:
                db.execute(
                    """
                    UPDATE login_gate SET
                        attempts = MAX(attempts, refusals + 1),
                        refusals = refusals + 1,
                        in_flight_since = 0,
                        first_refused_at = CASE WHEN first_refused_at = 0 THEN :now ELSE first_refused_at END,
                        last_refused_at = :now,
                        status = :status, error_code = :error_code, path = :path, message = :message,
                        locked = :locked, refused_by = :refused_by
                    WHERE id = :id
                    """,
                    {**refusal, "id": row_id},
                )
            self._bump(db, streak="streak + 1")

    def record_success(self, credentials: bytes) -> None:
        """A login succeeded: forget these credentials' row and end the streak."""
        db = self._connect()
        with write(db):
            row_id = self._find(db, credentials)
            if row_id is not None:
                db.execute("DELETE FROM login_gate WHERE id = ?", [row_id])
            self._bump(db, streak="0")

    def release(self, credentials: bytes) -> None:
        """The claimed attempt ended without a verdict: it no longer counts."""
        db = self._connect()
        with write(db):
            row_id = self._find(db, credentials)
            if row_id is not None:
                db.execute(
                    "UPDATE login_gate SET attempts = MAX(refusals, attempts - 1), in_flight_since = 0 WHERE id = ?",
                    [row_id],
                )
                db.execute("DELETE FROM login_gate WHERE id = ? AND attempts = 0 AND refusals = 0", [row_id])
            self._bump(db)

    def reopen(self) -> None:
        """Forget every row and the streak: an operator reopens logins for every process."""
        db = self._connect()
        with write(db):
            db.execute("DELETE FROM login_gate")
            db.execute(
                "UPDATE login_gate_meta SET version = version + 1, streak = 0, reopened_at = ?, "
                "reopened_by = ? WHERE id = 1",
                [self.now(), self._who],
            )
