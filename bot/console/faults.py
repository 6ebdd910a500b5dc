"""Planned failures for the stand-in: rate limits, server errors and Slack error codes.

``inject("chat.postMessage", status=429, retry_after=2, count=3, channel="C0OPS")`` makes the
next three ``chat.postMessage`` calls for ``C0OPS`` answer HTTP 429 with ``Retry-After: 2``;
``inject("chat.update", error="channel_not_found")`` makes the next one answer HTTP 200
``{"ok": false, "error": "channel_not_found"}``. Faults are used up in the order they were
planned; a call matches the first one whose method and channel fit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["Fault", "FaultPlan", "FaultSpecError"]


class FaultSpecError(ValueError):
    """An injection request that makes no sense (bad status, count, or error code)."""


@dataclass
class Fault:
    """One planned failure; ``remaining`` counts down to zero as calls use it."""

    method: str
    status: int
    retry_after: int | None
    error: str | None
    remaining: int
    channel: str | None

    def response(self) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """``(status, JSON body or None for a non-JSON body, headers)`` to answer with."""
        headers: dict[str, str] = {}
        if self.error is not None:
            return 200, {"ok": False, "error": self.error}, headers
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.status == 429:
            headers.setdefault("Retry-After", "1")
            return 429, {"ok": False, "error": "ratelimited"}, headers
        return self.status, None, headers

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "status": self.status,
            "retry_after": self.retry_after,
            "error": self.error,
            "remaining": self.remaining,
            "channel": self.channel,
        }


class FaultPlan:
    """The planned failures, consumed by the stand-in before it answers a call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: float | None = None,
        error: str | None = None,
        count: int = 1,
        channel: str | None = None,
    ) -> Fault:
        """Plan a failure; raises :class:`FaultSpecError` on a request that makes no sense."""
        if not method:
            raise FaultSpecError("method is required (e.g. 'chat.postMessage' or 'response_url')")
        if channel is not None and (not isinstance(channel, str) or not channel):
            raise FaultSpecError(f"channel must be a channel id like 'C0OPS', got {channel!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise FaultSpecError(f"count must be a positive integer, got {count!r}")
        if error is not None:
            if not isinstance(error, str) or not error.replace("_", "").isalnum():
                raise FaultSpecError(
                    f"error must be a Slack error code like 'channel_not_found', got {error!r}"
                )
        elif (
            isinstance(status, bool)
            or not isinstance(status, int)
            or not (status == 429 or 500 <= status <= 599)
        ):
            raise FaultSpecError(f"status must be 429 or a 5xx, got {status!r}")
        seconds: int | None = None
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or retry_after < 0:
                raise FaultSpecError(f"retry_after must be a number of seconds >= 0, got {retry_after!r}")
            seconds = int(retry_after + 0.999)  # Retry-After carries whole seconds
        fault = Fault(
            method=method, status=status, retry_after=seconds, error=error, remaining=count, channel=channel
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, channel: str | None) -> Fault | None:
        """Use up one matching fault for this call, if any is planned."""
        with self._lock:
            for fault in self._faults:
                if fault.method == method and (fault.channel is None or fault.channel == channel):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
