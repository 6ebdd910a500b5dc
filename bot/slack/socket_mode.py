"""``tsbot serve --socket-mode``: Slack over a Socket Mode WebSocket, with a liveness watchdog.

Bolt's :class:`SocketModeHandler` runs the same Bolt app the HTTP route serves (Slack signs
nothing in Socket Mode; the app-level token authenticates the socket). A Socket Mode connection
can stay open yet stop delivering (bolt-python #1071): the watchdog counts every message the
socket delivers (Slack's ``hello``, envelopes, refresh notices) and, when none has arrived for
``stale_after`` seconds (``[socket_mode] stale_after``), asks Slack for a new endpoint and
reconnects. In a quiet workspace that means one cheap reconnect per quiet period. ThingSpace
callbacks still arrive over HTTP.

The runner is a part of the :class:`~bot.app.Runtime` (built there with ``socket_mode=True``):
:meth:`start` returns at once and connects on its own thread, retrying with capped, jittered exponential backoff while
Slack cannot be reached (each failure is logged with the wait before the next try), so the HTTP
side (callbacks, ``/healthz``) comes up regardless. :meth:`alive` — the ``SocketModeRunner``
check of ``/readyz`` — is true only while the socket is connected.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.config import Settings

__all__ = ["SocketModeRunner"]

log = logging.getLogger(__name__)

#: Slack errors of ``apps.connections.open`` that mean the app-level token itself is wrong.
TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "account_inactive", "not_allowed_token_type"}
)


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error in TOKEN_ERRORS:
            return (
                f"Slack refused SLACK_APP_TOKEN ({error}): it must be an app-level token (xapp-…) "
                "with the connections:write scope"
            )
        return f"Slack answered {error}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class SocketModeRunner:
    def __init__(
        self,
        bolt: App,
        settings: Settings,
        *,
        stale_after: float | None = None,
        check_every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        web_client: WebClient | None = None,
        retry_first: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self.stale_after = settings.socket_stale_after.total_seconds() if stale_after is None else stale_after
        self.check_every = check_every
        self.clock = clock
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.reconnects = 0
        #: connection attempts at start (1 when Slack answered at once)
        self.attempts = 0
        self.last_message = clock()
        self.connected = threading.Event()
        web = web_client or WebClient(base_url=settings.slack_api_url, retry_handlers=[])
        self.handler = SocketModeHandler(
            bolt,
            settings.slack_app_token,
            web_client=web,
            logger=logging.getLogger("slack_sdk.socket_mode"),
        )
        self.handler.client.on_message_listeners.append(self._seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="socket-mode", daemon=True)

    def _seen(self, message: str) -> None:
        self.last_message = self.clock()

    # -- lifecycle (a Runtime part) ---------------------------------------------------------------

    def start(self) -> SocketModeRunner:
        """Connect in the background (with backoff until Slack answers), then watch the socket."""
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def idle(self) -> bool:
        return True

    def wake(self) -> None:
        """Nothing to wake: the socket delivers on its own."""

    def alive(self) -> bool:
        return self.connected.is_set() and self._thread.is_alive() and self.handler.client.is_connected()

    def stop(self) -> None:
        self._stop.set()
        # a connection or reconnect in flight would open a socket after the handler closed: let it finish
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.handler.close()  # type: ignore[no-untyped-call]

    close = stop

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        if self._connect():
            self._watch()

    def _connect(self) -> bool:
        """Open the socket, retrying with jittered exponential backoff; False if stopped first."""
        delay = self.retry_first
        while not self._stop.is_set():
            self.attempts += 1
            try:
                self.handler.client.connect_to_new_endpoint(force=True)
            except Exception as exc:  # noqa: BLE001 - any failure to connect is retried, never fatal
                wait = random.uniform(delay / 2, delay)  # jitter: two bots do not retry in step
                reason = _reason(exc)
                log.log(
                    logging.ERROR if self.attempts == 1 or "SLACK_APP_TOKEN" in reason else logging.WARNING,
                    "Socket Mode: could not connect to Slack (%s); retrying in %.1f s (attempt %d). "
                    "Slack commands and buttons wait until then; /readyz says not ready.",
                    reason,
                    wait,
                    self.attempts,
                )
                if self._stop.wait(wait):
                    return False
                delay = min(delay * 2, self.retry_max)
                continue
            if self._stop.is_set():
                return False
            self.last_message = self.clock()
            self.connected.set()
            log.info(
                "Socket Mode connected to Slack%s",
                f" after {self.attempts} attempts" if self.attempts > 1 else "",
            )
            return True
        return False

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
            except Exception as exc:  # noqa: BLE001 - the next check tries again
                log.warning(
                    "Socket Mode reconnect failed (%s); the watchdog tries again in %.0f s",
                    _reason(exc),
                    self.stale_after,
                )
