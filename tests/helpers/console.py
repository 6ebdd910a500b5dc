"""Test helpers for the local Slack (``bot/console``): a served stand-in, a settable clock, and a
small loopback receiver that records what the driver sends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bot.console import SlackStandIn
from bot.serving import ServerThread

TOKEN = "xoxb-tsbot-demo"
SECRET = "test-signing-secret"


class FakeClock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, start: float = 1_732_550_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Received:
    """One request the receiver got, as raw as it came."""

    body: bytes
    headers: dict[str, str]


class Receiver:
    """A Starlette app standing in for the bot's ``/slack/events``: records and answers 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[Received] = []
        self.app = Starlette(routes=[Route("/slack/events", self._events, methods=["POST"])])

    async def _events(self, request: Request) -> Response:
        received = Received(body=await request.body(), headers=dict(request.headers))
        with self._lock:
            self.requests.append(received)
        return PlainTextResponse("", status_code=200)

    @property
    def last(self) -> Received:
        with self._lock:
            return self.requests[-1]


@pytest.fixture(scope="module")
def served_standin() -> Iterator[SlackStandIn]:
    """One stand-in served on loopback for a whole test module (reset per test by ``standin``)."""
    standin = SlackStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def standin(served_standin: SlackStandIn) -> SlackStandIn:
    """The module's stand-in, fresh: no messages, calls, faults or response URLs."""
    served_standin.reset()
    return served_standin


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    """A real slack_sdk WebClient pointed at the stand-in."""
    return WebClient(token=TOKEN, base_url=standin.api_url)


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    """A recording receiver on loopback and its events URL."""
    receiver = Receiver()
    server = ServerThread(receiver.app).start()
    yield receiver, server.url + "/slack/events"
    server.stop()
