"""Things due at a moment of the sandbox clock (not of the wall clock).

Auto-resume of suspended lines, ResumeTrackingNotification, queued cancel-location requests, SMS
delivery at a sleepy device's next wake or expiry, sleepy reachability transitions and monitor
expiry are all entries here. :meth:`Timers.run_due` runs every entry whose time has come; the
sandbox calls it a few times a second and from :meth:`bot.sandbox.Sandbox.tick`, so a test that
advances a :class:`~bot.sandbox.clock.ManualClock` sees the effects immediately.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from datetime import datetime

__all__ = ["Timers"]

logger = logging.getLogger(__name__)


class Timers:
    """A heap of ``(due, action)``; not thread-safe (the caller holds the state lock)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, due: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), action))

    def run_due(self, now: datetime) -> int:
        """Run every action due at or before ``now`` (including ones they schedule); return the count."""
        ran = 0
        while self._heap and self._heap[0][0] <= now:
            _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:  # a broken timer must not stop the others
                logger.exception("sandbox timer failed")
            ran += 1
        return ran

    def clear(self) -> None:
        self._heap.clear()
