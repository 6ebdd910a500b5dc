"""Test helpers for the ThingSpace client: a sandbox served over loopback, a client for it, a
callback listener that records what it receives, and a clock tests can move."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.sandbox import ManualClock, Sandbox
from bot.serving import ServerThread
from bot.thingspace import ThingSpaceClient
from tests.helpers.stacks import served_sandbox

ACCOUNT = "0000123456-00001"
CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"
USERNAME, PASSWORD = "sandbox-user", "sandbox-pass"
START = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
LOGIN_PATH = "/m2m/v1/session/login"
TOKEN_PATH = "/ts/v1/oauth2/token"


class MovableClock:
    """A monotonic-seconds clock for the client that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Running:
    """A sandbox on a ManualClock, served on 127.0.0.1."""

    sandbox: Sandbox
    clock: ManualClock
    url: str

    def requests(self, path: str, method: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's request log for ``path`` (exact or glob), via its control route."""
        params = {"path": path} | ({"method": method} if method else {})
        answer = httpx.get(f"{self.url}/_sandbox/requests", params=params)
        answer.raise_for_status()
        entries: list[dict[str, Any]] = answer.json()
        return entries

    def count(self, path: str, method: str | None = None) -> int:
        return len(self.requests(path, method))

    def fault(self, **rule: Any) -> None:
        answer = httpx.post(f"{self.url}/_sandbox/faults", json=rule)
        answer.raise_for_status()

    def advance(self, seconds: float) -> None:
        """Move the sandbox's clock (sessions idle out, tokens expire)."""
        self.sandbox.advance_clock(seconds)


@contextmanager
def running_sandbox(**options: Any) -> Iterator[Running]:
    clock = ManualClock(START)
    options.setdefault("callback_retry_interval", 0.2)
    with served_sandbox(clock=clock, **options) as (sandbox, url):
        yield Running(sandbox, clock, url)


def client_for(url: str, **overrides: Any) -> ThingSpaceClient:
    """A client with the sandbox's default credentials and near-zero retry backoff."""
    options: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "account": ACCOUNT,
        "backoff": 0.001,
        "backoff_max": 0.01,
    }
    options.update(overrides)
    return ThingSpaceClient(url, **options)


@dataclass
class Listener:
    """A callback listener (Starlette on a ServerThread) that records every body it receives."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
        """Wait until ``count`` bodies containing ``match`` (top-level equality) arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [b for b in self.bodies if all(b.get(k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@contextmanager
def callback_listener() -> Iterator[Listener]:
    holder: list[Listener] = []

    async def receive(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        with holder[0].lock:
            holder[0].bodies.append(body)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/cb", receive, methods=["POST"])])
    server = ServerThread(app).start()
    holder.append(Listener(server.url + "/cb"))
    try:
        yield holder[0]
    finally:
        server.stop()
