"""Results by asking, for a bot ThingSpace cannot call back (``[thingspace] results = "poll"``,
or ``TSBOT_PUBLIC_URL`` empty; see README "Behind a firewall").

Request outcomes (suspend, resume, SMS, cancel location, ``reach``) come through reconciliation
(:mod:`bot.inbox.unanswered`, first question after about 5 s). This module adds what has no
request of the bot's behind it:

* **device-originated SMS**: every minute ``GET /sms/{account}/history`` (SDK
  ``SMSMessagesQueryResult``), block by block; each message goes into the inbox exactly as the
  flat ``SMSMessage`` it is, and only then is the next block asked for (which acknowledges this
  one at ThingSpace). The inbox worker then handles it like an EnhancedConnectivityService
  callback. ``PUT …/startCallbacks`` is left alone.
* **reachability of watched devices**: instead of monitors (whose results only come by
  callback), each watched device gets a status query (``POST
  /diagnostics/basic/devicereachability/status``) every :data:`REACH_POLL_EVERY`; its request
  status is read at each run: ``Success`` is an observation "reachable", a query still
  ``Pending`` one "not reachable now" (the device was not reachable when asked), ``Failed`` or an
  expired query closes it. The meaning of those statuses is a proposal
  (``bot.thingspace.shapes.REQUEST_STATUS_OUTCOMES``). Observations go through the same rules as
  monitor callbacks (:func:`bot.core.reachability.apply_event`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Final

from bot.core import reachability
from bot.intake.route import inbox_item
from bot.scheduler.tasks import ScheduledTask
from bot.thingspace import shapes
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.events import CallbackEvent, CallbackKind, InvalidCallback
from bot.thingspace.ids import DeviceId, InvalidDeviceId
from commands.context import Deps
from storage import inbox, reach_polls
from storage.db import write

__all__ = [
    "MO_SMS_EVERY",
    "REACH_POLL_EVERY",
    "REACH_QUERY_LIFETIME",
    "poll_mo_sms",
    "poll_reachability",
    "scheduled_tasks",
]

log = logging.getLogger(__name__)

#: how often the device-SMS inbox is read
MO_SMS_EVERY: Final = timedelta(minutes=1)
#: how often each watched device is asked about
REACH_POLL_EVERY: Final = timedelta(minutes=15)
#: a status query answers within this (ThingSpace's default timer for it is 1 hour)
REACH_QUERY_LIFETIME: Final = timedelta(hours=1)
#: the most new queries one run sends (the rest wait for the next run, a minute later)
REACH_QUERIES_PER_RUN: Final = 200


def poll_mo_sms(deps: Deps, now: float | None = None) -> int:
    """Move the device SMS waiting at ThingSpace into the inbox; returns how many were new."""
    db = deps.db()
    now = deps.clock() if now is None else now
    stored = 0
    try:
        for block in deps.thingspace.mo_sms_pages():
            items = []
            for message in block:
                try:
                    items.append(inbox_item(message.wire))
                except InvalidCallback as exc:
                    log.warning("a device SMS from ThingSpace's inbox could not be read: %s", exc)
            with write(db):  # durable before the next block acknowledges this one
                stored += sum(inbox.insert_many(db, items, now=now))
    except ThingSpaceError as exc:
        log.warning("the device SMS inbox could not be read: %s", type(exc).__name__)
    if stored:
        deps.wake()
    return stored


def _event(device: str, request_id: str, reachable: bool, at: float) -> CallbackEvent | None:
    kind, _, value = device.partition(":")
    try:
        device_id = DeviceId.from_wire({"kind": kind, "id": value})
    except InvalidDeviceId:
        return None
    return CallbackEvent(
        service=shapes.DIAGNOSTICS_SERVICE,
        kind=CallbackKind.REACHABLE if reachable else CallbackKind.UNREACHABLE,
        request_id=request_id,
        device=device_id,
        device_ids=(device_id,),
        status="Success" if reachable else "Pending",
        succeeded=True,
        outcome_key=f"poll:{request_id}:{reachable}",
        raw={},
        reachability=shapes.REACHABLE if reachable else shapes.UNREACHABLE,
        event_time=datetime.fromtimestamp(at, UTC),
    )


def poll_reachability(deps: Deps, now: float | None = None) -> int:
    """Read the open status queries of watched devices, then ask about the devices whose turn it
    is; returns how many observations were recorded."""
    db = deps.db()
    now = deps.clock() if now is None else now
    observed = 0
    meaning = shapes.REQUEST_STATUS_OUTCOMES["reach"]
    for poll in reach_polls.open_polls(db):
        try:
            status = deps.thingspace.request_status(poll.request_id, detailed=True)
        except ThingSpaceError as exc:
            log.warning("reachability query of a watched device could not be read: %s", type(exc).__name__)
            if now - poll.asked_at > REACH_QUERY_LIFETIME.total_seconds():
                with write(db):
                    reach_polls.finish(db, poll.device)
            continue
        subs = [s.status for s in status.sub_requests] or [status.status]
        outcome = meaning.get(subs[0], "")
        reachable = outcome == "reachable"
        report = "reachable" if reachable else "unreachable"
        with write(db):
            if report != poll.reported and (reachable or subs[0] in ("Pending", "Failed")):
                event = _event(poll.device, poll.request_id, reachable, now)
                if event is not None and reachability.apply_event(db, event, now=now) is not None:
                    observed += 1
                reach_polls.set_reported(db, poll.device, report)
            if outcome or now - poll.asked_at > REACH_QUERY_LIFETIME.total_seconds():
                reach_polls.finish(db, poll.device)
    due = reach_polls.due_devices(
        db, asked_before=now - REACH_POLL_EVERY.total_seconds(), limit=REACH_QUERIES_PER_RUN
    )
    for device in due:
        kind, _, value = device.partition(":")
        try:
            device_id = DeviceId.from_wire({"kind": kind, "id": value})
            accepted = deps.thingspace.reachability_status(device_id)
        except (ThingSpaceError, InvalidDeviceId) as exc:
            log.warning("could not ask whether a watched device is reachable: %s", type(exc).__name__)
            continue
        with write(db):
            reach_polls.start(db, device, accepted.request_id, now=now)
    if observed:
        deps.wake()
    return observed


def scheduled_tasks() -> list[ScheduledTask]:
    """The two polls (every minute; the first run at start)."""
    return [
        ScheduledTask("poll-device-sms", poll_mo_sms, MO_SMS_EVERY, at_start=True),
        ScheduledTask("poll-reachability", poll_reachability, timedelta(minutes=1), at_start=True),
    ]
