"""``tsbot callbacks register|list``: the bot's ThingSpace callback listeners.

``register`` points every service the bot consumes at ``TSBOT_PUBLIC_URL/thingspace/callbacks``
with the callback username and password. It is idempotent: a service already registered with
the same URL and username is left alone; one registered elsewhere is re-registered (ThingSpace
keeps one listener per service and account).

Both log in through the login gate in ``TSBOT_DB`` that the running bot uses: while it pauses
logins after refused ones, nothing is sent and the error says what to do.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bot.core.config import ConfigError, Settings
from bot.thingspace import shapes
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import LoginCoolingDown, ThingSpaceError
from bot.thingspace.models import CallbackListener
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool

__all__ = ["add_arguments", "register_all", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg = sub.add_parser(
        "register", help="register the bot's listener for every service it consumes (idempotent)"
    )
    reg.add_argument("--url", help="listener URL (default: TSBOT_PUBLIC_URL + /thingspace/callbacks)")
    sub.add_parser("list", help="list the listeners registered for the account")


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
        raise ConfigError("TSBOT_PUBLIC_URL is empty: it is the address ThingSpace calls back (https://…)")
    return settings.public_url.rstrip("/") + "/thingspace/callbacks"


def register_all(client: ThingSpaceClient, url: str, username: str, password: str) -> list[tuple[str, str]]:
    """Register every consumed service; returns (service, what happened) pairs."""
    existing: dict[str, CallbackListener] = {}
    for listener in client.list_callbacks():
        existing[listener.service] = listener
    results: list[tuple[str, str]] = []
    for service in shapes.CONSUMED_SERVICES:
        current = existing.get(service)
        same_password = not current or not current.password or hmac.compare_digest(current.password, password)
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


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
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
