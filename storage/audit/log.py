"""The audit log: who did what, when, why and with what result; append-only, hash-chained, anchored.

Recording::

    log = AuditLog(db)                     # db: this thread's connection
    log.record(AuditEvent(actor="U012", channel="C034", verb=Verb.SUSPEND,
                          targets=["iccid:8914…"], reason="stolen", outcome=Outcome.ACCEPTED,
                          request_id="…", detail={"devices": 1}))

    with log.transaction():               # a state change and its audit row commit together
        change_state(db)
        log.record(event)

``record`` also works inside a caller's ``storage.db.write(db)`` (it becomes a savepoint there and
commits or rolls back with the caller's work); ``log.transaction()`` is the same transaction plus
putting the head file back if it rolls back and confirming it after the commit (see
*Anchoring*), so prefer it.

**The chain.** Row ``n`` stores ``prev_hash`` (row ``n-1``'s hash; 64 zeros for row 1) and
``hash = sha256(prev_hash + canonical_json(row))`` (the exact rule: ``storage.audit.events``).
Ids are consecutive and part of the hash. Appends hold SQLite's write lock (``BEGIN
IMMEDIATE``), and a trigger refuses a row that does not follow the newest one, so the chain never
forks. Other triggers refuse every ``UPDATE`` and every ``DELETE`` except retention's.
Device ids are also written to ``audit_target (target, row_id)``, so ``query(target=…)`` is an
index lookup.

**Anchoring** (``storage.audit.anchor``). The head (row id + hash) is also kept in
``<db file>.audit-head``, rewritten atomically. Every append writes it *inside* its write
transaction, before the commit, as ``{id: new head, base: newest committed row}`` ("pending");
after the commit it is rewritten with ``base = id`` ("confirmed"): at once when the append
committed itself, moments later by :class:`AnchorConfirmer` for commands (kept off the ack
path), by a minute job and at shutdown (:meth:`AuditLog.anchor`). The file is therefore never
behind the committed log, and ahead of it only by a transaction that did not commit.

A pending file whose rows are missing (the log ends at its base) means: a crash before that
transaction committed, a transaction rolled back outside :meth:`AuditLog.transaction` (which
puts the file back itself), or the newest rows were deleted. The files cannot tell these apart,
so the bot never overwrites such a file silently: the next append, the confirmer's first pass
at start-up, or :meth:`AuditLog.anchor` first records the finding in the chain as an
``audit.gap`` row (announced row and hash, where the log ended), then re-anchors. ``verify``
fails on such a file (exit 1, naming the announced row) unless told the crash is known
(``accept_uncommitted=<announced row>``), and lists the ``audit.gap`` rows in its note.
Consequences, stated plainly:

* rows added after the anchored row are tampering (the bot never commits a row it has not
  anchored): caught;
* rows deleted from the end are caught: against a confirmed file as rows removed, against a
  pending one as rows announced but missing (which ``verify`` fails, and the bot records);
* rewriting the whole chain consistently is caught at the anchored row (which row the rewrite
  started at cannot be known);
* a missing head file while rows exist is reported; the bot never recreates it on its own.

Any other head file that does not match the log is never overwritten by the bot (it is the
evidence); the error is logged and ``tsbot audit verify`` names it.

Retention (``storage.audit.retention``) removes the oldest rows into an archive file and appends
a checkpoint row, from which the remaining chain is verified.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.audit.anchor import Anchor, AnchorError, default_head_path, read_anchor
from storage.audit.chain import (
    COLUMNS,
    AuditIntegrityError,
    append_anchored,
    read_head,
    restore_anchor,
    settle_anchor,
)
from storage.audit.events import (
    GENESIS_HASH,
    SYSTEM_ACTOR,
    THINGSPACE_ACTOR,
    AuditEvent,
    AuditRow,
    Outcome,
    Verb,
    format_at,
)
from storage.audit.retention import RetentionResult, apply_retention, archive_folder, default_archive_path
from storage.audit.verify import VerifyResult, verify
from storage.db import connect, write

__all__ = [
    "ID_KINDS",
    "MAX_QUERY_LIMIT",
    "SYSTEM_ACTOR",
    "THINGSPACE_ACTOR",
    "AnchorConfirmer",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditLog",
    "AuditRow",
    "Outcome",
    "RetentionResult",
    "Verb",
    "VerifyResult",
    "apply_retention",
    "archive_folder",
    "default_archive_path",
    "migrations",
    "verify",
]

log = logging.getLogger(__name__)

migrations = Migrations("tsbot.audit")

#: Kinds a bare id in ``query(target=…)`` is looked up under (``5551234567`` matches ``mdn:…``, ``min:…``).
ID_KINDS: Final = ("iccid", "mdn", "msisdn", "imei", "imsi", "meid", "esn", "eid", "min")
MAX_QUERY_LIMIT: Final = 1000


@migrations()
def create_audit_log(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            channel TEXT NOT NULL,
            verb TEXT NOT NULL,
            targets TEXT NOT NULL,
            reason TEXT NOT NULL,
            outcome TEXT NOT NULL,
            request_id TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX audit_log_at ON audit_log (at)")
    db.execute("CREATE INDEX audit_log_actor ON audit_log (actor, id)")
    db.execute("CREATE INDEX audit_log_verb ON audit_log (verb, id)")
    db.execute(
        """
        CREATE TABLE audit_target (
            target TEXT NOT NULL,
            row_id INTEGER NOT NULL,
            PRIMARY KEY (target, row_id)
        ) WITHOUT ROWID
        """
    )
    # Retention opens this gate (inside its transaction) to delete rows up to through_id.
    db.execute("CREATE TABLE audit_retention_gate (through_id INTEGER NOT NULL)")
    db.execute(
        f"""
        CREATE TRIGGER audit_log_append_only BEFORE INSERT ON audit_log
        WHEN NEW.id IS NOT coalesce((SELECT max(id) FROM audit_log), 0) + 1
          OR NEW.prev_hash IS NOT coalesce(
               (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1), '{GENESIS_HASH}')
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: a new row must follow the newest row'); END
        """
    )
    db.execute(
        """
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be changed'); END
        """
    )
    db.execute(
        """
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        WHEN OLD.id > coalesce((SELECT max(through_id) FROM audit_retention_gate), 0)
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows are removed only by retention'); END
        """
    )
    db.execute(
        """
        CREATE TRIGGER audit_target_no_update BEFORE UPDATE ON audit_target
        BEGIN SELECT RAISE(ABORT, 'audit_target is append-only: rows cannot be changed'); END
        """
    )
    db.execute(
        """
        CREATE TRIGGER audit_target_no_delete BEFORE DELETE ON audit_target
        WHEN OLD.row_id > coalesce((SELECT max(through_id) FROM audit_retention_gate), 0)
        BEGIN SELECT RAISE(ABORT, 'audit_target is append-only: rows are removed only by retention'); END
        """
    )


class AuditLog:
    """The audit log of one database connection (create one per thread, or per unit of work).

    :param db: this thread's connection (``ConnectionPool.get()`` or ``open_database``)
    :param head_path: the head file; default ``<db file>.audit-head``. An in-memory database has
        no head file: its chain is still kept, but nothing anchors it.
    """

    def __init__(self, db: Database, *, head_path: str | Path | None = None) -> None:
        self.db = db
        self.head_path: Path | None = Path(head_path) if head_path else default_head_path(db)

    # -- writing ------------------------------------------------------------------------------

    def record(self, event: AuditEvent) -> int:
        """Append *event*; returns its row id. Inside a caller's transaction it commits with it."""
        return self.record_many([event])[0]

    def record_many(self, events: Iterable[AuditEvent], *, confirm: bool = True) -> list[int]:
        """Append *events* in one transaction (or the caller's) and one head-file write; returns ids.

        *confirm*: when this call commits, confirm the head file at once (one more file write and
        flush); with ``False`` the running :class:`AnchorConfirmer` does it moments later, off
        the caller's thread (what commands do, to keep the ack fast). Inside a caller's
        transaction the confirmer is always asked, and waits for that transaction to end.
        """
        batch = list(events)
        for event in batch:
            if not isinstance(event, AuditEvent):
                raise TypeError(f"record takes AuditEvent objects, not {type(event).__name__}")
        if not batch:
            return []
        owned = not self.db.conn.in_transaction
        with write(self.db):
            ids, _after = append_anchored(self.db, batch, self.head_path, owned=owned)
        if owned and confirm:
            self.anchor()
        else:
            self.request_confirmation()
        return ids

    @contextlib.contextmanager
    def transaction(self, *, confirm: bool = True) -> Iterator[Database]:
        """``storage.db.write(db)`` for a state change and its audit rows, committed together.

        After the commit the head file is confirmed: at once, or with ``confirm=False`` by the
        running :class:`AnchorConfirmer` (see :meth:`record_many`). When the transaction fails,
        the head file is put back as it was before the rollback, so a transaction the bot rolled
        back never reads as rows gone missing. Nested inside another transaction it is a
        savepoint, and the outer transaction's owner decides the commit.
        """
        if self.db.conn.in_transaction or self.head_path is None:
            owned = not self.db.conn.in_transaction
            with write(self.db) as db:
                yield db
            if owned and confirm:
                self.anchor()
            return
        head_path = self.head_path
        with write(self.db) as db:
            try:
                prior: Anchor | None = read_anchor(head_path)
                restorable = True
            except AnchorError:
                prior, restorable = None, False
            try:
                yield db
            except BaseException:
                if restorable:
                    try:
                        restore_anchor(head_path, prior)
                    except OSError:
                        log.exception(
                            "could not put back the audit head file %s before a rollback", head_path
                        )
                raise
        if confirm:
            self.anchor()
        else:
            self.request_confirmation()

    def anchor(self) -> bool:
        """Bring the head file to rest now (no-op inside a transaction); returns whether it wrote.

        A pending head file whose rows are committed is confirmed. One that announces rows the
        log does not have is recorded in the chain as an ``audit.gap`` row first (never silently
        overwritten), then re-anchored. Called at shutdown, by a minute job, and by
        :class:`AnchorConfirmer` after commits.
        """
        if self.head_path is None:
            return False
        return settle_anchor(self.db, self.head_path) != ""

    def request_confirmation(self) -> bool:
        """Ask the running :class:`AnchorConfirmer` of this head file to confirm it soon.

        Returns ``False`` when none runs (the CLI, tests): the head file then stays pending until
        the next append or :meth:`anchor`.
        """
        if self.head_path is None:
            return False
        confirmer = _CONFIRMERS.get(_key(self.head_path))
        if confirmer is None:
            return False
        confirmer.wake()
        return True

    # -- reading ------------------------------------------------------------------------------

    def get(self, row_id: int) -> AuditRow | None:
        """One row by id."""
        found = self.db.conn.execute(f"SELECT {COLUMNS} FROM audit_log WHERE id = ?", (row_id,)).fetchone()
        return AuditRow.from_columns(found) if found else None

    def count(self) -> int:
        """Rows in the log (after retention: the rows still held)."""
        return int(self.db.conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])

    def head(self) -> tuple[int, str]:
        """The newest row's id and hash (``(0, 64 zeros)`` for an empty log)."""
        found = read_head(self.db.conn)
        return found.id, found.hash

    def query(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        verb: str | None = None,
        limit: int = 20,
        before_id: int | None = None,
    ) -> list[AuditRow]:
        """The newest rows matching every given filter, newest first.

        :param target: a device id as recorded (``iccid:8914…``, ``group:plant-7``); a bare id
            (no ``kind:``) matches it under any kind in :data:`ID_KINDS`
        :param actor: Slack user id
        :param since: inclusive; :param until: exclusive (both time-zone aware)
        :param limit: 1 to :data:`MAX_QUERY_LIMIT`
        :param before_id: only rows older than this id (the next page: the last id shown)
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_QUERY_LIMIT}, not {limit!r}")
        sql, params = self._select(
            target=target,
            actor=actor,
            since=since,
            until=until,
            verb=verb,
            before_id=before_id,
            newest_first=True,
        )
        sql += " LIMIT ?"
        params.append(limit)
        return [AuditRow.from_columns(row) for row in self.db.conn.execute(sql, params)]

    def iter_rows(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        verb: str | None = None,
    ) -> Iterator[AuditRow]:
        """Every matching row, oldest first, one at a time from a cursor (constant memory)."""
        for columns in self.iter_columns(target=target, actor=actor, since=since, until=until, verb=verb):
            yield AuditRow.from_columns(columns)

    def iter_columns(
        self,
        *,
        target: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        verb: str | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Like :meth:`iter_rows`, as raw stored columns (``storage.audit.chain.COLUMNS`` order)."""
        if not _has_log(self.db):
            return
        sql, params = self._select(
            target=target,
            actor=actor,
            since=since,
            until=until,
            verb=verb,
            before_id=None,
            newest_first=False,
        )
        yield from self.db.conn.execute(sql, params)

    def _select(
        self,
        *,
        target: str | None,
        actor: str | None,
        since: datetime | None,
        until: datetime | None,
        verb: str | None,
        before_id: int | None,
        newest_first: bool,
    ) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if actor is not None:
            where.append("l.actor = ?")
            params.append(actor.strip())
        if verb is not None:
            where.append("l.verb = ?")
            params.append(verb.strip())
        if since is not None:
            where.append("l.at >= ?")
            params.append(format_at(since))
        if until is not None:
            where.append("l.at < ?")
            params.append(format_at(until))
        if before_id is not None:
            where.append("l.id < ?")
            params.append(int(before_id))
        order = "DESC" if newest_first else "ASC"
        columns = ", ".join(f"l.{c.strip()}" for c in COLUMNS.split(","))
        if target is None:
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            return f"SELECT {columns} FROM audit_log l{clause} ORDER BY l.id {order}", params
        keys = _target_keys(target)
        marks = ", ".join("?" * len(keys))
        clause = "".join(f" AND {w}" for w in where)
        # One key: walk the (target, row_id) index in order and stop at the limit. Several keys
        # (a bare id under every kind): a row may hold two of them, hence DISTINCT.
        distinct, key = ("DISTINCT ", "l.id") if len(keys) > 1 else ("", "t.row_id")
        sql = (
            f"SELECT {distinct}{columns} FROM audit_target t JOIN audit_log l ON l.id = t.row_id "
            f"WHERE t.target IN ({marks}){clause} ORDER BY {key} {order}"
        )
        return sql, [*keys, *params]


#: The running confirmers, by the real path of their head file (see :meth:`AuditLog.request_confirmation`).
_CONFIRMERS: dict[str, AnchorConfirmer] = {}
_CONFIRMERS_GUARD = threading.Lock()


@functools.lru_cache(maxsize=64)
def _key(path: Path) -> str:
    return os.path.realpath(path)


class AnchorConfirmer:
    """Confirms the head file moments after commits, on its own thread and connection.

    Commands append inside their own transactions and leave the head file pending (confirming
    it on the ack path would cost another file write and flush). A pending head file is what a
    crash before a commit leaves, so while it stays pending, deleting the newest transaction
    cannot be told apart from that crash. Every such append wakes this thread; it waits
    *delay* seconds so a burst of commands costs one confirmation, then takes the write lock
    (so it runs after the transaction that woke it has ended) and calls :meth:`AuditLog.anchor`.
    On start it does the same once, so what a crash left behind is recorded (``audit.gap``)
    before anything else. :meth:`stop` ends the thread; call :meth:`AuditLog.anchor` after the
    last writer has stopped.

    :param db_path: the database file (the thread opens its own connection)
    :param head_path: the head file; default ``<db file>.audit-head``
    """

    def __init__(
        self, db_path: str | Path, *, head_path: str | Path | None = None, delay: float = 0.05
    ) -> None:
        self.db_path = str(db_path)
        self.head_path: Path | None = Path(head_path) if head_path else None
        self.delay = delay
        #: settle passes run, and how many of them wrote (for tests and metrics)
        self.runs = 0
        self.writes = 0
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AnchorConfirmer:
        """Start the thread; returns once it is listening (or has found nothing to anchor)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="audit-anchor-confirmer", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def wake(self) -> None:
        """A pending head file was written: confirm it soon (wakes within one burst coalesce)."""
        self._wakeup.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (it finishes a pass under way) and stop taking wake-ups."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def idle(self) -> bool:
        """Always: a confirmation pending is not work anybody waits for."""
        return True

    def _run(self) -> None:
        key = ""
        db: Database | None = None
        try:
            db = connect(self.db_path)
            path = self.head_path or default_head_path(db)
            if path is None:
                return  # an in-memory database: nothing to anchor
            self.head_path = path
            key = _key(path)
            with _CONFIRMERS_GUARD:
                _CONFIRMERS[key] = self
            self._ready.set()
            self._loop(AuditLog(db, head_path=path))
        except Exception:
            log.exception("the audit head-file confirmer stopped; the minute job and shutdown still confirm")
        finally:
            self._ready.set()
            if key:
                with _CONFIRMERS_GUARD:
                    if _CONFIRMERS.get(key) is self:
                        del _CONFIRMERS[key]
            if db is not None:
                db.conn.close()

    def _loop(self, audit: AuditLog) -> None:
        self._wakeup.set()  # one pass at start: confirm, or record what a crash left
        while not self._stopping.is_set():
            self._wakeup.wait()
            if self._stopping.wait(self.delay):
                return
            self._wakeup.clear()
            try:
                wrote = audit.anchor()
            except sqlite3.Error:
                log.exception("could not confirm the audit head file; retrying in a second")
                if self._stopping.wait(1.0):
                    return
                self._wakeup.set()
                continue
            self.runs += 1
            self.writes += int(wrote)


def _has_log(db: Database) -> bool:
    """A database opened without migrations may not have the audit tables yet (an empty log)."""
    found = db.conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('audit_log', 'audit_target')"
    ).fetchone()
    return int(found[0]) == 2


def _target_keys(target: str) -> list[str]:
    text = target.strip()
    if not text:
        raise ValueError("target must not be empty")
    kind, sep, rest = text.partition(":")
    if sep and kind.isalpha():
        return [f"{kind.lower()}:{rest.strip()}"]
    variants = dict.fromkeys((text, text.upper()))
    return [f"{kind}:{value}" for kind in ID_KINDS for value in variants]
