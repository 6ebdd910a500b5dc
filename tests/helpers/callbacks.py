"""Test helpers for the callback intake and inbox worker.

* :func:`callback` builds a ThingSpace callback body in the shapes of ``bot.thingspace.shapes``
  (what the sandbox sends), with the echoed credentials;
* :func:`send_callbacks` POSTs bodies at a given concurrency over keep-alive connections
  (``http.client``: light enough that the sender is not what a benchmark measures);
* :class:`CallbackBot` is the real bot (``Runtime``) on loopback with the Slack stand-in, callback
  credentials and an ops channel, but no sandbox: requests are seeded in its database the way
  ``commands.execute`` records them after ThingSpace accepted them;
* :func:`seed_request` does that seeding (a ``ts_requests`` row, one device row each, the
  ``req:<id>`` root post in the channel);
* :class:`BotProcess` runs ``python -m bot serve`` in a child process (its own interpreter, so
  it can be killed with SIGKILL, and so a benchmark's sender does not share its lock) against a
  sandbox and a stand-in served by the test; :func:`read_db` reads its database read-only.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.app import Runtime
from bot.console.driver import SlackDriver
from bot.console.records import Message
from bot.console.standin import SlackStandIn
from bot.core.config import Settings
from bot.local_stack import DEMO_GRANTS
from bot.serving import ServerThread
from bot.thingspace import shapes
from bot.thingspace.client import ThingSpaceClient
from storage import directory, outbox, requests
from storage.db import write

__all__ = [
    "CALLBACK_PASSWORD",
    "CALLBACK_USER",
    "BotProcess",
    "CallbackBot",
    "callback",
    "callback_bot_fixture",
    "read_db",
    "seed_request",
    "send_callbacks",
]

CALLBACK_USER = "tsbot-callbacks"
CALLBACK_PASSWORD = "c4llb4ck-p4ss-9f1e7d2a"
OPS = "C0OPS"


def callback(
    request_id: str,
    device: str,
    *,
    outcome: str = "suspend",
    count: int = 1,
    username: str = CALLBACK_USER,
    password: str = CALLBACK_PASSWORD,
    fault: tuple[str, str] | None = None,
    resume_date: str = "2026-03-15T00:00:00Z",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A callback for *device* (``kind:id``); *outcome* picks the payload: ``suspend``,
    ``active``, ``cancel``, ``sms-sent``, ``sms-delivered``, ``sms-expired``, ``reachable``,
    ``external``, ``resume-warning``; *fault* = (faultcode, faultstring) makes it a failure."""
    kind, _, value = device.partition(":")
    body: dict[str, Any] = {
        "username": username,
        "password": password,
        "requestId": request_id,
        "deviceIds": [{"id": value, "kind": kind}],
        "status": "Success",
        "callbackCount": count,
        "maxCallbackThreshold": 4,
    }
    response: dict[str, Any] = {}
    if outcome == "suspend":
        response = {shapes.STATE_CHANGE: {"state": "suspend", "resumeDate": resume_date}}
    elif outcome == "active":
        response = {shapes.STATE_CHANGE: {"state": "active"}}
    elif outcome == "cancel":
        response = {shapes.CANCEL_LOCATION: {"status": "Completed", "completedAt": "2026-01-10T03:12:00Z"}}
    elif outcome == "sms-sent":
        response = {shapes.SMS_SENT: {"status": "Sent"}}
    elif outcome == "sms-delivered":
        response = {shapes.SMS_DELIVERY: {"status": "Delivered"}}
    elif outcome == "sms-expired":
        response = {shapes.SMS_DELIVERY: {"status": "Expired"}}
    elif outcome == "reachable":
        body[shapes.DIAGNOSTICS] = {
            "monitorType": "REACHABLE_FOR_DATA",
            "reachabilityStatus": shapes.REACHABLE,
            "eventTime": "2026-01-10T11:59:30Z",
        }
    elif outcome == "external":
        response = {
            shapes.EXTERNAL_CHANGE: {
                "changeType": "Suspend",
                "state": "suspend",
                "changedAt": "2026-01-10T09:30:00Z",
                "changedBy": "portal user",
            }
        }
    elif outcome == "resume-warning":
        response = {
            shapes.RESUME_TRACKING: {
                "resumeDate": "2026-03-15T00:00:00Z",
                "comment": "Device will be auto resumed on - 3/15/2026 12:00:00 AM",
            }
        }
    else:
        raise ValueError(f"unknown outcome {outcome!r}")
    if response:
        body["deviceResponse"] = response
    if fault is not None:
        body.pop("deviceResponse", None)
        body["status"] = "Failed"
        body["faultResponse"] = {"faultcode": fault[0], "faultstring": fault[1]}
    body.update(extra or {})
    return body


def send_callbacks(
    url: str,
    bodies: Sequence[bytes | dict[str, Any]],
    *,
    concurrency: int = 8,
    on_answer: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> list[int]:
    """POST each body once (keep-alive, *concurrency* connections); returns the status per body
    (0 when the connection failed). ``on_answer(index, status)`` is called as answers arrive."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    payloads = [b if isinstance(b, bytes) else json.dumps(b).encode() for b in bodies]
    statuses = [0] * len(payloads)
    next_index = iter(range(len(payloads)))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while stop is None or not stop.is_set():
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                try:
                    conn.request("POST", path, payloads[i], {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    statuses[i] = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                    statuses[i] = 0
                if on_answer is not None:
                    on_answer(i, statuses[i])
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def seed_request(
    runtime_or_db: Runtime | Any,
    *,
    verb: str,
    devices: Sequence[str],
    channel: str = OPS,
    actor: str = "U012ADMIN",
    request_id: str | None = None,
    reason: str = "",
    created_at: float | None = None,
    detail: dict[str, Any] | None = None,
    response_url: str = "",
) -> str:
    """Record a request as ``commands.execute`` does once ThingSpace accepted it; returns its id."""
    db = runtime_or_db.pool.get() if isinstance(runtime_or_db, Runtime) else runtime_or_db
    request_id = request_id or str(uuid.uuid4())
    root = f"req:{request_id}"
    doing = {
        "suspend": ":double_vertical_bar: <@{actor}> is suspending",
        "resume": ":arrows_counterclockwise: <@{actor}> is resuming",
        "sms": ":speech_balloon: <@{actor}> sent an SMS to",
        "cancel-location": ":satellite_antenna: <@{actor}> asked to cancel the location of",
        "reach": ":satellite_antenna: <@{actor}> asked whether this is reachable:",
    }[verb].format(actor=actor)
    headline = f"{doing} {len(devices):,} device(s)"
    with write(db):
        outbox.enqueue_post(db, key=root, channel=channel, text=headline)
        requests.add_request(
            db,
            request_id=request_id,
            verb=verb,
            actor=actor,
            channel=channel,
            devices=list(devices),
            thread_key=root,
            reason=reason,
            detail=detail,
            response_url=response_url,
            now=created_at,
        )
    if isinstance(runtime_or_db, Runtime):
        runtime_or_db.wake()
    return request_id


def iccids(n: int, start: int = 0) -> list[str]:
    """``n`` distinct 20-digit ICCID device keys."""
    return [f"iccid:8914800000{start + i:010d}" for i in range(n)]


class CallbackBot:
    """The real bot on loopback with the Slack stand-in, without the sandbox."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.standin = SlackStandIn().start()
        for channel in ("C0A", "C0B", "C0C", "C0D"):
            self.standin.add_channel(channel)
        self.settings = Settings(
            slack_bot_token=self.standin.bot_token,
            slack_signing_secret="test-signing-secret",
            slack_api_url=self.standin.api_url,
            thingspace_base_url="http://127.0.0.1:9",  # these tests never reach ThingSpace
            thingspace_client_id="c",
            thingspace_client_secret="s",
            thingspace_username="u",
            thingspace_password="p",
            thingspace_account="0000123456-00001",
            callback_username=CALLBACK_USER,
            callback_password=CALLBACK_PASSWORD,
            public_url="https://tsbot.example.com",  # results come by callback (not polled)
            db_path=str(tmp_path / "bot.db"),
            grants=DEMO_GRANTS,
            ops_channel=OPS,
        ).with_overrides(**overrides)
        self.runtime = Runtime(self.settings, sync_directory_at_start=False, start_scheduler=False)
        self.server = ServerThread(self.runtime.web).start()
        self.runtime.start()
        self.url = self.server.url + "/thingspace/callbacks"

    @property
    def db(self) -> Any:
        return self.runtime.pool.get()

    def post(self, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
        """One callback POST; (status, JSON answer)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
        try:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            conn.request("POST", parts.path, payload, {"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, json.loads(raw) if raw else {}

    def add_devices(self, devices: Sequence[dict[str, Any]]) -> None:
        with write(self.db):
            directory.upsert_devices(self.db, devices)

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until the inbox is drained and every outbox row is sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.runtime.settled():
                return
            time.sleep(0.05)
        raise TimeoutError("the bot did not settle")

    def root(self, request_id: str, channel: str = OPS) -> Message:
        """The request's root message as Slack has it now."""
        ref = outbox.message_ref(self.db, f"req:{request_id}")
        assert ref is not None, "the root message was not posted"
        return self.standin.message(ref[0], ref[1])

    def thread(self, request_id: str) -> list[Message]:
        """The replies in the request's results thread."""
        ref = outbox.message_ref(self.db, f"req:{request_id}")
        assert ref is not None, "the root message was not posted"
        return self.standin.thread(ref[0], ref[1])[1:]

    def close(self) -> None:
        self.server.stop()
        self.runtime.stop()
        self.standin.stop()


@pytest.fixture(name="cb_bot")
def callback_bot_fixture(tmp_path: Path) -> Iterator[CallbackBot]:
    bot = CallbackBot(tmp_path)
    try:
        yield bot
    finally:
        bot.close()


ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "callbacks-test-signing-secret"
CONFIG = """
[grants]
admin = ["U012ADMIN"]
operator = ["S0ONCALL"]
viewer = ["C0NOC"]

[channels]
ops = "C0OPS"

[limits]
approval_size = {approval_size}
"""


def read_db(path: Path | str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on the bot's database, opened read-only (the bot may be running)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in conn.execute(sql, list(params)).fetchall()]
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BotProcess:
    """``python -m bot serve`` in a child process, configured through the environment."""

    def __init__(
        self,
        workdir: Path,
        *,
        standin: SlackStandIn,
        thingspace_url: str,
        approval_size: int = 10_000,
        db_path: Path | None = None,
    ) -> None:
        """*db_path* (default ``workdir/bot.db``) lets two processes share one database."""
        self.workdir = workdir
        self.db_path = db_path or workdir / "bot.db"
        self.standin = standin
        config = workdir / "tsbot.toml"
        config.write_text(CONFIG.format(approval_size=approval_size), encoding="utf-8")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "THINGSPACE_", "TSBOT_"))},
            "PYTHONPATH": str(ROOT),
            "SLACK_BOT_TOKEN": standin.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": standin.api_url,
            "THINGSPACE_BASE_URL": thingspace_url,
            "THINGSPACE_CLIENT_ID": "sandbox-client",
            "THINGSPACE_CLIENT_SECRET": "sandbox-secret",
            "THINGSPACE_USERNAME": "sandbox-user",
            "THINGSPACE_PASSWORD": "sandbox-pass",
            "THINGSPACE_ACCOUNT": "0000123456-00001",
            "TSBOT_CALLBACK_USERNAME": CALLBACK_USER,
            "TSBOT_CALLBACK_PASSWORD": CALLBACK_PASSWORD,
            "TSBOT_DB": str(self.db_path),
            "TSBOT_CONFIG": str(config),
            "TSBOT_LOG_LEVEL": "WARNING",
            "TSBOT_DB_SYNCHRONOUS": "FULL",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def callback_url(self) -> str:
        return self.url + "/thingspace/callbacks"

    def driver(self) -> SlackDriver:
        return SlackDriver(self.url + "/slack/events", SIGNING_SECRET, self.standin)

    def register_callbacks(self) -> None:
        """Register this bot's callback URL with ThingSpace (the sandbox), as ``tsbot callbacks
        register`` would, with the credentials the bot checks."""
        with ThingSpaceClient(
            self.env["THINGSPACE_BASE_URL"],
            client_id=self.env["THINGSPACE_CLIENT_ID"],
            client_secret=self.env["THINGSPACE_CLIENT_SECRET"],
            username=self.env["THINGSPACE_USERNAME"],
            password=self.env["THINGSPACE_PASSWORD"],
            account=self.env["THINGSPACE_ACCOUNT"],
        ) as thingspace:
            thingspace.register_callback(
                shapes.CARRIER_SERVICE, self.callback_url, CALLBACK_USER, CALLBACK_PASSWORD
            )

    def start(self, timeout: float = 30.0) -> None:
        """Start on a fresh port and wait until ``/healthz`` answers."""
        self.port = _free_port()
        self.starts += 1
        log = (self.workdir / f"bot-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"the bot did not answer /healthz within {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        logs = sorted(self.workdir.glob("bot-*.log"))
        return logs[-1].read_text(errors="replace")[-n:] if logs else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return read_db(self.db_path, sql, params)

    def wait_until(self, sql: str, predicate: Callable[[Any], bool], timeout: float = 60.0) -> Any:
        """Poll a one-value query until *predicate* holds for its value; returns the value."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.query(sql)[0][0]
            except sqlite3.OperationalError:  # tables not created yet
                value = None
            if value is not None and predicate(value):
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{sql!r} stayed at {value!r}; bot log: {self.log_tail()}")

    def settled(self, timeout: float = 60.0) -> None:
        """Wait until the inbox is drained and the outbox has nothing left to send."""
        self.wait_until(
            "SELECT (SELECT count(*) FROM inbox WHERE state = 'received') "
            "+ (SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending'))",
            lambda n: n == 0,
            timeout,
        )
