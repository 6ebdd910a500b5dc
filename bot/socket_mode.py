"""``tsbot serve --socket-mode``: Slack over a Socket Mode WebSocket, with a liveness watchdog.

Bolt's :class:`SocketModeHandler` runs the same Bolt app the HTTP route serves (Slack signs
nothing in Socket Mode; the app-level token authenticates the socket). A Socket Mode connection
can stay open yet stop delivering (bolt-python #1071): the watchdog counts every message the
socket delivers (Slack's ``hello``, envelopes, refresh notices) and, when none has arrived for
``stale_after`` seconds, asks Slack for a new endpoint and reconnects. In a quiet workspace that
means one cheap reconnect per quiet period. ThingSpace callbacks still arrive over HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

if TYPE_CHECKING:
    from bot.app import Runtime

__all__ = ["SocketModeRunner", "start_socket_mode"]

log = logging.getLogger(__name__)


class SocketModeRunner:
    def __init__(
        self,
        runtime: Runtime,
        *,
        stale_after: float = 600.0,
        check_every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        web_client: WebClient | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.stale_after = stale_after
        self.check_every = check_every
        self.clock = clock
        self.reconnects = 0
        self.last_message = clock()
        web = web_client or WebClient(base_url=settings.slack_api_url, retry_handlers=[])
        self.handler = SocketModeHandler(
            runtime.bolt,
            settings.slack_app_token,
            web_client=web,
            logger=logging.getLogger("slack_sdk.socket_mode"),
        )
        self.handler.client.on_message_listeners.append(self._seen)
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="socket-mode-watchdog", daemon=True)

    def _seen(self, message: str) -> None:
        self.last_message = self.clock()

    def start(self) -> SocketModeRunner:
        self.handler.connect()  # type: ignore[no-untyped-call]
        self.last_message = self.clock()
        self._watchdog.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every):
            silent = self.clock() - self.last_message
            if silent < self.stale_after:
                continue
            log.warning("Socket Mode delivered nothing for %.0f s; reconnecting to a new endpoint", silent)
            self.reconnects += 1
            self.last_message = self.clock()
            try:
                self.handler.client.connect_to_new_endpoint(force=True)
            except Exception:
                log.exception("Socket Mode reconnect failed; the watchdog will try again")

    def alive(self) -> bool:
        return self._watchdog.is_alive() and self.handler.client.is_connected()

    def close(self) -> None:
        self._stop.set()
        # a reconnect in flight would open a socket after the handler closed: let it finish first
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=10)
        self.handler.close()  # type: ignore[no-untyped-call]


def start_socket_mode(
    runtime: Runtime, *, stale_after: float = 600.0, check_every: float = 15.0
) -> SocketModeRunner:
    return SocketModeRunner(runtime, stale_after=stale_after, check_every=check_every).start()
