"""Fixtures for the sandbox tests: a sandbox on loopback, an authenticated client, a listener.

* :func:`running_sandbox` builds a sandbox on a :class:`ManualClock` and serves it with
  :class:`ServerThread`; :class:`Api` logs in (OAuth + session) and calls it with httpx.
* :class:`CallbackListener` is a small Starlette app on loopback that records every callback and
  answers with a status chosen per message (e.g. 500 on the first attempt, then 200).
* :func:`wait_until` polls a condition with a deadline (a bounded wait, not a timing assertion).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox import ManualClock, Sandbox
from bot.serving import ServerThread
from tests.helpers.stacks import served_sandbox

ACCOUNT = "0000123456-00001"
START = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy; raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def running_sandbox(**options: Any) -> Iterator[tuple[Sandbox, str, ManualClock]]:
    """A sandbox on a ManualClock (starting at :data:`START`), served on loopback."""
    clock = options.pop("clock", None) or ManualClock(START)
    options.setdefault("callback_retry_interval", 0.05)
    with served_sandbox(clock=clock, **options) as (sandbox, url):
        yield sandbox, url, clock


class Api:
    """An httpx client that holds an OAuth token and a session, like the bot's client does."""

    def __init__(self, base_url: str, *, login: bool = True) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10.0)
        self.token = ""
        self.session = ""
        if login:
            self.login()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def oauth(self, client_id: str = "sandbox-client", secret: str = "sandbox-secret") -> httpx.Response:
        return self.http.post(
            "/ts/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )

    def login(self, username: str = "sandbox-user", password: str = "sandbox-pass") -> httpx.Response:
        if not self.token:
            self.token = self.oauth().json()["access_token"]
        response = self.http.post(
            "/m2m/v1/session/login",
            json={"username": username, "password": password},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if response.status_code == 200:
            self.session = response.json()["sessionToken"]
        return response

    def relogin(self) -> None:
        """A fresh OAuth token and session (after the test clock jumped past their lifetimes)."""
        self.token = ""
        assert self.login().status_code == 200

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "VZ-M2M-Token": self.session}

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, json=body if body is not None else {}, headers=self.headers, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=self.headers)

    def delete(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.request("DELETE", path, json=body, headers=self.headers)

    # -- common calls --------------------------------------------------------------------------
    def diagnostics(self, device_id: str, kind: str = "iccid") -> dict[str, dict[str, str]]:
        """Extended diagnostics as {category: {key: value}}."""
        response = self.post(
            "/m2m/v1/devices/extendeddiagnostics/actions/list",
            {"accountName": ACCOUNT, "deviceList": [{"id": device_id, "kind": kind}]},
        )
        assert response.status_code == 200, response.text
        return {
            c["categoryName"]: {a["key"]: a["value"] for a in c["extendedAttributes"]}
            for c in response.json()["categories"]
        }

    def register(self, service: str, url: str, username: str = "cb-user", password: str = "cb-pass") -> None:
        response = self.post(
            f"/m2m/v1/callbacks/{ACCOUNT}",
            {"name": service, "url": url, "username": username, "password": password},
        )
        assert response.status_code == 200, response.text

    def action(self, operation: str, *ids: tuple[str, str], **extra: Any) -> str:
        """Suspend or restore devices given as (kind, id); returns the requestId."""
        body = {
            "accountName": ACCOUNT,
            "devices": [{"deviceIds": [{"id": i, "kind": k}]} for k, i in ids],
            **extra,
        }
        response = self.post(f"/m2m/v1/devices/actions/{operation}", body)
        assert response.status_code == 200, response.text
        return str(response.json()["requestId"])


class CallbackListener:
    """Records callbacks; ``answer(body) -> status`` chooses the reply (200 by default)."""

    def __init__(self, answer: Callable[[dict[str, Any]], int] | None = None) -> None:
        self.answer = answer or (lambda body: 200)
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = ServerThread(Starlette(routes=[Route("/cb", self._endpoint, methods=["POST"])]))

    async def _endpoint(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.received.append(body)
        return Response(b'{"ok":true}', status_code=self.answer(body), media_type="application/json")

    @property
    def url(self) -> str:
        return self.server.url + "/cb"

    def bodies(self, predicate: Callable[[dict[str, Any]], bool] = lambda b: True) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.received if predicate(b)]

    def wait_for(
        self, count: int, predicate: Callable[[dict[str, Any]], bool] = lambda b: True
    ) -> list[dict[str, Any]]:
        return wait_until(lambda: (found := self.bodies(predicate)) and len(found) >= count and found)

    def __enter__(self) -> Self:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def of_request(request_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body.get("requestId") == request_id
