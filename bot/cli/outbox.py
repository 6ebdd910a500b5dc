"""``tsbot outbox dead|requeue``: the Slack messages the bot gave up on, and sending them again.

::

    tsbot outbox dead [--limit N] [--db PATH]
    tsbot outbox requeue ID [ID ...] [--db PATH]
    tsbot outbox requeue --all [--db PATH]

``dead`` lists the newest dead letters (default 20): row id, how long ago the message was queued,
channel, Slack method, the error, and the start of the text with device identifiers masked.
A message is dead after a permanent Slack error (the bot is not in the channel, the channel is
archived, the blocks are invalid …) or after failing for 24 hours. ``requeue`` puts rows back
in the queue once the cause is fixed (say, the bot was invited to the channel); a running bot
sends them within seconds. A re-queued post carries the newest content of any update that died
waiting for it. The database is ``TSBOT_DB`` (default ``./tsbot.db``) unless ``--db`` names one.

Exit status: 0 done; 1 ``requeue`` could not requeue an id (unknown, not dead); 2 bad
arguments or no database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlite_utils import Database

from bot.core.config import ConfigError, Settings
from bot.core.durations import format_duration
from bot.core.redact import mask_text
from bot.outbox.relay import METHODS
from storage import outbox
from storage.outbox import OutboxRow
from storage.schema import open_database

__all__ = ["add_arguments", "run"]

_PREVIEW = 60


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", metavar="PATH", help="the SQLite database (default: TSBOT_DB, else ./tsbot.db)"
    )
    sub = parser.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    dead = sub.add_parser("dead", parents=[common], help="list the Slack messages given up on (newest first)")
    dead.add_argument("--limit", type=_positive, default=20, metavar="N", help="show at most N (default 20)")
    requeue = sub.add_parser(
        "requeue", parents=[common], help="send dead messages again once the cause is fixed"
    )
    requeue.add_argument(
        "ids", nargs="*", type=_positive, metavar="ID", help="row ids from `tsbot outbox dead`"
    )
    requeue.add_argument("--all", action="store_true", help="every dead message")


def _fail(message: str) -> int:
    print(f"tsbot outbox: {message}", file=sys.stderr)
    return 2


def _preview(row: OutboxRow) -> str:
    text = str(row.payload.get("text") or "")
    if not text:
        for block in row.payload.get("blocks") or []:
            inner = block.get("text") if isinstance(block, dict) else None
            if isinstance(inner, dict) and inner.get("text"):
                text = str(inner["text"])
                break
    flat = " ".join(mask_text(text).split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


def _where(row: OutboxRow) -> str:
    return row.slack_channel or row.channel or "response_url"


def _dead(db: Database, limit: int) -> int:
    total = outbox.dead_count(db)
    if total == 0:
        print("No dead letters: every Slack message was sent (or is still queued).")
        return 0
    rows = outbox.dead_letters(db, limit=limit)
    now = time.time()
    table = [
        (
            str(row.id),
            format_duration(timedelta(seconds=now - row.created_at)),
            _where(row),
            METHODS.get(row.kind, row.kind),
            mask_text(row.last_error or ""),
            _preview(row),
        )
        for row in rows
    ]
    header = ("ID", "AGE", "CHANNEL", "METHOD", "ERROR", "TEXT")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header) - 1)]
    shown = f"; the newest {len(rows)} shown" if len(rows) < total else ""
    print(f"{total} dead letter{'s' if total != 1 else ''}{shown}:")
    for line in [header, *table]:
        cells = [line[0].rjust(widths[0])] + [c.ljust(w) for c, w in zip(line[1:-1], widths[1:], strict=True)]
        print("  ".join([*cells, line[-1]]).rstrip())
    print(
        "\nFix the cause (e.g. invite the bot to the channel), then: tsbot outbox requeue ID ... (or --all)"
    )
    return 0


def _requeue(db: Database, ids: list[int], every: bool) -> int:
    if every == bool(ids):
        return _fail("give the row ids to requeue (see `tsbot outbox dead`), or --all")
    if every:
        count = outbox.requeue_all(db)
        print(
            f"Requeued {count} dead message{'s' if count != 1 else ''}; a running bot sends them within seconds."
        )
        return 0
    rows = {row_id: outbox.get_by_id(db, row_id) for row_id in ids}
    results = outbox.requeue_ids(db, ids)
    requeued = 0
    for row_id in ids:
        row, result = rows[row_id], results[row_id]
        if result == "requeued" and row is not None:
            requeued += 1
            print(f"{row_id}: requeued ({METHODS.get(row.kind, row.kind)} to {_where(row)})")
        elif result == "unknown":
            print(f"{row_id}: no such outbox row")
        else:
            print(f"{row_id}: not requeued: {result}")
    print(
        f"{requeued} of {len(ids)} requeued"
        + ("; a running bot sends them within seconds." if requeued else ".")
    )
    return 0 if requeued == len(ids) else 1


def run(args: argparse.Namespace) -> int:
    if args.db:
        db_path = Path(args.db)
    else:
        try:
            db_path = Path(Settings.from_env(os.environ).db_path)
        except ConfigError as exc:
            return _fail(str(exc))
    if not db_path.is_file():
        return _fail(f"no database at {db_path} (set TSBOT_DB or pass --db)")
    db = open_database(db_path)
    try:
        if args.outbox_command == "dead":
            return _dead(db, args.limit)
        return _requeue(db, list(args.ids), bool(args.all))
    finally:
        db.conn.close()
