"""The audit head file: the chain's newest row, written outside the database.

Whoever can write the database can recompute the whole hash chain; they cannot also make the
file beside it (``<db file>.audit-head``, or another path on another volume) agree, unless they
rewrite that too. The file holds one JSON object::

    {"id": 1234, "hash": "…", "base_id": 1230, "base_hash": "…", "written_at": "…"}

``id``/``hash`` are the newest row as of the write; ``base_id``/``base_hash`` the newest row that
was already *committed* when it was written. Every append writes the file inside its own write
transaction, before the commit (so no committed row is ever missing from it): when that
transaction commits, ``id`` is the head; when it rolls back or the process dies first, the
database still ends at ``base``. After the commit the file is rewritten with ``base = id``
("confirmed"): at once for appends the bot commits itself, within moments by the background
confirmer for command transactions, and at shutdown. See ``storage.audit`` for what verification
accepts and what happens to a file that announces rows the log does not have.

The file is replaced atomically: written to a temporary file in the same directory, fsync'd,
``os.replace``'d over the old one, then the directory is fsync'd.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

__all__ = [
    "HEAD_SUFFIX",
    "Anchor",
    "AnchorError",
    "database_file",
    "default_head_path",
    "read_anchor",
    "write_anchor",
]

HEAD_SUFFIX = ".audit-head"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AnchorError(Exception):
    """The head file exists but is not a valid anchor (garbled, truncated, edited by hand)."""


@dataclass(frozen=True)
class Anchor:
    """The chain head as written to the head file."""

    id: int
    hash: str
    base_id: int
    base_hash: str
    #: when the file was written (UTC, as stored; ``""`` for an anchor not read from a file)
    written_at: str = field(default="", compare=False)

    @property
    def pending(self) -> bool:
        """Written before a commit that has not been confirmed since."""
        return (self.base_id, self.base_hash) != (self.id, self.hash)

    def confirmed(self) -> Anchor:
        """This head, as known to be committed."""
        return Anchor(self.id, self.hash, self.id, self.hash)


def database_file(db: Database) -> str:
    """The main database file of *db*'s connection; ``""`` for an in-memory database."""
    for _seq, name, file in db.conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(file or "")
    return ""


def default_head_path(db: Database) -> Path | None:
    """``<db file>.audit-head``; ``None`` for an in-memory database (nothing to anchor beside)."""
    file = database_file(db)
    return Path(file + HEAD_SUFFIX) if file else None


def read_anchor(path: Path) -> Anchor | None:
    """The anchor in *path*, ``None`` if there is no file; :class:`AnchorError` if it is not valid."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        anchor = Anchor(
            id=data["id"], hash=data["hash"], base_id=data["base_id"], base_hash=data["base_hash"]
        )
        written_at = data.get("written_at", "")
    except (ValueError, KeyError, TypeError):
        raise AnchorError(f"{path} is not a valid audit head file") from None
    ids_ok = all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (anchor.id, anchor.base_id)
    )
    hashes_ok = all(isinstance(v, str) and _HEX64.fullmatch(v) for v in (anchor.hash, anchor.base_hash))
    if not (ids_ok and hashes_ok and anchor.base_id <= anchor.id):
        raise AnchorError(f"{path} is not a valid audit head file")
    if isinstance(written_at, str):
        anchor = Anchor(anchor.id, anchor.hash, anchor.base_id, anchor.base_hash, written_at[:40])
    return anchor


def write_anchor(path: Path, anchor: Anchor) -> None:
    """Replace *path* atomically and durably with *anchor*."""
    body = json.dumps(
        {
            "id": anchor.id,
            "hash": anchor.hash,
            "base_id": anchor.base_id,
            "base_hash": anchor.base_hash,
            "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # private whatever the umask, like the database
        os.write(fd, (body + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
