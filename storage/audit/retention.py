"""Audit retention: the oldest rows go to an archive file, and a checkpoint row re-anchors the chain.

``apply_retention(db, older_than=cutoff, archive_path=file)``:

1. picks the rows to remove: the oldest rows, in id order, up to the first row whose time is at
   or after the cutoff (so what remains is always one unbroken stretch of the chain; a row
   stamped before the cutoff but after a newer one stays until a later run);
2. checks the head file against the log, and checks the chain of the rows to remove while
   writing them to a fresh, private (0600) ``.<archive>.….partial`` file as JSON lines (each row with ``prev_hash`` and
   ``hash``, keys sorted), then fsyncs it and renames it to *archive_path*; a row that fails
   the check stops everything (:class:`AuditIntegrityError`, nothing removed), so retention
   never launders tampering into an archive;
3. in one write transaction: appends a checkpoint row (verb ``audit.checkpoint``, actor
   ``system``; detail: ``removed``, ``first_removed_id``, ``last_removed_id``,
   ``last_removed_hash``, ``archive`` (file name), ``archive_sha256``, ``older_than``), advances
   the head file, opens the retention gate, deletes the rows and their device-index entries,
   closes the gate; commits; confirms the head file.

Afterwards the remaining chain starts from the checkpoint's ``last_removed_hash``, which is
itself inside the chain (in the checkpoint row), so ``verify`` still catches any change to what
remains. A crash after step 2 leaves an archive whose rows are still in the log; the next run
archives them again under its own file name (archives are never overwritten).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from storage.audit.anchor import AnchorError, default_head_path, read_anchor
from storage.audit.chain import (
    COLUMNS,
    AuditIntegrityError,
    append_anchored,
    chain_start,
    confirm_anchor,
    read_head,
    walk,
)
from storage.audit.events import AuditEvent, Verb, export_line, format_at
from storage.db import write
from storage.files import create_private, partial_path

__all__ = ["ARCHIVE_FOLDER", "RetentionResult", "apply_retention", "archive_folder", "default_archive_path"]

log = logging.getLogger(__name__)

#: The folder, beside the database, that archives go to unless ``[audit] archive_dir`` names one.
ARCHIVE_FOLDER = "audit-archive"


@dataclass(frozen=True)
class RetentionResult:
    """What a retention run did (``removed == 0``: nothing was old enough; no file, no checkpoint)."""

    removed: int
    archive_path: Path | None = None
    checkpoint_id: int | None = None
    first_removed_id: int | None = None
    last_removed_id: int | None = None


def archive_folder(db_path: str | Path, configured: str | Path = "") -> Path:
    """Where archives go: *configured* (``[audit] archive_dir``), else ``<db dir>/audit-archive``.

    One rule for the daily job and ``tsbot audit retain``, so an operator finds every archive
    in one place.
    """
    if str(configured).strip():
        return Path(configured)
    return Path(db_path).resolve().parent / ARCHIVE_FOLDER


def default_archive_path(directory: str | Path, now: datetime | None = None) -> Path:
    """``<directory>/audit-archive-20260509T073525Z.jsonl``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return Path(directory) / f"audit-archive-{moment:%Y%m%dT%H%M%S}Z.jsonl"


def apply_retention(
    db: Database,
    *,
    older_than: datetime,
    archive_path: str | Path,
    head_path: str | Path | None = None,
) -> RetentionResult:
    """Archive and remove rows older than *older_than* (see the module docstring).

    Raises :class:`AuditIntegrityError` when the log or head file shows tampering,
    ``FileExistsError`` when *archive_path* exists; in both cases nothing changes.
    """
    conn = db.conn
    if conn.in_transaction:
        raise RuntimeError("apply_retention runs its own transactions: call it outside one")
    cutoff = format_at(older_than)
    archive = Path(archive_path)
    head_file = Path(head_path) if head_path else default_head_path(db)

    conn.execute("BEGIN")  # one read snapshot for planning and exporting
    try:
        first = conn.execute("SELECT min(id) FROM audit_log").fetchone()[0]
        if first is None:
            return RetentionResult(0)
        kept = conn.execute("SELECT min(id) FROM audit_log WHERE at >= ?", (cutoff,)).fetchone()[0]
        last_removed = int(kept) - 1 if kept is not None else read_head(conn).id
        if (
            last_removed < first
            or not conn.execute(
                "SELECT 1 FROM audit_log WHERE id BETWEEN ? AND ? AND verb != ? LIMIT 1",
                (first, last_removed, Verb.AUDIT_CHECKPOINT),
            ).fetchone()
        ):
            return RetentionResult(0)  # nothing, or only earlier checkpoints: keep them, add nothing
        if archive.exists():
            raise FileExistsError(f"{archive} already exists; retention never overwrites an archive")
        _check_head_file(conn, head_file)
        start = chain_start(conn)
        partial = partial_path(archive)
        digest = hashlib.sha256()
        try:
            with os.fdopen(create_private(partial), "w", encoding="utf-8", newline="\n") as out:

                def keep(row: Any) -> None:
                    line = export_line(row) + "\n"
                    out.write(line)
                    digest.update(line.encode("utf-8"))

                rows = conn.execute(
                    f"SELECT {COLUMNS} FROM audit_log WHERE id <= ? ORDER BY id", (last_removed,)
                )
                result = walk(rows, start, on_row=keep)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if result.fault is not None or result.last.id != last_removed:
            partial.unlink()
            why = result.fault.reason if result.fault else "the rows changed while they were being archived"
            raise AuditIntegrityError(f"retention refused, nothing was removed: {why}")
    finally:
        conn.execute("ROLLBACK")
    os.replace(partial, archive)
    _fsync_dir(archive.parent)

    event = AuditEvent.system(
        Verb.AUDIT_CHECKPOINT,
        detail={
            "removed": result.rows,
            "first_removed_id": int(first),
            "last_removed_id": result.last.id,
            "last_removed_hash": result.last.hash,
            "archive": archive.name,
            "archive_sha256": digest.hexdigest(),
            "older_than": cutoff,
        },
    )
    with write(db):
        now_first = conn.execute("SELECT min(id) FROM audit_log").fetchone()[0]
        boundary = conn.execute("SELECT hash FROM audit_log WHERE id = ?", (last_removed,)).fetchone()
        if now_first != first or boundary is None or boundary[0] != result.last.hash:
            raise AuditIntegrityError(
                f"retention refused: the rows changed after they were archived to {archive.name}; nothing was removed"
            )
        ids, _after = append_anchored(db, [event], head_file, owned=True)
        conn.execute("INSERT INTO audit_retention_gate (through_id) VALUES (?)", (last_removed,))
        conn.execute("DELETE FROM audit_target WHERE row_id <= ?", (last_removed,))
        conn.execute("DELETE FROM audit_log WHERE id <= ?", (last_removed,))
        conn.execute("DELETE FROM audit_retention_gate")
    if head_file is not None:
        confirm_anchor(db, head_file)
    log.info(
        "audit retention: archived rows %d-%d (%d rows) to %s; checkpoint row %d",
        first,
        last_removed,
        result.rows,
        archive.name,
        ids[0],
    )
    return RetentionResult(result.rows, archive, ids[0], int(first), last_removed)


def _check_head_file(conn: Any, head_file: Path | None) -> None:
    """The head file must agree with the log before anything is archived (or tampering is blessed)."""
    if head_file is None:
        return
    try:
        anchor = read_anchor(head_file)
    except AnchorError as exc:
        raise AuditIntegrityError(f"retention refused: {exc}") from None
    head = read_head(conn)
    if anchor is None:
        raise AuditIntegrityError(f"retention refused: the head file {head_file} is missing")
    if (anchor.id, anchor.hash) == (head.id, head.hash):
        return
    if anchor.id > head.id and (anchor.base_id, anchor.base_hash) == (head.id, head.hash):
        return
    raise AuditIntegrityError(
        f"retention refused: the head file {head_file} does not match the log (run `tsbot audit verify`)"
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
