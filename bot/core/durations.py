"""Durations as people type them (``90s``, ``15m``, ``2h``, ``7d``, ``1h30m``) and as they read them."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: the longest duration accepted anywhere (ten years): longer ones are typing mistakes, and a date
#: that far back or ahead would leave what ``datetime`` can hold
MAX_DURATION = timedelta(days=3650)
_EXAMPLES = "use a number with s, m, h, d or w, e.g. 30m, 2h, 7d"


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse ``2h``, ``90m``, ``1h30m``, ``7d`` or a bare number of seconds.

    A duration must be positive (zero only with *allow_zero*, for settings where ``0`` means
    "off") and at most :data:`MAX_DURATION`. Raises ``ValueError`` with a message that says what
    is accepted.
    """
    cleaned = text.strip().lower()
    total = 0
    if cleaned.isascii() and cleaned.isdigit():
        total = int(cleaned) if len(cleaned) <= 20 else 10**20
    else:
        pos = 0
        for match in _PART.finditer(cleaned):
            if match.start() != pos and cleaned[pos : match.start()].strip():
                break
            digits = match.group(1)
            total += (int(digits) if len(digits) <= 20 else 10**20) * _UNITS[match.group(2)]
            pos = match.end()
        if not cleaned or pos != len(cleaned) or not cleaned.isascii():
            raise ValueError(f"{text!r} is not a duration: {_EXAMPLES}")
    if total <= 0 and not (allow_zero and total == 0):
        raise ValueError(f"{text!r}: a duration must be positive; {_EXAMPLES}")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is too long: a duration may be at most {MAX_DURATION.days} days")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """``3 h 12 min``, ``2 d 4 h``, ``45 s``: the two largest units, for messages."""
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 60:
        return f"{seconds} s"
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"
