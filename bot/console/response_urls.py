"""``response_url`` bookkeeping: each URL answers at most 5 times within 30 minutes, like Slack's.

A URL made for a button click remembers the message that carried the button, so
``replace_original`` / ``delete_original`` act on it. A URL made for a slash command has no
original until it posts; after that, its own latest message is the original.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_USES", "TTL_SECONDS", "ResponseUrl", "ResponseUrlError", "ResponseUrls"]

MAX_USES = 5
TTL_SECONDS = 30 * 60


class ResponseUrlError(Exception):
    """The URL cannot be used: ``code`` is ``used_url``, ``expired_url`` or ``invalid_url``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class ResponseUrl:
    """One issued URL: where it posts, for whom, and how much of it is left."""

    token: str
    channel: str
    user: str
    created_at: float
    message_ts: str | None = None
    uses: int = 0
    bound: bool = False
    """Made for a click: the original is always the message that carried the button."""


class ResponseUrls:
    """Issues tokens and enforces the limits."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._urls: dict[str, ResponseUrl] = {}

    def issue(self, channel: str, user: str, message_ts: str | None = None) -> ResponseUrl:
        entry = ResponseUrl(
            token=secrets.token_urlsafe(18),
            channel=channel,
            user=user,
            created_at=self._clock(),
            message_ts=message_ts,
            bound=message_ts is not None,
        )
        with self._lock:
            self._urls[entry.token] = entry
        return entry

    def check(self, token: str) -> ResponseUrl:
        """The entry for ``token`` if it may still be used; else :class:`ResponseUrlError`."""
        with self._lock:
            entry = self._urls.get(token)
            if entry is None:
                raise ResponseUrlError("invalid_url")
            if self._clock() - entry.created_at > TTL_SECONDS:
                raise ResponseUrlError("expired_url")
            if entry.uses >= MAX_USES:
                raise ResponseUrlError("used_url")
            return entry

    def consume(self, token: str, message_ts: str | None) -> None:
        """Count one successful use; an unbound URL's new message becomes its original."""
        with self._lock:
            entry = self._urls[token]
            entry.uses += 1
            if message_ts is not None and not entry.bound:
                entry.message_ts = message_ts

    def bind(self, token: str, message_ts: str) -> None:
        """Make ``message_ts`` the URL's original without counting a use (a command's ack reply)."""
        with self._lock:
            entry = self._urls[token]
            if not entry.bound:
                entry.message_ts = message_ts

    def clear(self) -> None:
        with self._lock:
            self._urls.clear()
