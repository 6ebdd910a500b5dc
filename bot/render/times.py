"""Times in the reader's own time zone: Slack's ``<!date^…>`` tokens with a fallback.

Slack renders ``<!date^1796636590^{time}|09:43 UTC>`` in each reader's zone and shows the text after
``|`` where it cannot (notifications, old clients, the demo console). The fallback is written in the
configured zone (``[alerts] timezone``), so it is still right for the team. A time that is not today
carries its date (https://docs.slack.dev/messaging/formatting-message-text#date-formatting).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from bot.core.durations import format_duration

__all__ = ["ago", "at", "day", "fallback", "local_clock"]

_TOKEN = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def _moment(when: datetime | float) -> datetime:
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.fromtimestamp(when, UTC)


def local_clock(when: datetime | float, tz: tzinfo, *, now: datetime | float | None = None) -> str:
    """``08:35 UTC`` today, ``Sun 6 Dec 08:35 UTC`` another day (in *tz*)."""
    moment = _moment(when).astimezone(tz)
    name = moment.tzname() or ""
    today = _moment(now).astimezone(tz).date() if now is not None else moment.date()
    if moment.date() == today:
        return f"{moment:%H:%M} {name}".strip()
    year = f" {moment.year}" if moment.year != today.year else ""
    return f"{moment:%a} {moment.day} {moment:%b}{year} {moment:%H:%M} {name}".strip()


def at(when: datetime | float, tz: tzinfo, *, now: datetime | float | None = None) -> str:
    """A ``<!date^…>`` token: the reader's own zone in Slack, ``08:35 UTC`` (with the date when it
    is not today) as the fallback."""
    moment = _moment(when)
    fallback = local_clock(moment, tz, now=now)
    today = _moment(now).astimezone(tz).date() if now is not None else moment.astimezone(tz).date()
    fmt = "{time}" if moment.astimezone(tz).date() == today else "{date_short_pretty} {time}"
    return f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>"


def day(when: datetime | float, tz: tzinfo) -> str:
    """``Sun 7 Mar 2027`` as a date token (the reader's zone), with that fallback."""
    moment = _moment(when)
    local = moment.astimezone(tz)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}}|{local:%a} {local.day} {local:%b %Y}>"


def ago(when: datetime | float, now: datetime | float) -> str:
    """``12 min ago`` (``just now`` under a minute)."""
    seconds = (_moment(now) - _moment(when)).total_seconds()
    if seconds < 60:
        return "just now"
    return f"{format_duration(timedelta(seconds=seconds))} ago"


def fallback(text: str) -> str:
    """*text* with each date token replaced by its fallback, as a reader without Slack sees it."""
    return _TOKEN.sub(lambda m: m.group(1), text)
