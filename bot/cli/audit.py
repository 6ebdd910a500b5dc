"""``tsbot audit``: verify, export and prune the audit log.

::

    tsbot audit verify [--db PATH] [--head PATH] [--head-may-lag] [--accept-uncommitted ROW]
    tsbot audit export --format csv|json [--since WHEN] [--until WHEN] [--actor U…] [--device ID]
                       [--verb VERB] [--output FILE] [--db PATH]
    tsbot audit retain --older-than WHEN [--archive FILE] [--db PATH] [--head PATH]

The database is ``TSBOT_DB`` (default ``./tsbot.db``) unless ``--db`` names one; the head file is
``<db>.audit-head`` unless ``--head`` names one. ``WHEN`` is an ISO date (``2026-05-01``), an ISO
time (``2026-05-01T12:00``, ``…Z`` or ``…+02:00``; no zone means UTC) or a duration back from now
(``24h``, ``7d``, ``1h30m``). ``--since`` is inclusive, ``--until`` exclusive, except that a bare
date in ``--until`` includes that whole day.

``verify`` prints the row count and exits 0 when the log is intact; it exits 1 naming the first
bad row (and why) when anything was edited, deleted, inserted or rewritten, or the head file is
missing. A head file that announces rows the log does not have (the newest transaction never
committed, or was deleted) also fails; when the bot is known to have crashed at that moment,
``--accept-uncommitted ROW`` (the announced row, as the failure names it) accepts exactly that.
Rows the bot recorded as ``audit.gap`` are listed in a note.

To verify a backup, copy the head file first and the database second (``sqlite3 tsbot.db
".backup …"``), and pass ``--head-may-lag``: rows the bot appended between the two copies are
then accepted when they chain on from the head file's row.

``export`` streams (JSON lines or CSV, see ``storage.audit.export``) to stdout or to ``--output``
FILE: written to a new private (0600) partial file in FILE's folder, renamed over FILE when
complete, removed on failure. FILE must not be a folder, an existing file that is not a regular
one (a FIFO, a device), or — through symlinks — the database, its ``-wal`` / ``-shm`` /
``-journal`` or the audit head file: each is refused with one line and exit 2. ``retain`` archives and removes rows older
than ``--older-than`` (archive default: a dated file in ``[audit] archive_dir``, else in
``audit-archive/`` beside the database, as the daily retention job does). Exit 2: bad arguments
or no database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TextIO

from sqlite_utils import Database

from bot.core.config import ConfigError, Settings
from bot.core.durations import parse_duration
from storage.audit.export import write_csv, write_jsonl
from storage.audit.log import (
    AuditIntegrityError,
    AuditLog,
    apply_retention,
    archive_folder,
    default_archive_path,
    verify,
)
from storage.files import UnsafeOutput, export_target, write_private
from storage.schema import open_database

__all__ = ["add_arguments", "parse_when", "run"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_when(text: str, *, now: datetime | None = None, end_of_day: bool = False) -> datetime:
    """An ISO date or time, or a duration back from *now*; naive times are UTC.

    *end_of_day*: a bare date means the end of that day (for an inclusive ``--until``).
    Raises ``ValueError`` saying what is accepted.
    """
    try:
        return _parse_when(text, now=now or datetime.now(UTC), end_of_day=end_of_day)
    except OverflowError:  # a date at the edge of what datetime holds (9999-12-31 through that day)
        raise ValueError(f"{text!r} is out of range: use a date between 0001-01-02 and 9999-12-30") from None


def _parse_when(text: str, *, now: datetime, end_of_day: bool) -> datetime:
    cleaned = text.strip()
    if _DATE.fullmatch(cleaned):
        with contextlib.suppress(ValueError):
            start = datetime.combine(date.fromisoformat(cleaned), time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
    elif _DATE.match(cleaned):
        try:
            moment = datetime.fromisoformat(cleaned)
        except ValueError:
            pass
        else:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        try:
            return now - parse_duration(cleaned)
        except ValueError as exc:
            if cleaned[:1].isdigit() and cleaned[-1:].lower() in "smhdw":  # a duration, but wrong
                raise ValueError(str(exc)) from None
    raise ValueError(
        f"{text!r} is not a date, a time or a duration: use e.g. 2026-05-01, 2026-05-01T12:00Z, 24h or 7d"
    )


def _when(*, end_of_day: bool = False) -> Callable[[str], datetime]:
    def convert(text: str) -> datetime:
        try:
            return parse_when(text, end_of_day=end_of_day)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _row_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a row number (a whole number from 1)")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", metavar="PATH", help="the SQLite database (default: TSBOT_DB, else ./tsbot.db)"
    )
    common.add_argument("--head", metavar="PATH", help="the audit head file (default: <db>.audit-head)")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    check = actions.add_parser(
        "verify",
        parents=[common],
        help="check the hash chain and the head file; exit 1 naming the first bad row",
        description="Check the audit log's hash chain, device index and head file.",
    )
    check.add_argument(
        "--head-may-lag",
        action="store_true",
        help="a backup whose head file was copied before the database: accept newer rows that chain on",
    )
    check.add_argument(
        "--accept-uncommitted",
        type=_row_number,
        metavar="ROW",
        help="the bot is known to have crashed: accept that the transaction ending at ROW (the row the "
        "head file announces, named in the failure) never committed",
    )

    export = actions.add_parser(
        "export",
        parents=[common],
        help="stream the audit log as CSV or JSON lines",
        description="Stream audit rows, oldest first, as CSV or JSON lines (one object per line).",
    )
    export.add_argument("--format", choices=("csv", "json"), required=True, help="csv, or json (JSON lines)")
    export.add_argument("--since", type=_when(), metavar="WHEN", help="from this time on (inclusive)")
    export.add_argument(
        "--until",
        type=_when(end_of_day=True),
        metavar="WHEN",
        help="before this time (a date: through that day)",
    )
    export.add_argument(
        "--actor", metavar="USER", help="only rows by this Slack user id (or system, thingspace)"
    )
    export.add_argument("--device", metavar="ID", help="only rows naming this device (kind:id, or a bare id)")
    export.add_argument(
        "--verb", metavar="VERB", help="only rows with this verb (e.g. suspend, alert.snooze)"
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")

    retain = actions.add_parser(
        "retain",
        parents=[common],
        help="archive and remove rows older than a cutoff, re-anchoring the chain",
        description="Move audit rows older than --older-than to an archive file (JSON lines) and remove them.",
    )
    retain.add_argument(
        "--older-than", type=_when(), required=True, metavar="WHEN", help="e.g. 90d, or a date"
    )
    retain.add_argument("--archive", metavar="FILE", help="archive file (default: a dated file, see above)")


def _fail(message: str, code: int = 2) -> int:
    print(f"tsbot audit: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    settings: Settings | None = None
    if not args.db or (args.audit_command == "retain" and not args.archive):
        try:
            settings = Settings.from_env(os.environ)
        except ConfigError as exc:
            return _fail(str(exc))
    db_path = Path(args.db or (settings.db_path if settings else ""))
    if not db_path.is_file():
        return _fail(f"no database at {db_path} (set TSBOT_DB or pass --db)")
    db = open_database(db_path, migrate=args.audit_command == "retain")
    try:
        if args.audit_command == "verify":
            return _verify(db, args)
        if args.audit_command == "export":
            return _export(AuditLog(db, head_path=args.head), args, db_path)
        return _retain(db, args, archive_folder(db_path, settings.audit_archive_dir if settings else ""))
    finally:
        db.conn.close()


def _verify(db: Database, args: argparse.Namespace) -> int:
    result = verify(db, args.head, head_may_lag=args.head_may_lag, accept_uncommitted=args.accept_uncommitted)
    if result.ok:
        print(f"audit log {result.reason}.")
        if result.note:
            print(f"note: {result.note}")
        return 0
    where = f" at row {result.first_bad_row}" if result.first_bad_row is not None else ""
    print(f"audit log FAILED verification{where}: {result.reason}.")
    print(f"rows verified before the failure: {result.rows}")
    return 1


@contextlib.contextmanager
def _output(target: Path | None) -> Iterator[TextIO]:
    if target is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with write_private(target) as out:
        yield out


#: the files SQLite keeps beside a database
_DB_COMPANIONS = ("-wal", "-shm", "-journal")


def _export(log: AuditLog, args: argparse.Namespace, db_path: Path) -> int:
    if args.device is not None and not args.device.strip():
        return _fail("--device needs a device id (kind:id, or a bare id)")
    try:
        rows = log.iter_columns(
            target=args.device, actor=args.actor, since=args.since, until=args.until, verb=args.verb
        )
        target = None
        if args.output:
            target = Path(args.output)
            own = [db_path, *(Path(f"{db_path}{suffix}") for suffix in _DB_COMPANIONS)]
            export_target(target, [*own, *([log.head_path] if log.head_path else [])])
        with _output(target) as out:
            count = (write_csv if args.format == "csv" else write_jsonl)(rows, out)
    except UnsafeOutput as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    print(f"exported {count} audit rows" + (f" to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _retain(db: Database, args: argparse.Namespace, archive_dir: Path) -> int:
    archive = Path(args.archive) if args.archive else default_archive_path(archive_dir)
    try:
        if not args.archive:
            archive_dir.mkdir(parents=True, exist_ok=True)
        result = apply_retention(db, older_than=args.older_than, archive_path=archive, head_path=args.head)
    except AuditIntegrityError as exc:
        return _fail(str(exc), 1)
    except (FileExistsError, FileNotFoundError, PermissionError) as exc:
        return _fail(str(exc))
    if not result.removed:
        print(f"nothing to archive: no audit rows older than {args.older_than:%Y-%m-%d %H:%M:%S} UTC.")
        return 0
    print(
        f"archived {result.removed} audit rows (ids {result.first_removed_id}–{result.last_removed_id}) "
        f"to {result.archive_path}; checkpoint row {result.checkpoint_id}."
    )
    return 0
