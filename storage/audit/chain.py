"""The audit chain's moving parts: appending rows, walking the chain, keeping the head file in step.

Used by ``storage.audit.log`` (appends), ``storage.audit.verify`` and ``storage.audit.retention``;
callers outside ``storage`` use those modules, not this one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlite_utils import Database

from storage.audit.anchor import Anchor, AnchorError, database_file, read_anchor, write_anchor
from storage.audit.events import GENESIS_HASH, AuditEvent, Outcome, Verb, row_hash, row_payload
from storage.db import BUSY_TIMEOUT_MS, write

__all__ = [
    "COLUMNS",
    "GENESIS",
    "TRIGGERS",
    "AuditIntegrityError",
    "ChainFault",
    "Head",
    "Walk",
    "announces_missing_rows",
    "append",
    "append_anchored",
    "chain_start",
    "committed_head",
    "confirm_anchor",
    "gap_event",
    "latest_checkpoint",
    "read_head",
    "restore_anchor",
    "settle_anchor",
    "walk",
]

log = logging.getLogger(__name__)

#: Column order of every ``SELECT`` of whole rows (``AuditRow.from_columns`` reads this order).
COLUMNS: Final = "id, at, actor, channel, verb, targets, reason, outcome, request_id, detail, prev_hash, hash"
#: The triggers that keep the log append-only (created by the ``tsbot.audit`` migrations).
TRIGGERS: Final = (
    "audit_log_append_only",
    "audit_log_no_update",
    "audit_log_no_delete",
    "audit_target_no_update",
    "audit_target_no_delete",
)
_INSERT_ROW: Final = f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TARGET: Final = "INSERT INTO audit_target (target, row_id) VALUES (?, ?)"
_HEAD: Final = "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1"


class AuditIntegrityError(Exception):
    """The audit log or its head file shows tampering; the operation was refused and nothing changed."""


@dataclass(frozen=True)
class Head:
    """A row's place in the chain: its id and hash (id 0 is the genesis before row 1)."""

    id: int
    hash: str


GENESIS: Final = Head(0, GENESIS_HASH)


@dataclass(frozen=True)
class ChainFault:
    """Where and why the chain is broken (``row`` is ``None`` when no single row is to blame)."""

    row: int | None
    reason: str


def read_head(conn: sqlite3.Connection) -> Head:
    """The newest row as this connection sees it (inside its transaction, if any)."""
    found = conn.execute(_HEAD).fetchone()
    return Head(int(found[0]), str(found[1])) if found else GENESIS


def committed_head(db_file: str) -> Head:
    """The newest *committed* row, read through a separate connection (WAL readers see commits only)."""
    reader = sqlite3.connect(db_file, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        return read_head(reader)
    finally:
        reader.close()


def latest_checkpoint(conn: sqlite3.Connection) -> tuple[int, dict[str, Any]] | None:
    """The newest retention checkpoint row: ``(id, detail)``."""
    found = conn.execute(
        "SELECT id, detail FROM audit_log WHERE verb = ? ORDER BY id DESC LIMIT 1", (Verb.AUDIT_CHECKPOINT,)
    ).fetchone()
    if found is None:
        return None
    try:
        detail = json.loads(found[1])
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        raise AuditIntegrityError(f"retention checkpoint row {found[0]} has an unreadable detail")
    return int(found[0]), detail


def chain_start(conn: sqlite3.Connection) -> Head:
    """The row the first remaining row must chain from: genesis, or the latest checkpoint's last archived row."""
    checkpoint = latest_checkpoint(conn)
    if checkpoint is None:
        return GENESIS
    row_id, detail = checkpoint
    last_id, last_hash = detail.get("last_removed_id"), detail.get("last_removed_hash")
    if not isinstance(last_id, int) or not isinstance(last_hash, str):
        raise AuditIntegrityError(f"retention checkpoint row {row_id} does not say what it removed")
    return Head(last_id, last_hash)


def append(conn: sqlite3.Connection, events: Sequence[AuditEvent], after: Head) -> tuple[list[int], Head]:
    """Chain *events* after *after* and insert them; the caller holds the write lock."""
    rows: list[tuple[Any, ...]] = []
    links: list[tuple[str, int]] = []
    prev = after.hash
    row_id = after.id
    for event in events:
        row_id += 1
        columns = (
            row_id,
            event._at_text,
            event.actor,
            event.channel,
            event.verb,
            event._targets_json,
            event.reason,
            event.outcome,
            event.request_id or "",
            event._detail_json,
        )
        digest = row_hash(prev, row_payload(*columns))
        rows.append((*columns, prev, digest))
        links.extend((target, row_id) for target in event.targets)
        prev = digest
    conn.executemany(_INSERT_ROW, rows)
    if links:
        conn.executemany(_INSERT_TARGET, links)
    return [r[0] for r in rows], Head(row_id, prev)


@dataclass(frozen=True)
class Walk:
    """What :func:`walk` saw: rows checked, the last good row and the one before it, the first fault."""

    rows: int
    last: Head
    before_last: str | None
    fault: ChainFault | None


def walk(
    rows: Iterable[Sequence[Any]],
    start: Head,
    *,
    before_start: str | None = None,
    on_row: Callable[[Sequence[Any]], None] | None = None,
) -> Walk:
    """Check that *rows* (``COLUMNS`` order, ascending id) chain from *start*; stop at the first fault.

    The first bad row is the first one that fails a check, except that when a row does not chain
    from its predecessor the predecessor is blamed if it is the odd one out: the row chains from
    the row two back (the predecessor was inserted), or the row itself is intact (the predecessor
    was changed and its hash recomputed).
    """
    prev, prev_id, prev2 = start.hash, start.id, before_start
    count = 0
    for row in rows:
        rid, at, actor, channel, verb, targets, reason, outcome, request_id, detail, prev_hash, stored = row
        expected = prev_id + 1
        if rid != expected:
            return Walk(count, Head(prev_id, prev), prev2, _gap_fault(start, prev_id, rid))
        try:
            digest = row_hash(
                prev_hash,
                row_payload(rid, at, actor, channel, verb, targets, reason, outcome, request_id, detail),
            )
        except (TypeError, ValueError):
            return Walk(
                count, Head(prev_id, prev), prev2, ChainFault(rid, f"row {rid} has a malformed column")
            )
        if prev_hash != prev:
            fault = _link_fault(start, rid, prev_hash, digest == stored, prev2)
            return Walk(count, Head(prev_id, prev), prev2, fault)
        if digest != stored:
            fault = ChainFault(rid, f"row {rid} was changed: its contents no longer match its hash")
            return Walk(count, Head(prev_id, prev), prev2, fault)
        if on_row is not None:
            on_row(row)
        prev2, prev, prev_id = prev, stored, rid
        count += 1
    return Walk(count, Head(prev_id, prev), prev2, None)


def _gap_fault(start: Head, prev_id: int, rid: int) -> ChainFault:
    expected = prev_id + 1
    if rid < expected:
        return ChainFault(
            rid, f"row {rid} comes before the start of the chain (row {expected}): it was inserted"
        )
    missing = (
        f"row {expected} is missing" if rid == expected + 1 else f"rows {expected}–{rid - 1} are missing"
    )
    if prev_id == start.id:
        where = (
            "the log starts at row 1"
            if start.id == 0
            else f"the latest retention checkpoint archived up to row {start.id}"
        )
        return ChainFault(expected, f"{missing}: {where}, but the first row is {rid}; rows were deleted")
    return ChainFault(expected, f"{missing}: row {prev_id} is followed by row {rid}; rows were deleted")


def _link_fault(start: Head, rid: int, prev_hash: str, intact: bool, prev2: str | None) -> ChainFault:
    before = rid - 1
    if before == start.id:
        origin = "the genesis hash" if start.id == 0 else f"row {before}, the last row archived by retention"
        return ChainFault(rid, f"row {rid} does not chain from {origin}: it was changed or inserted")
    if prev2 is not None and prev_hash == prev2:
        return ChainFault(before, f"row {before} was inserted: row {rid} chains from row {before - 1}")
    if intact:
        return ChainFault(
            before, f"row {before} was changed (its hash recomputed): row {rid} still names the original hash"
        )
    return ChainFault(
        rid,
        f"row {rid} does not chain from row {before} and its contents do not match its hash "
        "(changed, or rows deleted and renumbered)",
    )


def _row_hash_at(conn: sqlite3.Connection, row_id: int) -> str | None:
    found = conn.execute("SELECT hash FROM audit_log WHERE id = ?", (row_id,)).fetchone()
    return str(found[0]) if found else None


def announces_missing_rows(anchor: Anchor, committed: Head) -> bool:
    """Does *anchor* announce rows that never reached the log?

    True when it is pending (written before a commit that was never confirmed) and the committed
    log ends exactly at its base: the transaction that wrote it did not commit (a crash, a
    rollback), or its rows were deleted since. The two cannot be told apart from the files.
    """
    return anchor.pending and (anchor.base_id, anchor.base_hash) == (committed.id, committed.hash)


def gap_event(anchor: Anchor) -> AuditEvent:
    """The ``audit.gap`` row that records a head file announcing rows the log does not have."""
    first = anchor.base_id + 1
    rows = f"row {first}" if first == anchor.id else f"rows {first}–{anchor.id}"
    detail: dict[str, Any] = {
        "announced_id": anchor.id,
        "announced_hash": anchor.hash,
        "first_missing_id": first,
        "log_ended_at_id": anchor.base_id,
        "log_ended_at_hash": anchor.base_hash,
    }
    if anchor.written_at:
        detail["announced_at"] = anchor.written_at
    return AuditEvent.system(
        Verb.AUDIT_GAP,
        outcome=Outcome.MISSING,
        reason=(
            f"the head file announced {rows} but the log ended at row {anchor.base_id}: missing because "
            "of a crash before that transaction committed, a rolled-back transaction, or a deletion"
        ),
        detail=detail,
    )


@dataclass(frozen=True)
class _AnchorCheck:
    writable: bool
    gap: AuditEvent | None = None


def _check_anchor_file(
    conn: sqlite3.Connection, head_path: Path, committed: Head, before: Head
) -> _AnchorCheck:
    """May an append rewrite *head_path*, and must it record a gap first? (Under the write lock.)

    *committed* is the newest committed row; *before* the newest row this connection sees (its
    own uncommitted rows included). A file that does not match the log is never rewritten.
    """
    try:
        current = read_anchor(head_path)
    except AnchorError:
        log.error(
            "audit head file %s is unreadable; leaving it as evidence (run `tsbot audit verify`)", head_path
        )
        return _AnchorCheck(writable=False)
    if current is None:
        if committed.id != 0:
            log.error(
                "audit head file %s is missing although the log has rows; not recreating it "
                "(run `tsbot audit verify`)",
                head_path,
            )
            return _AnchorCheck(writable=False)
        return _AnchorCheck(writable=True)
    if _row_hash_at(conn, current.id) == current.hash:
        return _AnchorCheck(writable=True)
    if announces_missing_rows(current, committed) and current.id > before.id:
        gap = gap_event(current)
        log.warning("audit: %s; recording it in the log (verb audit.gap) before re-anchoring", gap.reason)
        return _AnchorCheck(writable=True, gap=gap)
    log.error(
        "audit head file %s does not match the audit log; leaving it as evidence (run `tsbot audit verify`)",
        head_path,
    )
    return _AnchorCheck(writable=False)


def append_anchored(
    db: Database, events: Sequence[AuditEvent], head_path: Path | None, *, owned: bool
) -> tuple[list[int], Head]:
    """Append *events* and write the head file for them, inside the caller's write transaction.

    *owned* says the append opened the transaction (so the newest row before it is committed).
    A head file that announces rows the log does not have (see :func:`announces_missing_rows`)
    is first recorded in the chain as an ``audit.gap`` row, then replaced; a head file that does
    not match the log otherwise is left as it is (it is the evidence) and logged. Returns the
    ids of *events* (not of a gap row) and the new head.
    """
    conn = db.conn
    before = read_head(conn)
    if head_path is None:
        return append(conn, events, before)
    committed = before if owned else committed_head(database_file(db))
    check = _check_anchor_file(conn, head_path, committed, before)
    batch = [check.gap, *events] if check.gap is not None else list(events)
    ids, after = append(conn, batch, before)
    if check.writable:
        write_anchor(head_path, Anchor(after.id, after.hash, committed.id, committed.hash))
    return (ids[1:] if check.gap is not None else ids), after


def confirm_anchor(db: Database, head_path: Path) -> bool:
    """Mark a pending head file as committed, if its row is now the committed head.

    Cheap, and safe to call at any time outside a transaction.
    """
    conn = db.conn
    if conn.in_transaction:
        return False
    with write(db):
        try:
            current = read_anchor(head_path)
        except AnchorError:
            return False
        if current is None or not current.pending:
            return False
        if read_head(conn) != Head(current.id, current.hash):
            return False
        write_anchor(head_path, current.confirmed())
        return True


def settle_anchor(db: Database, head_path: Path) -> str:
    """Bring a pending head file to rest, outside a transaction; returns what it did.

    ``"confirmed"``: its rows are committed, it now says so. ``"gap"``: it announced rows the
    log does not have; an ``audit.gap`` row now records that, and the file names that row,
    confirmed. ``""``: nothing to do (confirmed already, no file, or a file that does not match
    the log, which is left as evidence).
    """
    conn = db.conn
    if conn.in_transaction:
        return ""
    with write(db):
        try:
            current = read_anchor(head_path)
        except AnchorError:
            return ""
        if current is None or not current.pending:
            return ""
        head = read_head(conn)
        if head == Head(current.id, current.hash):
            write_anchor(head_path, current.confirmed())
            return "confirmed"
        if not (announces_missing_rows(current, head) and current.id > head.id):
            return ""
        append_anchored(db, [], head_path, owned=True)
    confirm_anchor(db, head_path)
    return "gap"


def restore_anchor(head_path: Path, prior: Anchor | None) -> None:
    """Put back the head file as it was before a transaction that is about to roll back.

    Called under that transaction's write lock, so the file never announces rows of a
    transaction the bot itself rolled back (which would later read as a gap).
    """
    try:
        current = read_anchor(head_path)
    except AnchorError:
        return
    if current == prior:
        return
    if prior is None:
        head_path.unlink(missing_ok=True)
    else:
        write_anchor(head_path, prior)
