"""Time for the sandbox: every rule that depends on time reads an injectable clock.

A clock is any zero-argument callable returning an aware UTC ``datetime``. :func:`system_clock` is
the default; :class:`ManualClock` is what tests (and scripted demos) use to make a session go idle
for 21 minutes, a line auto-resume after 90 days or a sleepy meter wake up, without waiting.
Real time is only used for the callback retry interval and network timeouts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "ManualClock", "iso", "system_clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Format as ThingSpace does on the wire: ISO 8601 with seconds and an explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class ManualClock:
    """A clock that only moves when told to; thread-safe.

    >>> clock = ManualClock(datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    >>> clock.advance(minutes=21)  # doctest: +ELLIPSIS
    datetime.datetime(2026, 1, 10, 12, 21, ...)
    """

    def __init__(self, start: datetime | None = None) -> None:
        now = start if start is not None else system_clock()
        if now.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime (use tzinfo=UTC)")
        self._now = now.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by ``delta`` or by keyword parts (``hours=2``); returns the new time."""
        step = (delta or timedelta()) + timedelta(**parts)
        if step < timedelta():
            raise ValueError("a ManualClock only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware), forwards only."""
        with self._lock:
            target = moment.astimezone(UTC)
            if target < self._now:
                raise ValueError("a ManualClock only moves forward")
            self._now = target
