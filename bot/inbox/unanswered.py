"""Reconciliation: every request ThingSpace accepted is followed until each device has an outcome.

Callbacks usually settle a request. One they have not settled within ``[thingspace]
reconcile_after`` (60 s; about 5 s when results are polled, see :attr:`Settings.poll_results`)
is asked about with ThingSpace's request status — v2 with its per-device sub-requests, v1 for a
single-device suspend or resume when v2 does not know the request — again after 1, 2, 5, 10 and
30 minutes, then hourly, up to :data:`WINDOW` (cancel location: :data:`CANCEL_LOCATION_WINDOW`,
as ThingSpace queues those up to a day). What a ``Success``/``Failed`` means per operation is a
proposal, spelled in ``bot.thingspace.shapes.REQUEST_STATUS_OUTCOMES``.

A device settled this way is reported exactly as from a callback — a thread reply for one
device, the progress message and summary for many, the directory, an audit row — marked "from
ThingSpace's request status". Callbacks and status answers are deduplicated against each other:
each device's outcome is told once (:func:`bot.core.outcome_status.supersedes`).

While devices are still pending after ``no_result_after`` (30 min) the thread says so once ("I
keep asking"), updated in place at each later question. At the end of the window they are
reported as "no result". A request ThingSpace cannot give a status for (it answers 4xx for v2 and
v1 does not apply) is reported as "no result" at ``no_result_after``, as before reconciliation.
A request is reported once (its state becomes ``checked`` or ``completed``); a callback that
arrives later still lands in the thread and replaces the "no result". The ThingSpace call happens
outside any write transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.core import outcome_status as outcomes
from bot.core.durations import format_duration
from bot.inbox.worker import post_result, render_progress, settle_single_root
from bot.render import blocks, results, times
from bot.scheduler.tasks import ScheduledTask
from bot.thingspace import shapes
from bot.thingspace.errors import (
    RateLimited,
    ServerError,
    ThingSpaceAuthError,
    ThingSpaceError,
    ThingSpaceResponseError,
    UnexpectedResponse,
)
from bot.thingspace.ids import DeviceId, InvalidDeviceId
from bot.thingspace.models import RequestStatus, SubRequest
from commands.context import Deps
from storage import directory, inbox, outbox, request_devices, requests
from storage.audit.events import SYSTEM_ACTOR, AuditEvent, Outcome, Verb
from storage.audit.log import AuditLog
from storage.db import write
from storage.requests import TrackedRequest

__all__ = [
    "BACKOFF",
    "CANCEL_LOCATION_WINDOW",
    "INBOX_RETENTION",
    "WINDOW",
    "check_unanswered",
    "purge_inbox_task",
    "scheduled_tasks",
]

log = logging.getLogger(__name__)

#: How long a request is asked about before its silent devices are reported as "no result".
WINDOW: Final = timedelta(hours=24)
#: ThingSpace processes queued cancel-location requests within 24 h (Verizon: "Cancel Location":
#: a platform-wide cap of 40 requests an hour; the excess is queued for up to a day).
CANCEL_LOCATION_WINDOW: Final = timedelta(hours=25)
#: The waits between two questions about one request; the last one repeats.
BACKOFF: Final = (
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
)
#: Processed callbacks are kept this long (replay, audit questions), then deleted.
INBOX_RETENTION: Final = timedelta(days=30)
#: statuses of a device that has no final outcome yet
_OPEN: Final = (outcomes.PENDING, outcomes.SENT, outcomes.REGISTERED)
#: most requests asked about in one run (the rest wait for the next run, seconds later)
_BATCH: Final = 200
_SINGLE_DEVICE_V1: Final = ("suspend", "resume")
#: an uncertain request's lines are looked up in their provisioning history from this long before
#: it was recorded (the call itself took up to the client's deadline)
_UNCERTAIN_SLACK: Final = timedelta(minutes=5)
#: the most lines of one uncertain request looked up per question (one history read each)
_UNCERTAIN_BATCH: Final = 50


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def _window(tracked: TrackedRequest) -> timedelta:
    return CANCEL_LOCATION_WINDOW if tracked.verb == "cancel-location" else WINDOW


def _definitive(exc: ThingSpaceError) -> bool:
    """A 4xx that says ThingSpace cannot give this request's status (not a passing failure)."""
    return isinstance(exc, ThingSpaceResponseError) and not isinstance(
        exc, ServerError | RateLimited | ThingSpaceAuthError | UnexpectedResponse
    )


def _ask(deps: Deps, tracked: TrackedRequest) -> tuple[RequestStatus | None, str, bool]:
    """(the status, the error's class name, whether ThingSpace cannot tell at all)."""
    try:
        return deps.thingspace.request_status(tracked.request_id, detailed=True), "", False
    except ThingSpaceError as exc:
        if not _definitive(exc):
            log.warning("request status of %s could not be read: %s", tracked.request_id, type(exc).__name__)
            return None, type(exc).__name__, False
        first = type(exc).__name__
    if tracked.device_count == 1 and tracked.verb in _SINGLE_DEVICE_V1:
        try:
            return deps.thingspace.request_status(tracked.request_id), "", False
        except ThingSpaceError as exc:
            return None, type(exc).__name__, _definitive(exc)
    return None, first, True


def _ask_history(
    deps: Deps, db: Any, tracked: TrackedRequest, now: float
) -> tuple[RequestStatus | None, str, bool]:
    """An uncertain request (no request id: the call timed out or got a 5xx) asked about the only
    way there is: each open line's provisioning history since it was sent. A suspend or restore
    event there settles the line (``Success``, or ``Failed`` when the event failed); none yet is
    ``Pending``. SMS and cancel location leave no such trace: ThingSpace cannot tell."""
    target = {"suspend": "suspend", "resume": "restore"}.get(tracked.verb)
    if target is None:
        return None, "", True
    since = datetime.fromtimestamp(tracked.created_at - _UNCERTAIN_SLACK.total_seconds(), UTC)
    until = datetime.fromtimestamp(now, UTC)
    open_keys = request_devices.devices_with_status(db, tracked.request_id, list(_OPEN))
    subs: list[SubRequest] = []
    error = ""
    for key in open_keys[:_UNCERTAIN_BATCH]:
        kind, _, value = key.partition(":")
        try:
            device_id = DeviceId.from_wire({"kind": kind, "id": value})
            events = [
                e for e in deps.thingspace.provisioning_history(device_id, since, until) if e.action == target
            ]
        except (ThingSpaceError, InvalidDeviceId) as exc:
            error = type(exc).__name__
            continue
        status = "Success" if any(not e.failed for e in events) else ("Failed" if events else "Pending")
        subs.append(SubRequest(device_ids=(device_id,), status=status))
    if not subs:
        return None, error, False
    overall = "Pending" if any(s.status == "Pending" for s in subs) else "Success"
    return (
        RequestStatus(request_id=tracked.request_id, status=overall, sub_requests=tuple(subs)),
        error,
        False,
    )


def check_unanswered(deps: Deps, now: float | None = None) -> int:
    """Ask ThingSpace about the requests whose turn it is; returns how many were handled."""
    now = deps.clock() if now is None else now
    db = deps.db()
    first = deps.settings.first_reconcile.total_seconds()
    handled = 0
    for request_id in inbox.due_rechecks(db, first_after=first, now=now, limit=_BATCH):
        tracked = requests.get_request(db, request_id)
        if tracked is None or tracked.state != "accepted":
            continue
        if not request_devices.devices_with_status(db, request_id, list(_OPEN)):
            with write(db):
                requests.set_request_state(db, request_id, "completed", now=now)
                inbox.settle_recheck(db, request_id)
            continue
        if tracked.request_id.startswith(requests.UNCERTAIN_PREFIX):
            remote, error, unsupported = _ask_history(deps, db, tracked, now)
        else:
            remote, error, unsupported = _ask(deps, tracked)
        with write(db):
            if _apply(deps, db, request_id, remote, error, unsupported, now):
                handled += 1
        AuditLog(db).anchor()
    if handled:
        deps.wake()
    return handled


def _match(db: Any, ids: tuple[DeviceId, ...], open_keys: set[str]) -> str | None:
    """The request's device a sub-request names: by any of its ids, or through the directory."""
    for device_id in ids:
        if str(device_id) in open_keys:
            return str(device_id)
    for device_id in ids:
        entry = directory.lookup(db, device_id.kind, device_id.id)
        if entry is not None:
            for key in (entry.key, *(f"{k}:{v}" for k, v in entry.ids.items())):
                if key in open_keys:
                    return key
    return None


def _answers(db: Any, tracked: TrackedRequest, remote: RequestStatus, open_keys: set[str]) -> dict[str, str]:
    """device key -> outcome, for the devices the status answer settles."""
    meaning = shapes.REQUEST_STATUS_OUTCOMES.get(tracked.verb, {})
    found: dict[str, str] = {}
    if remote.sub_requests:
        for sub in remote.sub_requests:
            status = meaning.get(sub.status)
            key = _match(db, sub.device_ids, open_keys) if status else None
            if key is not None and status is not None:
                found[key] = status
    elif remote.status in meaning and (len(open_keys) == 1 or remote.succeeded):
        found = dict.fromkeys(open_keys, meaning[remote.status])
    return found


def _apply(
    deps: Deps,
    db: Any,
    request_id: str,
    remote: RequestStatus | None,
    error: str,
    unsupported: bool,
    now: float,
) -> bool:
    tracked = requests.get_request(db, request_id)
    if tracked is None or tracked.state != "accepted":
        return False  # answered (or checked) meanwhile
    settings = deps.settings
    current = {key: status for key, status, _ in requests.device_outcomes(db, request_id)}
    open_keys = {key for key, status in current.items() if status in _OPEN}
    if not open_keys:
        requests.set_request_state(db, request_id, "completed", now=now)
        inbox.settle_recheck(db, request_id)
        return False
    recheck = inbox.recheck_of(db, request_id)
    checks = 1 + (0 if recheck is None else recheck.checks)
    audit_detail: dict[str, Any] = {"operation": "request_status", "devices": len(open_keys), "check": checks}
    audit_detail["status"] = remote.status if remote is not None else error
    settled = _answers(db, tracked, remote, open_keys) if remote is not None else {}
    told = 0
    for key, status in sorted(settled.items()):
        if not outcomes.supersedes(status, current[key]):
            continue
        via = (
            "provisioning-history"
            if tracked.request_id.startswith(requests.UNCERTAIN_PREFIX)
            else "request-status"
        )
        detail: dict[str, Any] = {"via": via, "at": _iso(now)}
        if status in outcomes.FAILURES:
            detail["reason"] = "ThingSpace's request status says Failed (no callback said why)"
        requests.set_device_outcome(db, request_id, key, status, detail, now=now)
        current[key] = status
        told += 1
        if status == outcomes.OK:
            _directory_after(db, tracked, key)
        if tracked.device_count == 1:
            _reply(deps, db, tracked, key, status, detail, now, format_duration(settings.no_result_after))
    audit_detail["settled"] = told
    still_open = sorted(key for key, status in current.items() if status in _OPEN)
    waited = timedelta(seconds=now - tracked.created_at)
    if not still_open:
        outcome = Outcome.OK
        requests.set_request_state(db, request_id, "completed", now=now)
        inbox.settle_recheck(db, request_id)
        if tracked.device_count > 1:
            render_progress(db, tracked, settings, now=now)
    elif (unsupported and waited >= settings.no_result_after) or waited >= _window(tracked):
        outcome = Outcome.FAILED
        _no_result(deps, db, tracked, checks=checks, unsupported=unsupported, error=error, now=now)
        audit_detail["status"] = "no-result"
    else:
        outcome = Outcome.QUEUED
        pause = BACKOFF[min(checks - 1, len(BACKOFF) - 1)].total_seconds()
        due = now + pause
        if unsupported:  # nothing to ask: wait for callbacks until no_result_after
            due = tracked.created_at + settings.no_result_after.total_seconds()
        inbox.schedule_recheck(db, request_id, checks=checks, next_check_at=due, now=now)
        if tracked.device_count > 1 and told:
            render_progress(db, tracked, settings, now=now)
        if waited >= settings.no_result_after and not unsupported:
            _still_pending(deps, db, tracked, checks=checks, error=error, due=due, now=now)
    AuditLog(db).record(
        AuditEvent(
            at=datetime.fromtimestamp(now, UTC),
            actor=SYSTEM_ACTOR,
            channel=tracked.channel,
            verb=Verb.THINGSPACE_CALL if remote is not None else Verb.CALLBACK,
            targets=sorted(open_keys)[:100],
            reason=tracked.reason,
            outcome=outcome,
            request_id=request_id,
            detail=audit_detail,
        )
    )
    return True


def _no_result(
    deps: Deps, db: Any, tracked: TrackedRequest, *, checks: int, unsupported: bool, error: str, now: float
) -> None:
    """The devices still pending get "no result"; the request is reported once (``checked``)."""
    settings = deps.settings
    request_id = tracked.request_id
    requests.set_request_state(db, request_id, "checked", now=now)
    inbox.settle_recheck(db, request_id)
    asked = not unsupported and checks > 1
    waited = format_duration(
        timedelta(seconds=now - tracked.created_at) if asked else settings.no_result_after
    )
    detail: dict[str, Any] = {"at": _iso(now), "waited": waited}
    if error:
        detail["lookup_error"] = error
    pending = request_devices.devices_with_status(db, request_id, [outcomes.PENDING])
    request_devices.settle_pending(db, request_id, outcomes.NO_RESULT, detail, now=now)
    if tracked.device_count == 1 and pending:
        note = ""
        if request_id.startswith(requests.UNCERTAIN_PREFIX):
            note = (
                "ThingSpace never confirmed this request and the line's history does not show it "
                "done: the outcome is unknown. Check the line with `/ts status` before retrying."
            )
        elif asked:
            note = (
                f"Request `{request_id}` was looked up {checks} times over {waited}; ThingSpace "
                "never reported it done. Retry failed starts a new request."
            )
        _reply(deps, db, tracked, pending[0], outcomes.NO_RESULT, detail, now, waited, note=note)
    elif tracked.device_count > 1:
        render_progress(db, tracked, settings, now=now)


def _still_pending(
    deps: Deps, db: Any, tracked: TrackedRequest, *, checks: int, error: str, due: float, now: float
) -> None:
    """Say in the thread that there is no result yet and that the bot keeps asking: a reply the
    first time, then that same reply updated in place at each later question."""
    settings = deps.settings
    request_id = tracked.request_id
    zone = results.zone(settings.timezone)
    at = times.at(now, zone, now=now)
    next_at = times.at(due, zone, now=now)
    hours = int(_window(tracked).total_seconds() // 3600)
    waited = format_duration(timedelta(seconds=max(now - tracked.created_at, 0)))
    seen = (
        f"ThingSpace could not be asked about request `{request_id}` ({error})"
        if error
        else f"ThingSpace still lists request `{request_id}` as pending"
    )
    text = (
        f":hourglass_flowing_sand: No result yet after {waited}: at {at} {seen} (question {checks}). "
        f"I keep asking — next at {next_at}, for up to {hours} h after it was sent; the result will be "
        "posted here when it arrives."
    )
    key = f"stillpending:{request_id}"
    if outbox.get(db, key) is None:
        post_result(db, tracked, key=key, text=text, blocks=[blocks.section(text)])
        return
    try:
        outbox.enqueue_update(db, target_key=key, text=text, blocks=[blocks.section(text)])
    except outbox.UnknownMessage:  # the first note was purged: post a new one
        post_result(db, tracked, key=f"{key}:{checks}", text=text, blocks=[blocks.section(text)])


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
    post_key = (
        f"noresult:{tracked.request_id}" if status == outcomes.NO_RESULT else f"rc:{tracked.request_id}"
    )
    post_result(db, tracked, key=post_key, text=text, blocks=body)
    settle_single_root(db, tracked, key, status, detail, deps.settings, now=now, no_result_after=waited)


def purge_inbox_task(deps: Deps, now: float | None = None) -> int:
    """Delete processed callbacks older than :data:`INBOX_RETENTION`; returns how many."""
    now = deps.clock() if now is None else now
    db = deps.db()
    with write(db):
        return inbox.purge(db, before=now - INBOX_RETENTION.total_seconds())


def scheduled_tasks() -> list[ScheduledTask]:
    """Reconciliation (every 5 s; it asks only about requests whose turn it is) and the inbox
    retention (hourly)."""
    return [
        ScheduledTask("callbacks-no-result", check_unanswered, timedelta(seconds=5)),
        ScheduledTask("inbox-retention", purge_inbox_task, timedelta(hours=1)),
    ]
