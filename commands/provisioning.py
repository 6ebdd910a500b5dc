"""ThingSpace's own record of a line: its provisioning history, for ``history`` and ``status``.

Changes made in the ThingSpace portal, by other API users or by ThingSpace itself (an
auto-resume) never pass through the bot, so its audit log cannot show them. ThingSpace's
provisioning history (SDK ``DeviceProvisioningHistoryListRequest``) does; :func:`outside_rows`
reads it and keeps the events the bot did not make — those whose ``eventBy`` is not the bot's own
ThingSpace user — as timeline rows marked as coming from ThingSpace. :func:`last_outside_change`
is the status card's "last changed by X at T (outside the bot)".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from bot.render import blocks, times
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import ProvisioningEvent
from commands.context import Deps

__all__ = ["OutsideRow", "last_outside_change", "outside_rows"]

#: how far back the status card looks for a change made outside the bot
STATUS_LOOKBACK: Final = timedelta(days=90)


@dataclass(frozen=True)
class OutsideRow:
    """A provisioning event the bot did not make, ready for the history timeline."""

    at: datetime
    line: str


def _outside(event: ProvisioningEvent, own_user: str) -> bool:
    by = event.event_by.strip()
    return not by or not own_user or by.casefold() != own_user.casefold()


def _line(event: ProvisioningEvent, at: datetime) -> str:
    what = blocks.escape(event.event_type or "change")
    by = blocks.escape(event.event_by or "ThingSpace")
    status = f" → {blocks.escape(event.status)}" if event.status else ""
    return f"`{at:%Y-%m-%d %H:%M}` :globe_with_meridians: *{what}* by {by}{status} · _from ThingSpace, outside the bot_"


def outside_rows(
    deps: Deps, device: DeviceId, *, since: datetime | None, until: datetime
) -> tuple[list[OutsideRow], str]:
    """(the line's provisioning events not made by the bot, newest first; why none could be
    read, or "")."""
    earliest = since or until - STATUS_LOOKBACK
    try:
        events = list(deps.thingspace.provisioning_history(device, earliest, until))
    except ThingSpaceError as exc:
        return [], f"ThingSpace's provisioning history could not be read: {exc.user_message}"
    own = deps.settings.thingspace_username
    rows = [
        OutsideRow(e.occurred_at.astimezone(UTC), _line(e, e.occurred_at.astimezone(UTC)))
        for e in events
        if e.occurred_at is not None and _outside(e, own)
    ]
    rows.sort(key=lambda r: r.at, reverse=True)
    return rows, ""


def last_outside_change(deps: Deps, device: DeviceId, *, now: datetime) -> str | None:
    """ "Last changed by X at T (outside the bot)" when the line's newest provisioning event is
    not the bot's; None otherwise, or when ThingSpace cannot say."""
    try:
        events = list(deps.thingspace.provisioning_history(device, now - STATUS_LOOKBACK, now))
    except ThingSpaceError:
        return None
    dated = [e for e in events if e.occurred_at is not None]
    if not dated:
        return None
    newest = max(dated, key=lambda e: e.occurred_at or now)
    if not _outside(newest, deps.settings.thingspace_username) or newest.occurred_at is None:
        return None
    at = newest.occurred_at.astimezone(UTC)
    who = blocks.escape(newest.event_by or "ThingSpace")
    what = blocks.escape(newest.event_type or "changed")
    return f":globe_with_meridians: Last changed by {who} at {times.at(at, UTC, now=now)} (outside the bot): {what}."
