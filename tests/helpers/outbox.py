"""Fixtures for the outbox relay tests: a served Slack stand-in, a database, relays that stop.

Import the ``*_fixture`` names into a test module; the fixtures are named ``standin`` (with
``served_standin``, which it resets for each test), ``pool`` and ``make_relay``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.console.standin import SlackStandIn
from bot.outbox.relay import OutboxRelay
from storage.pool import ConnectionPool

__all__ = [
    "TOKEN",
    "EventLog",
    "RelayFactory",
    "make_relay_fixture",
    "pool_fixture",
    "served_standin_fixture",
    "standin_fixture",
]

TOKEN = "xoxb-outbox-test"

#: Fast settings for tests whose subject is not the pacing itself.
FAST: dict[str, Any] = {
    "per_channel_interval": 0.02,
    "update_interval": 0.05,
    "backoff_base": 0.05,
    "backoff_cap": 0.2,
    "poll_interval": 0.1,
    "timeout": 2.0,
    "lease": 5.0,
}


class EventLog:
    """Collects ``on_event`` calls from relay threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, info: Mapping[str, Any]) -> None:
        with self._lock:
            self.events.append((kind, dict(info)))

    def kinds(self, key: str | None = None) -> list[str]:
        with self._lock:
            return [k for k, info in self.events if key is None or info["key"] == key]


RelayFactory = Callable[..., OutboxRelay]


@pytest.fixture(name="served_standin", scope="module")
def served_standin_fixture() -> Iterator[SlackStandIn]:
    """One stand-in (channels C0A alpha and C0B bravo) served for a whole test module."""
    stand_in = SlackStandIn(bot_token=TOKEN)
    stand_in.add_channel("C0A", "alpha")
    stand_in.add_channel("C0B", "bravo")
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(name="standin")
def standin_fixture(served_standin: SlackStandIn) -> SlackStandIn:
    """The module's stand-in, fresh: no messages, calls, faults or response URLs."""
    served_standin.reset()
    return served_standin


@pytest.fixture(name="pool")
def pool_fixture(tmp_path: Path) -> Iterator[ConnectionPool]:
    connections = ConnectionPool(tmp_path / "tsbot.db", synchronous="NORMAL")
    yield connections
    connections.close()


@pytest.fixture(name="make_relay")
def make_relay_fixture(standin: SlackStandIn, pool: ConnectionPool) -> Iterator[RelayFactory]:
    """``make_relay(**overrides)`` starts a relay on the test database; all are stopped after."""
    relays: list[OutboxRelay] = []

    def factory(**overrides: Any) -> OutboxRelay:
        options: dict[str, Any] = {**FAST, "slack_api_url": standin.api_url, "bot_token": TOKEN, **overrides}
        relay = OutboxRelay(pool, **options)
        relays.append(relay)
        return relay.start()

    yield factory
    for relay in relays:
        relay.stop()
