"""Socket Mode against a local stand-in of Slack's Socket Mode endpoint (apps.connections.open + a WebSocket)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from bot.serving import ServerThread
from bot.socket_mode import SocketModeRunner
from tests.helpers_bot import SlackOnlyBot


class SocketEndpoint:
    """apps.connections.open hands out ws:// URLs; the socket says hello, then relays envelopes."""

    def __init__(self, *, deliver: bool = True) -> None:
        self.deliver = deliver
        self.opens = 0
        self.connections = 0
        self.outgoing: queue.Queue[dict[str, Any]] = queue.Queue()
        self.acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ws = serve(self._handle, "127.0.0.1", 0)
        self.ws_port = self._ws.socket.getsockname()[1]
        threading.Thread(target=self._ws.serve_forever, daemon=True).start()

        async def connections_open(request: Request) -> JSONResponse:
            self.opens += 1
            return JSONResponse({"ok": True, "url": f"ws://127.0.0.1:{self.ws_port}/link?n={self.opens}"})

        self.http = ServerThread(
            Starlette(routes=[Route("/api/apps.connections.open", connections_open, methods=["POST"])])
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


def _runner(bot: SlackOnlyBot, endpoint: SocketEndpoint, **options: Any) -> SocketModeRunner:
    web = WebClient(base_url=endpoint.http.url + "/api/", retry_handlers=[])
    bot.runtime.settings = bot.runtime.settings.with_overrides(slack_app_token="xapp-1-test")
    return SocketModeRunner(bot.runtime, web_client=web, **options)


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
