"""Verification of the audit log: the hash chain, the device index, the head file, the triggers.

``verify(db, head_path)`` reads every row once, in id order, from one read snapshot (so it runs
beside a live bot), then takes the write lock for a moment to check any rows appended
meanwhile against the head file. What it reports, in this order (the first problem wins):

1. the chain: ids consecutive from the chain start (row 1, or the row after the latest
   retention checkpoint's last archived row), each row's ``prev_hash`` equal to the previous
   row's hash, each row's hash equal to ``sha256(prev_hash + canonical_json(row))``;
2. the device index (``audit_target``) holds exactly the targets of each row;
3. the head file: present when rows exist; its row is the last row. A pending head file whose
   rows are missing (the log ends at its base) fails: its newest transaction never committed
   (a crash) or was deleted, and only someone who knows the bot crashed then can tell; they
   pass ``accept_uncommitted=<the announced row>``. See ``storage.audit``;
4. the append-only triggers exist and the retention gate is closed.

An intact log's ``note`` also lists the ``audit.gap`` rows the bot recorded (head files that
announced rows that never appeared), so they are read at every verification.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from storage.audit.anchor import AnchorError, default_head_path, read_anchor
from storage.audit.chain import (
    COLUMNS,
    GENESIS,
    TRIGGERS,
    AuditIntegrityError,
    ChainFault,
    Head,
    announces_missing_rows,
    chain_start,
    walk,
)
from storage.audit.events import Verb

__all__ = ["VerifyResult", "verify"]


@dataclass(frozen=True)
class VerifyResult:
    """The verdict.

    :ivar ok: nothing was edited, deleted, inserted or rewritten
    :ivar rows: rows checked (all rows when ``ok``)
    :ivar first_bad_row: the first row that fails (for a deletion: the first missing id);
        ``None`` when no single row is to blame (head file missing or garbled, trigger dropped)
    :ivar reason: one sentence: what was found, or a summary when ``ok``
    :ivar first_id: / :ivar last_id: the id range held (``None`` when empty)
    :ivar anchored_id: the row the head file names
    :ivar note: what an ``ok`` verdict should be read with: recorded ``audit.gap`` rows, an
        accepted uncommitted transaction, rows accepted under ``head_may_lag``
    """

    ok: bool
    rows: int
    first_bad_row: int | None
    reason: str
    first_id: int | None = None
    last_id: int | None = None
    anchored_id: int | None = None
    note: str = ""


def verify(
    db: Database,
    head_path: str | Path | None = None,
    *,
    head_may_lag: bool = False,
    accept_uncommitted: int | None = None,
) -> VerifyResult:
    """Check the audit log of *db* against its head file (default ``<db file>.audit-head``).

    *head_may_lag*: for a backup whose head file was copied *before* the database: rows after the
    anchored row are accepted when they chain on from it (and reported in ``note``), since the
    bot may have appended between the two copies. Such rows are shown, not proven.

    *accept_uncommitted*: the row a pending head file announces, when the bot is known to have
    crashed before that transaction committed: its missing rows are then accepted (and stated in
    ``note``). Any other row number accepts nothing.
    """
    conn = db.conn
    if conn.in_transaction:
        raise RuntimeError("verify needs its own read snapshot: call it outside a transaction")
    path = Path(head_path) if head_path else default_head_path(db)
    if not _has_tables(conn):
        return _check_anchor(path, rows=0, first=None, last=GENESIS)
    with _snapshot(conn, lock=False):
        try:
            start = chain_start(conn)
        except AuditIntegrityError as exc:
            return VerifyResult(False, 0, None, str(exc))
        first_row = conn.execute("SELECT min(id) FROM audit_log").fetchone()[0]
        result = walk(conn.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY id"), start)
        if result.fault is None:
            index_fault = _check_index(conn)
            if index_fault is not None:
                return _bad(result.rows, index_fault)
    if result.fault is not None:
        return _bad(result.rows, result.fault)
    with _snapshot(conn, lock=True):
        # Rows appended since the snapshot: chain them on, then compare with the head file while
        # no append can run (appends write the head file under this same lock).
        more = walk(
            conn.execute(f"SELECT {COLUMNS} FROM audit_log WHERE id > ? ORDER BY id", (result.last.id,)),
            result.last,
            before_start=result.before_last,
        )
        if more.fault is not None:
            return _bad(result.rows + more.rows, more.fault)
        total = result.rows + more.rows
        first = int(first_row) if first_row is not None else None
        if first is None and more.rows:
            first = result.last.id + 1
        verdict = _check_anchor(
            path,
            rows=total,
            first=first,
            last=more.last,
            conn=conn,
            may_lag=head_may_lag,
            accept_uncommitted=accept_uncommitted,
        )
        if not verdict.ok:
            return verdict
        trigger_fault = _check_triggers(conn)
        gaps = _recorded_gaps(conn)
    if trigger_fault is not None:
        return _bad(total, trigger_fault)
    if gaps:
        note = f"{verdict.note}; {gaps}" if verdict.note else gaps
        verdict = dataclasses.replace(verdict, note=note)
    return verdict


def _bad(rows: int, fault: ChainFault) -> VerifyResult:
    return VerifyResult(False, rows, fault.row, fault.reason)


def _has_tables(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('audit_log', 'audit_target')"
    ).fetchone()
    return int(found[0]) == 2


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection, *, lock: bool) -> Iterator[None]:
    """A read transaction; with *lock*, one that also holds the write lock (if the file is writable)."""
    try:
        conn.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
    except sqlite3.OperationalError as exc:
        if not lock or "readonly" not in str(exc):
            raise
        conn.execute("BEGIN")  # a read-only copy: nothing can append to it anyway
    try:
        yield
    finally:
        conn.execute("ROLLBACK")


def _check_index(conn: sqlite3.Connection) -> ChainFault | None:
    """``audit_target`` must hold exactly each row's targets (it answers ``history TARGET``)."""
    missing = conn.execute(
        """
        SELECT min(l.id) FROM audit_log l, json_each(l.targets) j
        WHERE NOT EXISTS (SELECT 1 FROM audit_target t WHERE t.target = j.value AND t.row_id = l.id)
        """
    ).fetchone()[0]
    if missing is not None:
        return ChainFault(
            int(missing), f"the device index lost a target of row {missing} (history would hide it)"
        )
    extra = conn.execute(
        """
        SELECT min(t.row_id) FROM audit_target t
        WHERE NOT EXISTS (
            SELECT 1 FROM audit_log l, json_each(l.targets) j WHERE l.id = t.row_id AND j.value = t.target
        )
        """
    ).fetchone()[0]
    if extra is not None:
        return ChainFault(int(extra), f"the device index lists a target that row {extra} does not have")
    return None


def _check_triggers(conn: sqlite3.Connection) -> ChainFault | None:
    present = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit%'"
        )
    }
    dropped = [name for name in TRIGGERS if name not in present]
    if dropped:
        return ChainFault(None, f"append-only trigger(s) dropped: {', '.join(dropped)}")
    gate = conn.execute("SELECT max(through_id) FROM audit_retention_gate").fetchone()[0]
    if gate is not None:
        return ChainFault(None, f"the retention gate is left open (deletes allowed up to row {gate})")
    return None


def _check_anchor(
    path: Path | None,
    *,
    rows: int,
    first: int | None,
    last: Head,
    conn: sqlite3.Connection | None = None,
    may_lag: bool = False,
    accept_uncommitted: int | None = None,
) -> VerifyResult:
    span = f"rows {first}–{last.id}" if first is not None else "no rows"

    def ok(anchored: int | None, note: str = "") -> VerifyResult:
        summary = f"intact: {rows} row{'' if rows == 1 else 's'} ({span})" + (
            f", anchored at row {anchored}" if anchored else ""
        )
        return VerifyResult(True, rows, None, summary, first, last.id if rows else None, anchored, note)

    def bad(row: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, rows, row, reason, first, last.id if rows else None)

    if path is None:
        return ok(None, "in-memory database: there is no head file, so only the chain itself was checked")
    try:
        anchor = read_anchor(path)
    except AnchorError as exc:
        return bad(None, f"{exc}: it was edited or damaged")
    if anchor is None:
        if rows == 0:
            return ok(None)
        return bad(None, f"the head file {path} is missing but the log has {rows} rows: it was deleted")
    anchored_hash = None
    if conn is not None:
        found = conn.execute("SELECT hash FROM audit_log WHERE id = ?", (anchor.id,)).fetchone()
        anchored_hash = str(found[0]) if found else None
    if anchored_hash == anchor.hash:
        if anchor.id == last.id:
            return ok(anchor.id)
        if may_lag:
            return ok(
                anchor.id,
                f"rows {anchor.id + 1}–{last.id} come after the head file's row and chain on from it",
            )
        return bad(
            anchor.id + 1,
            f"rows {anchor.id + 1}–{last.id} were added after the anchored head (row {anchor.id}) "
            "without updating it: the bot did not write them",
        )
    if anchor.id > last.id and announces_missing_rows(anchor, last):
        missing = f"row {anchor.id}" if anchor.id == last.id + 1 else f"rows {last.id + 1}–{anchor.id}"
        if accept_uncommitted == anchor.id:
            result = ok(last.id or None)
            note = (
                f"accepted as a crash: the head file announced {missing} (row {anchor.id}, hash "
                f"{anchor.hash[:12]}…), which never committed; the bot records this as an audit.gap row "
                "when it next starts"
            )
            return VerifyResult(
                True, rows, None, result.reason, first, result.last_id, result.anchored_id, note
            )
        mismatch = (
            f" (--accept-uncommitted {accept_uncommitted} names another row)"
            if accept_uncommitted is not None
            else ""
        )
        return bad(
            last.id + 1,
            f"the head file announces row {anchor.id} (hash {anchor.hash[:12]}…) but the log ends at row "
            f"{last.id}: {missing} {'is' if anchor.id == last.id + 1 else 'are'} missing. Either the bot crashed (killed, power loss) before that "
            "transaction committed, or the rows were deleted; the files cannot tell which. If the bot is "
            f"known to have crashed then, accept it with --accept-uncommitted {anchor.id}; otherwise treat "
            f"it as tampering and compare with a backup{mismatch}",
        )
    if anchor.id > last.id:
        return bad(
            last.id + 1,
            f"the head file names row {anchor.id} but the log ends at row {last.id}: rows were removed "
            "from the end (or this is an older copy of the database)",
        )
    if anchored_hash is None:
        return bad(anchor.id, f"the anchored row {anchor.id} is no longer in the log")
    return bad(
        anchor.id,
        f"row {anchor.id} is not the anchored head: the chain up to row {anchor.id} was rewritten "
        "(the rewrite may start at any earlier row)",
    )


def _recorded_gaps(conn: sqlite3.Connection) -> str:
    """One sentence on the ``audit.gap`` rows in the log (``""`` when there are none)."""
    found = conn.execute(
        "SELECT id, detail FROM audit_log WHERE verb = ? ORDER BY id", (Verb.AUDIT_GAP,)
    ).fetchall()
    if not found:
        return ""
    shown = []
    for row_id, detail in found[:5]:
        try:
            announced = json.loads(detail).get("announced_id")
        except (ValueError, AttributeError):
            announced = None
        shown.append(f"row {row_id}" + (f" (row {announced} announced, never found)" if announced else ""))
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return (
        f"the log records {len(found)} audit gap{'' if len(found) == 1 else 's'}: {', '.join(shown)}{more}: "
        "a head file announced rows that never appeared (a crash before commit, a rollback, or a "
        "deletion); list them with `tsbot audit export --format json --verb audit.gap`"
    )
