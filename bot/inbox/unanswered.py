"""Requests nobody answered: the "no result after 30 min" job, and inbox retention.

:func:`check_unanswered` (every minute) takes the requests still ``accepted`` after
``no_result_after`` ([limits] no_result_after, default 30 min):

* a single-device suspend or resume is looked up with ThingSpace's request status (v1 knows only
  single-device provisioning requests: Verizon "Get Request Status", SDK
  ``AsynchronousRequestResult``): ``Success``/``Failed`` settle the
  device as if the callback had come (said so in the thread). ``Pending`` is said in the thread
  ("still pending at ThingSpace; I will look again") and the request is looked up again every
  ``no_result_after``, at most :data:`PENDING_RECHECKS` more times (the thread's message is
  updated in place each time). A re-check that finds ``Success``/``Failed`` settles the device
  (a callback ThingSpace dropped, say); one still ``Pending`` after the last re-check ends like a
  request without callback: "no result after 2 h" with a Retry button. A lookup that fails
  during the re-checks counts as one more re-check;
* everything else — and a lookup that fails — marks the devices still ``pending`` as
  ``no-result`` and says so: a thread reply for one device, the final summary (with those devices
  under "no result after 30 min" and a Retry failed button) for many;
* cancel location is queued by ThingSpace for up to 24 h, so it is checked only after a day.

A request is reported once (its state becomes ``checked``); until then it stays ``accepted``, and
``storage.inbox`` remembers its re-checks. A callback that arrives later still lands in the thread
and replaces the "no result". The ThingSpace call happens outside any write transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core import outcome_status as outcomes
from bot.core.durations import format_duration
from bot.inbox.worker import post_result, render_progress
from bot.render import blocks, results
from bot.scheduler.tasks import ScheduledTask
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.models import RequestStatus
from commands.context import Deps
from storage import directory, inbox, outbox, request_devices, requests
from storage.audit.events import SYSTEM_ACTOR, AuditEvent, Outcome, Verb
from storage.audit.log import AuditLog
from storage.db import write
from storage.requests import TrackedRequest

__all__ = [
    "CANCEL_LOCATION_WAIT",
    "INBOX_RETENTION",
    "PENDING_RECHECKS",
    "check_unanswered",
    "purge_inbox_task",
    "scheduled_tasks",
]

log = logging.getLogger(__name__)

#: ThingSpace processes queued cancel-location requests within 24 h (Verizon: "Cancel Location":
#: a platform-wide cap of 40 requests an hour; the excess is queued for up to a day).
CANCEL_LOCATION_WAIT = timedelta(hours=25)
#: Processed callbacks are kept this long (replay, audit questions), then deleted.
INBOX_RETENTION = timedelta(days=30)
#: How many more times a request ThingSpace still lists as Pending is looked up (each after a
#: further ``no_result_after``) before it is reported as "no result".
PENDING_RECHECKS = 3
_STATUS_LOOKUP_VERBS = ("suspend", "resume")


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def check_unanswered(deps: Deps, now: float | None = None) -> int:
    """Report the requests without a result after ``no_result_after``; returns how many."""
    now = deps.clock() if now is None else now
    settings = deps.settings
    db = deps.db()
    cutoff = now - settings.no_result_after.total_seconds()
    handled = 0
    for tracked in requests.open_requests(db, older_than=cutoff):
        if (
            tracked.verb == "cancel-location"
            and tracked.created_at > now - CANCEL_LOCATION_WAIT.total_seconds()
        ):
            continue
        recheck = inbox.recheck_of(db, tracked.request_id)
        if recheck is not None and recheck.next_check_at > now:
            continue  # still pending at ThingSpace when last asked: not time to ask again
        remote: RequestStatus | None = None
        lookup_error = ""
        if tracked.verb in _STATUS_LOOKUP_VERBS and tracked.device_count == 1:
            try:
                remote = deps.thingspace.request_status(tracked.request_id)
            except ThingSpaceError as exc:
                lookup_error = type(exc).__name__
                log.warning("request status of %s could not be read: %s", tracked.request_id, lookup_error)
        with write(db):
            if _settle(deps, db, tracked.request_id, remote, lookup_error, now):
                handled += 1
        AuditLog(db).anchor()
    if handled:
        deps.wake()
    return handled


def _settle(
    deps: Deps, db: Any, request_id: str, remote: RequestStatus | None, lookup_error: str, now: float
) -> bool:
    tracked = requests.get_request(db, request_id)
    if tracked is None or tracked.state != "accepted":
        return False  # answered (or checked) meanwhile
    settings = deps.settings
    waited = format_duration(settings.no_result_after)
    recheck = inbox.recheck_of(db, request_id)
    checks = 0 if recheck is None else recheck.checks  # lookups before this one
    pending = request_devices.devices_with_status(db, request_id, [outcomes.PENDING])
    if not pending:
        requests.set_request_state(db, request_id, "checked", now=now)
        inbox.settle_recheck(db, request_id)
        return False
    audit_detail: dict[str, Any] = {"operation": "request_status", "devices": len(pending)}
    if recheck is not None:
        audit_detail["check"] = checks + 1
    still_pending = (remote is not None and remote.pending) or (recheck is not None and lookup_error != "")
    if (
        remote is not None
        and tracked.device_count == 1
        and not remote.pending
        and (remote.succeeded or remote.failed)
    ):
        requests.set_request_state(db, request_id, "checked", now=now)
        inbox.settle_recheck(db, request_id)
        key = pending[0]
        status = outcomes.OK if remote.succeeded else outcomes.FAILED
        detail: dict[str, Any] = {"via": "request-status", "at": _iso(now)}
        if status == outcomes.FAILED:
            detail["reason"] = "ThingSpace's request status says Failed (no callback arrived)"
        request_devices.settle_pending(db, request_id, status, detail, devices=[key], now=now)
        if status == outcomes.OK:
            _directory_after(db, tracked, key)
        _reply(deps, db, tracked, key, status, detail, now, waited)
        requests.set_request_state(db, request_id, "completed", now=now)
        audit_detail["status"] = remote.status
        outcome = Outcome.OK if status == outcomes.OK else Outcome.FAILED
    elif still_pending and checks < PENDING_RECHECKS:
        # ThingSpace still works on it (or could not say): look again later; the request stays open.
        interval = settings.no_result_after.total_seconds()
        inbox.schedule_recheck(db, request_id, checks=checks + 1, next_check_at=now + interval, now=now)
        _still_pending(deps, db, tracked, checks=checks + 1, lookup_error=lookup_error, now=now)
        audit_detail["status"] = remote.status if remote is not None else lookup_error
        outcome = Outcome.QUEUED
    else:
        requests.set_request_state(db, request_id, "checked", now=now)
        inbox.settle_recheck(db, request_id)
        if recheck is not None:  # the whole wait, not only the first one
            waited = format_duration(timedelta(seconds=now - tracked.created_at))
        detail = {"at": _iso(now), "waited": waited}
        if lookup_error:
            detail["lookup_error"] = lookup_error
        if still_pending:
            detail["remote_status"] = "Pending"
        request_devices.settle_pending(db, request_id, outcomes.NO_RESULT, detail, now=now)
        if tracked.device_count == 1:
            note = ""
            if recheck is not None:
                note = (
                    f"Request `{request_id}` was looked up {checks + 1} times over {waited}; ThingSpace "
                    "never reported it done. Retry failed starts a new request."
                )
            _reply(deps, db, tracked, pending[0], outcomes.NO_RESULT, detail, now, waited, note=note)
        else:
            render_progress(db, tracked, settings, now=now)
        audit_detail["status"] = "no-result"
        outcome = Outcome.FAILED
    AuditLog(db).record(
        AuditEvent(
            at=datetime.fromtimestamp(now, UTC),
            actor=SYSTEM_ACTOR,
            channel=tracked.channel,
            verb=Verb.THINGSPACE_CALL if remote is not None else Verb.CALLBACK,
            targets=pending[:100],
            reason=tracked.reason,
            outcome=outcome,
            request_id=request_id,
            detail=audit_detail,
        )
    )
    return True


def _still_pending(
    deps: Deps, db: Any, tracked: TrackedRequest, *, checks: int, lookup_error: str, now: float
) -> None:
    """Say in the thread that ThingSpace still lists the request as pending: a reply the first
    time, then that same reply updated in place at each re-check."""
    settings = deps.settings
    request_id = tracked.request_id
    every = format_duration(settings.no_result_after)
    at = datetime.fromtimestamp(now, UTC).astimezone(results.zone(settings.timezone)).strftime("%H:%M")
    if checks == 1:
        text = (
            f":hourglass_flowing_sand: No callback after {every}; ThingSpace still lists request "
            f"`{request_id}` as pending. I will look again every {every} (up to {PENDING_RECHECKS} more "
            "times); the result will be posted here when it arrives."
        )
        post_result(db, tracked, key=f"stillpending:{request_id}", text=text, blocks=[blocks.section(text)])
        return
    seen = "ThingSpace could not be asked" if lookup_error else "ThingSpace still lists it as pending"
    left = PENDING_RECHECKS - checks + 1
    text = (
        f":hourglass_flowing_sand: Request `{request_id}` has no callback yet; at {at} {seen} "
        f"(lookup {checks} of {PENDING_RECHECKS + 1}). I will look again in {every} "
        f"({left} more time{'s' if left != 1 else ''}); the result will be posted here when it arrives."
    )
    try:
        outbox.enqueue_update(
            db, target_key=f"stillpending:{request_id}", text=text, blocks=[blocks.section(text)]
        )
    except outbox.UnknownMessage:  # the first note was purged or never queued: post a new one
        post_result(
            db, tracked, key=f"stillpending:{request_id}:{checks}", text=text, blocks=[blocks.section(text)]
        )


def _directory_after(db: Any, tracked: TrackedRequest, key: str) -> None:
    kind, _, value = key.partition(":")
    entry = directory.lookup(db, kind, value)
    if entry is None:
        return
    if tracked.verb == "suspend":
        directory.set_state(db, entry.key, "suspend")
    elif tracked.verb == "resume":
        directory.set_state(db, entry.key, "active", resume_date="")


def _reply(
    deps: Deps,
    db: Any,
    tracked: TrackedRequest,
    key: str,
    status: str,
    detail: dict[str, Any],
    now: float,
    waited: str,
    *,
    note: str = "",
) -> None:
    kind, _, value = key.partition(":")
    entry = directory.lookup(db, kind, value)
    text, body = results.single_reply(
        tracked.verb,
        status,
        detail,
        results.device_label(entry, key),
        tz=results.zone(deps.settings.timezone),
        request_id=tracked.request_id,
        now=datetime.fromtimestamp(now, UTC),
        no_result_after=waited,
    )
    if note:
        body = [*body[:1], blocks.context(note), *body[1:]]
    post_result(db, tracked, key=f"noresult:{tracked.request_id}", text=text, blocks=body)


def purge_inbox_task(deps: Deps, now: float | None = None) -> int:
    """Delete processed callbacks older than :data:`INBOX_RETENTION`; returns how many."""
    now = deps.clock() if now is None else now
    db = deps.db()
    with write(db):
        return inbox.purge(db, before=now - INBOX_RETENTION.total_seconds())


def scheduled_tasks() -> list[ScheduledTask]:
    """The no-result check (every minute) and the inbox retention (hourly)."""
    return [
        ScheduledTask("callbacks-no-result", check_unanswered, timedelta(minutes=1)),
        ScheduledTask("inbox-retention", purge_inbox_task, timedelta(hours=1)),
    ]
