"""Durations as people type them (``90s``, ``15m``, ``2h``, ``7d``, ``1h30m``) and as they read them."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse ``2h``, ``90m``, ``1h30m``, ``7d`` or a bare number of seconds.

    Raises ``ValueError`` with a message that shows what is accepted.
    """
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        return timedelta(seconds=int(cleaned))
    pos = 0
    total = 0
    for match in _PART.finditer(cleaned):
        if match.start() != pos and cleaned[pos : match.start()].strip():
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned) or total <= 0:
        raise ValueError(f"{text!r} is not a duration: use a number with s, m, h, d or w, e.g. 30m, 2h, 7d")
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
