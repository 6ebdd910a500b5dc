"""``tsbot callbacks register|list|unknown|reprocess``: the bot's ThingSpace callback listeners,
and the callbacks it kept without understanding them.

``register`` points every service the bot consumes at ``TSBOT_PUBLIC_URL/thingspace/callbacks``
with the callback username and password. It is idempotent: a service already registered with
the same URL and username is left alone; one registered elsewhere is re-registered (ThingSpace
keeps one listener per service and account).

``unknown [--show ID]`` lists the authenticated callbacks the bot acknowledged but could not
read (kept raw, credentials removed): each one's service guess, when it came, its request id if
any, and its JSON. ``reprocess [ID…|--all]`` runs them through this version's parser: each one it
can read now goes into the inbox, where the bot (running, or at its next start) acts on it as on
any callback. Neither talks to ThingSpace.

``register`` and ``list`` log in through the login gate in ``TSBOT_DB`` that the running bot uses: while it pauses
logins after refused ones, nothing is sent and the error says what to do.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlite_utils import Database

from bot.core.config import ConfigError, Settings
from bot.intake.route import inbox_item
from bot.thingspace import shapes
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import LoginCoolingDown, ThingSpaceError
from bot.thingspace.events import CallbackKind, InvalidCallback
from bot.thingspace.models import CallbackListener
from storage import inbox, requests, unknown_callbacks
from storage.db import write
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool
from storage.schema import open_database

__all__ = ["add_arguments", "register_all", "reprocess", "run", "show_unknown"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg = sub.add_parser(
        "register", help="register the bot's listener for every service it consumes (idempotent)"
    )
    reg.add_argument("--url", help="listener URL (default: TSBOT_PUBLIC_URL + /thingspace/callbacks)")
    sub.add_parser("list", help="list the listeners registered for the account")
    unknown = sub.add_parser(
        "unknown", help="list the authenticated callbacks the bot kept without understanding them"
    )
    unknown.add_argument("--show", type=int, metavar="ID", help="show only this one")
    unknown.add_argument("--all", action="store_true", help="include those already reprocessed")
    again = sub.add_parser(
        "reprocess", help="run kept callbacks through this version's parser; readable ones go to the inbox"
    )
    again.add_argument("ids", nargs="*", type=int, metavar="ID", help="callbacks to reprocess")
    again.add_argument("--all", action="store_true", help="every callback still waiting")


@contextmanager
def _client(settings: Settings) -> Iterator[ThingSpaceClient]:
    """A client that logs in through the shared login gate; closed with the database after use."""
    try:
        pool = ConnectionPool(settings.db_path, synchronous=settings.db_synchronous)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(
            f"the database TSBOT_DB={settings.db_path} cannot be opened ({type(exc).__name__}: {exc}); "
            "it holds the ThingSpace login gate, so nothing was sent"
        ) from exc
    try:
        with ThingSpaceClient(
            **settings.thingspace_login(), login_gate=SqliteLoginGate(pool.get, program="tsbot callbacks")
        ) as client:
            yield client
    finally:
        pool.close()


def listener_url(settings: Settings) -> str:
    if not settings.public_url:
        raise ConfigError(
            "TSBOT_PUBLIC_URL is empty: it is the address ThingSpace calls back (https://…); without it "
            "the bot asks ThingSpace for results instead (README: Behind a firewall)"
        )
    return settings.public_url.rstrip("/") + "/thingspace/callbacks"


def register_all(client: ThingSpaceClient, url: str, username: str, password: str) -> list[tuple[str, str]]:
    """Register every consumed service; returns (service, what happened) pairs."""
    existing: dict[str, CallbackListener] = {}
    for listener in client.list_callbacks():
        existing[listener.service] = listener
    results: list[tuple[str, str]] = []
    for service in shapes.CONSUMED_SERVICES:
        current = existing.get(service)
        # compared as UTF-8 bytes: compare_digest refuses str with non-ASCII characters
        same_password = (
            not current
            or not current.password
            or hmac.compare_digest(
                current.password.encode("utf-8", "surrogatepass"), password.encode("utf-8", "surrogatepass")
            )
        )
        if current is not None and current.url == url and current.username == username and same_password:
            results.append((service, "already registered"))
            continue
        if current is not None:
            client.deregister_callback(service)
        client.register_callback(service, url, username, password)
        if current is None:
            results.append((service, "registered"))
        elif current.url != url:
            results.append((service, f"re-registered (was {current.url})"))
        else:
            results.append((service, "re-registered with the new username or password"))
    return results


def _print_listeners(listeners: list[CallbackListener]) -> None:
    if not listeners:
        print("No callback listeners are registered for this account.")
        return
    width = max(len(item.service) for item in listeners)
    for item in sorted(listeners, key=lambda x: x.service):
        mark = "" if item.service in shapes.CONSUMED_SERVICES else "   (not used by the bot)"
        print(f"{item.service:<{width}}  {item.url}{mark}")


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def show_unknown(db: Database, *, only: int | None = None, include_done: bool = False) -> int:
    """Print the kept callbacks (or one); returns the exit status (0; 1 for an unknown id)."""
    if only is not None:
        found = unknown_callbacks.get(db, only)
        if found is None:
            print(f"tsbot callbacks: no kept callback #{only}", file=sys.stderr)
            return 1
        kept = [found]
    else:
        kept = unknown_callbacks.listing(db, waiting_only=not include_done)
    if not kept:
        print("No unreadable callbacks are waiting.")
        return 0
    for item in kept:
        state = "" if item.state == "waiting" else f" · {item.state} {_when(item.reprocessed_at or 0)}"
        copies = f" · received {item.copies} times" if item.copies > 1 else ""
        print(
            f"#{item.id}  {_when(item.received_at)}  service {item.service_guess}  "
            f"request {item.request_id or '(none)'}{copies}{state}"
        )
        print(f"    why: {item.reason}")
        for line in json.dumps(item.payload, indent=2, sort_keys=True, ensure_ascii=False).splitlines():
            print(f"    {line}")
    return 0


def reprocess(db: Database, ids: Sequence[int], *, now: float) -> list[tuple[int, str]]:
    """Run kept callbacks (*ids*, or every waiting one when empty) through the current parser;
    each readable one is put in the inbox. Returns (id, what happened) pairs."""
    chosen = [unknown_callbacks.get(db, i) for i in ids] if ids else unknown_callbacks.listing(db)
    done: list[tuple[int, str]] = []
    for position, item in enumerate(chosen):
        if item is None:
            done.append((ids[position], "no such kept callback"))
            continue
        if item.state != "waiting":
            done.append((item.id, f"already reprocessed (inbox row {item.inbox_id})"))
            continue
        try:
            entry = inbox_item(item.payload)
        except InvalidCallback as exc:
            done.append((item.id, f"still not readable: {exc}"))
            continue
        if entry.kind in (CallbackKind.SUCCEEDED.value, CallbackKind.UNKNOWN.value) and (
            requests.get_request(db, entry.request_id) is None
        ):
            done.append((item.id, "still not understood: no known outcome and no request of the bot"))
            continue
        with write(db):
            inbox.insert_many(db, [entry], now=now)
            row = db.execute(
                "SELECT id, state FROM inbox WHERE request_id = ? AND device = ? AND outcome_key = ?",
                [entry.request_id, entry.device, entry.outcome_key],
            ).fetchone()
            inbox_id = int(row[0])
            if row[1] == "unmatched":  # kept by the worker earlier: let it look again
                db.execute("UPDATE inbox SET state = 'received', last_error = NULL WHERE id = ?", [inbox_id])
            unknown_callbacks.mark_reprocessed(db, item.id, inbox_id=inbox_id, now=now)
        done.append((item.id, f"readable now ({entry.kind}); inbox row {inbox_id}"))
    return done


def _local(args: argparse.Namespace, settings: Settings) -> int:
    """``unknown`` and ``reprocess``: the database only, no ThingSpace call."""
    try:
        db = open_database(settings.db_path, synchronous=settings.db_synchronous)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(
            f"the database TSBOT_DB={settings.db_path} cannot be opened ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        if args.action == "unknown":
            return show_unknown(db, only=args.show, include_done=args.all)
        if not args.ids and not args.all:
            print("tsbot callbacks reprocess: name the kept callbacks (IDs) or give --all", file=sys.stderr)
            return 2
        results = reprocess(db, [] if args.all else args.ids, now=time.time())
        if not results:
            print("No unreadable callbacks are waiting.")
        for row_id, what in results:
            print(f"#{row_id}: {what}")
        if any("readable now" in what for _, what in results):
            print("The running bot acts on them within a second; a stopped one at its next start.")
        return 0
    finally:
        db.close()


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
        if args.action in ("unknown", "reprocess"):
            return _local(args, settings)
        if args.action == "register" and settings.results == "poll":
            print(
                'tsbot callbacks: [thingspace] results = "poll": the bot asks ThingSpace for results and '
                "needs no callback listener, so nothing was registered",
                file=sys.stderr,
            )
            return 2
        with _client(settings) as client:
            if args.action == "list":
                _print_listeners(client.list_callbacks())
                return 0
            url = args.url or listener_url(settings)
            if not settings.callback_password:
                print(
                    "warning: TSBOT_CALLBACK_PASSWORD is empty; the bot will refuse every callback until it is set.",
                    file=sys.stderr,
                )
            for service, outcome in register_all(
                client, url, settings.callback_username, settings.callback_password
            ):
                print(f"{service:<28} {outcome}")
            print()
            _print_listeners(client.list_callbacks())
            return 0
    except ConfigError as exc:
        print(f"tsbot callbacks: {exc}", file=sys.stderr)
        return 2
    except LoginCoolingDown as exc:
        print(f"tsbot callbacks: nothing was sent: {exc.user_message}", file=sys.stderr)
        return 1
    except ThingSpaceError as exc:
        print(f"tsbot callbacks: ThingSpace said no: {exc.user_message}", file=sys.stderr)
        return 1
