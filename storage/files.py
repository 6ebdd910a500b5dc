"""Files the bot writes that hold what others must not read: private (0600) whatever the umask.

The database holds live ``response_url`` s (anyone with one can post into the channel) and full
device ids; the audit head file and exports hold the audit trail. :func:`create_private` makes a
new file 0600 with ``O_EXCL | O_NOFOLLOW`` (a planted file or symlink is never followed or
reused); :func:`ensure_private_file` creates a missing file 0600 before SQLite opens it (SQLite
gives the ``-wal`` and ``-shm`` files the database file's permissions) and says whether an
existing one is readable by group or others; :func:`export_target` refuses an export path that is
a folder, not a regular file, or one of the database's own files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

__all__ = [
    "PRIVATE_MODE",
    "UnsafeOutput",
    "create_private",
    "ensure_private_file",
    "export_target",
    "loose_permissions",
    "partial_path",
    "write_private",
]

PRIVATE_MODE = 0o600


class UnsafeOutput(ValueError):
    """An output path the bot refuses to write (the message says why, in one line)."""


def create_private(path: Path) -> int:
    """A new file at *path*, mode 0600, opened for writing; never an existing file or a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private_file(path: Path) -> bool:
    """Create *path* empty and 0600 if it does not exist. True if it was created."""
    try:
        fd = create_private(path)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def loose_permissions(path: Path) -> int | None:
    """The permission bits of *path* if group or others may read or write it, else None."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def export_target(target: Path, protected: Iterable[Path]) -> Path:
    """*target* checked as an export destination: not a folder, not an existing non-regular file
    (FIFO, device, socket), and not — through symlinks — any of *protected* (the database, its
    ``-wal`` / ``-shm`` / ``-journal`` and the audit head file). Raises :class:`UnsafeOutput`."""
    resolved = target.resolve()
    guarded = {p.resolve() for p in protected}
    if resolved in guarded:
        raise UnsafeOutput(f"{target} is the bot's own database or audit head file; name another file")
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise UnsafeOutput(f"{target} is a folder; name a file in it, e.g. {target / 'audit.csv'}")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UnsafeOutput(f"{target} exists and is not a regular file; name a new or regular file")
    if not resolved.parent.is_dir():
        raise UnsafeOutput(f"the folder of {target} does not exist")
    return resolved


def partial_path(final: Path) -> Path:
    """A name for the file *final* is written through: hidden, in the same folder, unguessable (a
    file planted under a predictable name is never reused)."""
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")


@contextlib.contextmanager
def write_private(final: Path, *, newline: str = "") -> Iterator[TextIO]:
    """Write *final* through a fresh 0600 partial file in its folder, renamed over it once complete;
    the partial file is removed if writing fails. *final* should have passed :func:`export_target`."""
    partial = partial_path(final)
    fd = create_private(partial)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
