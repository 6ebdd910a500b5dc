"""Socket Mode against a local stand-in of Slack's Socket Mode endpoint (apps.connections.open + a WebSocket)."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from bot.core.logs import capture_logs
from bot.render import alert_cards
from bot.serving import ServerThread
from bot.slack.socket_mode import SocketModeRunner
from storage import alerts, outbox
from storage.db import write
from tests.helpers.bot import SlackOnlyBot
from tests.helpers.stacks import served_sandbox

ROOT = Path(__file__).resolve().parents[2]


class SocketEndpoint:
    """apps.connections.open hands out ws:// URLs; the socket says hello, then relays envelopes.

    ``http_port`` serves apps.connections.open on a given port (to bring Slack up where a bot has
    been failing to reach it); ``refuse`` answers it with that Slack error instead of a URL.
    """

    def __init__(self, *, deliver: bool = True, http_port: int = 0, refuse: str | None = None) -> None:
        self.deliver = deliver
        self.refuse = refuse
        self.opens = 0
        self.connections = 0
        self.outgoing: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ws = serve(self._handle, "127.0.0.1", 0)
        self.ws_port = self._ws.socket.getsockname()[1]
        threading.Thread(target=self._ws.serve_forever, daemon=True).start()

        async def connections_open(request: Request) -> JSONResponse:
            self.opens += 1
            if self.refuse:
                return JSONResponse({"ok": False, "error": self.refuse})
            return JSONResponse({"ok": True, "url": f"ws://127.0.0.1:{self.ws_port}/link?n={self.opens}"})

        self.http = ServerThread(
            Starlette(routes=[Route("/api/apps.connections.open", connections_open, methods=["POST"])]),
            port=http_port,
        )
        self.http.start()

    def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        if self.deliver:
            ws.send(
                json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0TSBOT"}})
            )
        while True:
            try:
                envelope = self.outgoing.get(timeout=0.05)
            except queue.Empty:
                envelope = None
            if envelope is not None and self.deliver:
                ws.send(json.dumps(envelope))
            try:
                raw = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            self.acks.put(json.loads(raw))

    def close(self) -> None:
        self._ws.shutdown()
        self.http.stop()


@pytest.fixture
def endpoint() -> Iterator[SocketEndpoint]:
    server = SocketEndpoint()
    yield server
    server.close()


def _runner(bot: SlackOnlyBot, endpoint: SocketEndpoint | str, **options: Any) -> SocketModeRunner:
    url = endpoint if isinstance(endpoint, str) else endpoint.http.url
    web = WebClient(base_url=url + "/api/", retry_handlers=[])
    bot.runtime.settings = bot.runtime.settings.with_overrides(slack_app_token="xapp-1-test")
    return SocketModeRunner(bot.runtime.bolt, bot.runtime.settings, web_client=web, **options)


def test_slash_command_over_socket_mode_is_acked_with_the_reply(
    slack_bot: SlackOnlyBot, endpoint: SocketEndpoint
) -> None:
    """A slash command envelope is answered on the socket with the same ephemeral reply as over HTTP."""
    runner = _runner(slack_bot, endpoint).start()
    try:
        endpoint.outgoing.put(
            {
                "envelope_id": "env-1",
                "type": "slash_commands",
                "accepts_response_payload": True,
                "payload": {
                    "command": "/ts",
                    "text": "help",
                    "user_id": "U0NOC1",
                    "channel_id": "C0NOC",
                    "team_id": "T0TSBOT",
                    "response_url": "http://127.0.0.1:9/x",
                    "trigger_id": "1.2",
                },
            }
        )
        ack = endpoint.acks.get(timeout=10)
        assert ack["envelope_id"] == "env-1"
        assert "diag" in ack["payload"]["text"] and "suspend" not in ack["payload"]["text"]
        assert runner.alive()
    finally:
        runner.close()


def test_watchdog_reconnects_a_silent_socket(slack_bot: SlackOnlyBot) -> None:
    """A socket that stays open but delivers nothing is replaced by a new endpoint."""
    silent = SocketEndpoint(deliver=False)
    try:
        runner = _runner(slack_bot, silent, stale_after=0.5, check_every=0.1).start()
        try:
            deadline = time.monotonic() + 10
            while silent.opens < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert runner.reconnects >= 1
            assert silent.opens >= 2
        finally:
            runner.close()
    finally:
        silent.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _readyz(bot: SlackOnlyBot) -> tuple[int, dict[str, Any]]:
    response = httpx.get(bot.server.url + "/readyz", timeout=5)
    return response.status_code, response.json()


def test_slack_unreachable_at_start_is_retried_with_backoff_and_readyz_waits(slack_bot: SlackOnlyBot) -> None:
    """Slack cannot be reached: the runner keeps trying (each failure logged with the wait before the
    next), the process lives on, and /readyz reports the socket not ready; once Slack answers, the
    socket connects, /readyz turns ready and commands flow."""
    port = _free_port()  # nothing listens here yet
    runner = _runner(slack_bot, f"http://127.0.0.1:{port}", retry_first=0.05, retry_max=0.2)
    slack_bot.runtime.add_part(runner)  # what `tsbot serve --socket-mode` does
    with capture_logs("INFO") as logs:
        runner.start()
        assert _wait(lambda: runner.attempts >= 3)
        status, body = _readyz(slack_bot)
        assert status == 503 and body["checks"]["SocketModeRunner"] is False
        assert body["checks"]["worker"] is True  # only the socket is not ready
        endpoint = SocketEndpoint(http_port=port)
        try:
            assert runner.wait_connected(10), "did not connect once Slack answered"
            assert _wait(lambda: _readyz(slack_bot)[0] == 200)
            endpoint.outgoing.put(
                {
                    "envelope_id": "env-late",
                    "type": "slash_commands",
                    "accepts_response_payload": True,
                    "payload": {
                        "command": "/ts",
                        "text": "help",
                        "user_id": "U012ADMIN",
                        "channel_id": "C0OPS",
                        "team_id": "T0TSBOT",
                        "response_url": "http://127.0.0.1:9/x",
                        "trigger_id": "1.3",
                    },
                }
            )
            assert endpoint.acks.get(timeout=10)["envelope_id"] == "env-late"
        finally:
            runner.stop()
            endpoint.close()
    failures = [line for line in logs.lines() if "could not connect to Slack" in line["message"]]
    assert len(failures) >= 2
    assert "retrying in" in failures[0]["message"] and "attempt 1" in failures[0]["message"]
    assert failures[0]["level"] == "error" and failures[1]["level"] == "warning"
    assert any("Socket Mode connected to Slack after" in line["message"] for line in logs.lines())
    assert "Traceback" not in logs.text


def test_a_refused_app_token_says_which_setting_to_fix(slack_bot: SlackOnlyBot) -> None:
    """apps.connections.open answering invalid_auth is named as a SLACK_APP_TOKEN problem, and retried."""
    endpoint = SocketEndpoint(refuse="invalid_auth")
    runner = _runner(slack_bot, endpoint, retry_first=0.05, retry_max=0.1)
    try:
        with capture_logs("INFO") as logs:
            runner.start()
            assert _wait(lambda: endpoint.opens >= 2)
            assert not runner.alive()
        refused = [line for line in logs.lines() if "SLACK_APP_TOKEN" in line["message"]]
        assert refused and "invalid_auth" in refused[0]["message"] and "xapp-" in refused[0]["message"]
        assert {line["level"] for line in refused} == {"error"}
        assert "xapp-1-test" not in logs.text  # the token itself is never logged
    finally:
        runner.stop()
        endpoint.close()


def test_a_button_click_over_socket_mode_acknowledges_the_alert(
    slack_bot: SlackOnlyBot, endpoint: SocketEndpoint
) -> None:
    """Acknowledge on an alert card, clicked over the socket: acked on the socket, the alert is
    acknowledged by the clicker, audited, and the card is updated in place in Slack."""
    device = "iccid:89148000000800139708"
    db = slack_bot.runtime.pool.get()
    now = time.time()
    with write(db):
        alert = alerts.insert_alert(
            db, device=device, condition="unreachable", channel="C0OPS", down_since=now - 7200, now=now
        )
        assert alert is not None
        key = f"alert:{alert.id}"
        alerts.set_card(db, [alert.id], key)
        text, body = alert_cards.alert_card(
            alerts.get(db, alert.id),
            label="tracker-1",
            watch=None,
            now=now,
            tz=UTC,  # type: ignore[arg-type]
        )
        outbox.enqueue_post(db, key=key, channel="C0OPS", text=text, blocks=body)
    slack_bot.runtime.wake()
    card = slack_bot.standin.wait_for(lambda m: "tracker-1" in m.text, timeout=10)
    runner = _runner(slack_bot, endpoint).start()
    try:
        endpoint.outgoing.put(
            {
                "envelope_id": "env-click",
                "type": "interactive",
                "accepts_response_payload": False,
                "payload": {
                    "type": "block_actions",
                    "api_app_id": "A0TSBOT",
                    "team": {"id": "T0TSBOT", "domain": "tsbot"},
                    "user": {"id": "U0OPS1", "username": "omar", "team_id": "T0TSBOT"},
                    "channel": {"id": "C0OPS", "name": "ops"},
                    "container": {"type": "message", "message_ts": card.ts, "channel_id": "C0OPS"},
                    "message": {"ts": card.ts, "text": card.text},
                    "response_url": slack_bot.standin.new_response_url("C0OPS", "U0OPS1", message_ts=card.ts),
                    "trigger_id": "1.4",
                    "actions": [
                        {
                            "type": "button",
                            "action_id": "ts:alert-ack",
                            "block_id": f"alert:{alert.id}",
                            "value": str(alert.id),
                            "action_ts": "1.5",
                        }
                    ],
                },
            }
        )
        assert endpoint.acks.get(timeout=10)["envelope_id"] == "env-click"
        updated = slack_bot.standin.wait_for(
            lambda m: m.ts == card.ts and "Acknowledged by <@U0OPS1>" in json.dumps(m.blocks), timeout=10
        )
        assert updated.channel == "C0OPS"
        acked = alerts.get(db, alert.id)
        assert acked is not None and (acked.state, acked.acked_by) == ("acknowledged", "U0OPS1")
        rows = db.execute("SELECT actor, outcome FROM audit_log WHERE verb = 'alert.ack'").fetchall()
        assert [tuple(r) for r in rows] == [("U0OPS1", "ok")]
    finally:
        runner.close()


def test_app_home_opened_over_socket_mode_publishes_the_home_tab(
    slack_bot: SlackOnlyBot, endpoint: SocketEndpoint
) -> None:
    """app_home_opened delivered over the socket is acked there and the Home tab is published."""
    runner = _runner(slack_bot, endpoint).start()
    try:
        endpoint.outgoing.put(
            {
                "envelope_id": "env-home",
                "type": "events_api",
                "accepts_response_payload": False,
                "payload": {
                    "token": "x",
                    "team_id": "T0TSBOT",
                    "api_app_id": "A0TSBOT",
                    "type": "event_callback",
                    "event_id": "EvHOME1",
                    "event_time": 1,
                    "event": {
                        "type": "app_home_opened",
                        "user": "U012ADMIN",
                        "channel": "D0HOME",
                        "tab": "home",
                    },
                },
            }
        )
        assert endpoint.acks.get(timeout=10)["envelope_id"] == "env-home"
        assert _wait(lambda: slack_bot.standin.home_view("U012ADMIN") is not None)
        view = json.dumps(slack_bot.standin.home_view("U012ADMIN"))
        assert "Your role here: *admin*" in view and "/ts cancel-location" in view
    finally:
        runner.close()


@pytest.fixture
def thingspace_url() -> Iterator[str]:
    """The sandbox, served: ThingSpace answers, so Slack is the only party the bot cannot reach.

    (Against a closed port the bot's start-up directory sync gives up after three retries, 0–3.5 s
    of jittered backoff in all, and logs that failure with its traceback: the test below then
    passed only when Slack came up and the process was stopped before that, and failed under load.)
    """
    with served_sandbox(devices=20) as (_sandbox, url):
        yield url


def test_serve_socket_mode_waits_for_slack_without_a_traceback(tmp_path: Path, thingspace_url: str) -> None:
    """`tsbot serve --socket-mode` with Slack unreachable: the process stays up and serves HTTP,
    /readyz says the socket is not ready, the log says it is retrying; once Slack is reachable the
    socket connects and /readyz turns ready. No traceback anywhere."""
    slack_port, bot_port = _free_port(), _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "THINGSPACE_", "TSBOT_"))},
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-socket-test",
        "SLACK_SIGNING_SECRET": "socket-test-secret",
        "SLACK_APP_TOKEN": "xapp-1-socket-test",
        "SLACK_API_URL": f"http://127.0.0.1:{slack_port}/api/",
        "THINGSPACE_BASE_URL": thingspace_url,
        "THINGSPACE_CLIENT_ID": "sandbox-client",
        "THINGSPACE_CLIENT_SECRET": "sandbox-secret",
        "THINGSPACE_USERNAME": "sandbox-user",
        "THINGSPACE_PASSWORD": "sandbox-pass",
        "THINGSPACE_ACCOUNT": "0000123456-00001",
        "TSBOT_DB": str(tmp_path / "bot.db"),
        "TSBOT_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--socket-mode", "--port", str(bot_port)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    endpoint: SocketEndpoint | None = None
    try:

        def readyz() -> tuple[int, dict[str, Any]] | None:
            try:
                response = httpx.get(f"http://127.0.0.1:{bot_port}/readyz", timeout=2)
            except httpx.HTTPError:
                return None
            return response.status_code, response.json()

        assert _wait(lambda: readyz() is not None, timeout=30), log_path.read_text()
        assert _wait(lambda: "retrying in" in log_path.read_text(), timeout=15)
        answer = readyz()
        assert answer is not None and answer[0] == 503
        assert answer[1]["checks"]["SocketModeRunner"] is False
        assert proc.poll() is None
        endpoint = SocketEndpoint(http_port=slack_port)
        assert _wait(lambda: (readyz() or (0, {}))[0] == 200, timeout=30), log_path.read_text()[-3000:]
        assert endpoint.connections >= 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if endpoint is not None:
            endpoint.close()
    output = log_path.read_text()
    assert "Traceback" not in output
    assert "Socket Mode connected to Slack after" in output
    for secret in (
        "xapp-1-socket-test",
        "xoxb-socket-test",
        "sandbox-secret",
        "sandbox-pass",
        "socket-test-secret",
    ):
        assert secret not in output
