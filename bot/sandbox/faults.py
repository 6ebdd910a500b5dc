"""What tests and demos can make the sandbox do wrong, and what it remembers having received.

:class:`Faults` holds the default latency (added to every API call) and one-shot rules: for the
next ``count`` requests whose path matches a glob (and optionally a method), wait ``latency``
seconds and/or answer ``status`` with ``body`` instead of the real answer. :class:`RequestLog`
keeps every API request (method, path, time on the sandbox clock, status, error code), so a test
can count logins with ``path="/m2m/v1/session/login"``.
"""

from __future__ import annotations

import fnmatch
import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["FaultRule", "Faults", "RequestLog"]


@dataclass(slots=True)
class FaultRule:
    pattern: str
    method: str | None
    remaining: int
    status: int | None = None
    body: Any = None
    latency: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and fnmatch.fnmatchcase(path, self.pattern)

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.pattern,
            "method": self.method,
            "remaining": self.remaining,
            "status": self.status,
            "latency": self.latency,
        }


class Faults:
    """Default latency plus one-shot fault rules; thread-safe."""

    def __init__(self, latency: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.latency = latency

    def add(
        self,
        path: str,
        *,
        count: int = 1,
        method: str | None = None,
        status: int | None = None,
        body: Any = None,
        latency: float = 0.0,
    ) -> FaultRule:
        """Affect the next ``count`` requests matching ``path`` (a glob such as ``/m2m/v1/*``)."""
        if not path.startswith("/"):
            raise ValueError("path must start with / (a glob such as /m2m/v1/devices/actions/*)")
        if count < 1:
            raise ValueError("count must be at least 1")
        if status is None and latency <= 0:
            raise ValueError("give a status (with an optional body), a latency, or both")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code (100-599)")
        if latency < 0:
            raise ValueError("latency must not be negative")
        rule = FaultRule(path, method.upper() if method else None, count, status, body, latency)
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first live rule for this request, consuming one of its uses."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()


class RequestLog:
    """Every API request received, newest last (bounded)."""

    def __init__(self, size: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = itertools.count(1)

    def record(self, method: str, path: str, time: str, status: int, code: str = "") -> None:
        entry = {"seq": next(self._seq), "method": method, "path": path, "time": time, "status": status}
        if code:
            entry["errorCode"] = code
        with self._lock:
            self._entries.append(entry)

    def query(
        self, path: str | None = None, method: str | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        """Entries matching ``path`` (exact, or a glob with ``*``), ``method``, with ``seq > after``."""
        with self._lock:
            entries = list(self._entries)
        wanted = method.upper() if method else None
        found = []
        for entry in entries:
            if entry["seq"] <= after or (wanted and entry["method"] != wanted):
                continue
            if path is not None and not (
                entry["path"] == path or ("*" in path and fnmatch.fnmatchcase(entry["path"], path))
            ):
                continue
            found.append(entry)
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
