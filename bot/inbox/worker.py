"""The inbox worker: stored callbacks → request outcomes, directory state, audit rows and Slack work.

One thread takes the oldest ``received`` inbox rows in batches and, in ONE write transaction per
batch, for each callback:

1. routes the unsolicited services by content — ExternalProvisioningChanges ("someone changed a
   line outside the bot") and ResumeTrackingNotification ("resumes in 7 days") become notices in
   the ops channel and update the device directory;
2. correlates the rest with the request the bot issued (``ts_requests``) by request id, and with
   the request's device by any of the callback's ids — directly, or through the device directory
   when ThingSpace names the line by another identifier than the one the bot sent;
3. records the device's outcome (never moving it back: see :mod:`bot.core.outcome_status`), updates the
   directory's state and auto-resume date, and appends an audit row (actor ``thingspace``);
4. queues the Slack side: a reply in the request's thread for a single device; for many devices
   one update of the root message per batch (the outbox coalesces them further), and the final
   summary when every device has answered.

The inbox rows are claimed (``storage.inbox.claim_received``) and marked in the same transaction,
so a crash replays a whole batch or nothing, and a second worker — in this process or in another
one started on the same database by mistake — never takes a row this one is processing: each
callback has its effect exactly once. A callback whose request id the bot never issued is
kept as ``unmatched`` (no action, no post), except a reachability callback when the worker was
given reachability handlers (watch monitors send callbacks for no request of the bot). A batch
that raises is retried row by row; a row that still raises is marked ``failed`` with the error's
type and retried at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlite_utils import Database

from bot.core import outcome_status as outcomes
from bot.core.config import Settings
from bot.core.durations import format_duration
from bot.core.logs import request_context
from bot.core.reachability import close_alerts
from bot.core.redact import mask_text
from bot.render import results
from bot.thingspace import shapes
from bot.thingspace.events import CallbackEvent, CallbackKind, InvalidCallback, guess_service, parse_callback
from storage import directory, inbox, outbox, pending, request_devices, requests, unknown_callbacks, watches
from storage.audit.events import THINGSPACE_ACTOR, AuditEvent, Outcome, Verb
from storage.audit.log import AuditLog
from storage.db import write
from storage.directory import DirectoryDevice
from storage.inbox import InboxRow
from storage.pool import ConnectionPool
from storage.requests import TrackedRequest
from storage.unknown_callbacks import UnknownItem

__all__ = [
    "InboxWorker",
    "Processor",
    "ReachabilityHandler",
    "approver_of",
    "post_result",
    "process_batch",
    "render_progress",
    "settle_single_root",
]

log = logging.getLogger(__name__)

#: Called for every DiagnosticsService (reachability) callback, whether or not it answers a
#: request of the bot (watch monitors send their own): ``handler(db, event, now)``. Handlers run in
#: the worker's write transaction, so their writes commit with the callback's; no network calls.
#: The composition root gives the worker its handlers (the watch alerts'
#: :func:`bot.core.reachability.on_callback`); with one, a reachability callback of an unknown
#: request is ``processed``.
ReachabilityHandler = Callable[[Database, CallbackEvent, float], None]
#: Offered every callback that answers no request of the bot (a device-originated SMS or NIDD
#: message): ``handler(db, event, now)`` returns True when it took it (the row is then
#: ``processed``). Same rules as the reachability handlers; the composition root gives
#: :meth:`bot.inbox.device_messages.DeviceMessages.on_callback`.
MessageHandler = Callable[[Database, CallbackEvent, float], bool]


#: A callback may arrive before the bot has recorded the request it answers; for this long a row
#: unmatched for an unknown request id is processed as soon as the request is recorded.
UNMATCHED_GRACE = 600.0

_NOTICE_KINDS = (CallbackKind.EXTERNAL_CHANGE, CallbackKind.RESUME_WARNING)
#: the service behind a tracked request's verb, where it is not CarrierService
_VERB_SERVICES = {
    "reach": shapes.DIAGNOSTICS_SERVICE,
    "sms": shapes.ENHANCED_CONNECTIVITY_SERVICE,
    "nidd": shapes.NIDD_SERVICE,
    "sms-history": shapes.DEVICE_SERVICE,
}
#: the line state a request of this verb leaves behind when it succeeded
_VERB_STATES = {"suspend": "suspend", "resume": "active"}
_CHANGE_STATES = {
    "suspend": "suspend",
    "resume": "active",
    "restore": "active",
    "activate": "active",
    "deactivate": "deactive",
}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class Processor:
    """Processes one batch of inbox rows inside the caller's write transaction."""

    db: Database
    settings: Settings
    now: float
    reachability_handlers: Sequence[ReachabilityHandler] = ()
    message_handlers: Sequence[MessageHandler] = ()
    requests_cache: dict[str, TrackedRequest | None] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    audit: list[AuditEvent] = field(default_factory=list)
    #: callback outcomes of this batch: (request, status, kind, fault code, applied) -> [(device, inbox id)]
    outcome_groups: dict[tuple[str, str, str, str, bool], list[tuple[str, int]]] = field(default_factory=dict)
    marks: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)
    posts: int = 0
    deferred: int = 0
    #: ids of the inbox rows this batch claimed
    claimed: list[int] = field(default_factory=list)
    _now_iso: str = ""

    @property
    def now_iso(self) -> str:
        if not self._now_iso:
            self._now_iso = _iso(datetime.fromtimestamp(self.now, UTC)) or ""
        return self._now_iso

    @property
    def no_result_text(self) -> str:
        return format_duration(self.settings.no_result_after)

    # -- the batch ------------------------------------------------------------------------------

    def handle(self, row: InboxRow) -> None:
        try:
            event = parse_callback(row.payload, service=self._service_hint(row))
        except InvalidCallback as exc:  # stored by an older version with other rules
            log.warning("inbox row %d is not readable any more: %s", row.id, exc)
            self._keep_unknown(row, f"stored earlier, not readable now: {exc}")
            self._mark(row, "unmatched")
            return
        if event.kind in _NOTICE_KINDS:
            self._notice(row, event)
            self._mark(row, "processed")
            return
        if event.service == shapes.DIAGNOSTICS_SERVICE:
            for handler in self.reachability_handlers:
                handler(self.db, event, self.now)
        if any(handler(self.db, event, self.now) for handler in self.message_handlers):
            self.posts += 1
            self._mark(row, "processed")
            return
        tracked = self._request(event.request_id)
        if tracked is None:
            if event.service == shapes.DIAGNOSTICS_SERVICE and self.reachability_handlers:
                self._mark(row, "processed")
                return
            log.info(
                "callback %d (%s) answers request %s, which the bot did not issue (yet): kept, not acted on",
                row.id,
                event.kind.value,
                event.request_id,
            )
            if event.kind in (CallbackKind.SUCCEEDED, CallbackKind.UNKNOWN):
                # Nothing to read it against: neither its content nor a request of ours says
                # what it is. Kept for `tsbot callbacks unknown` (and revived here as usual if
                # the request turns up within the grace period).
                self._keep_unknown(row, "a request the bot did not issue, and content it does not know")
            self._mark(row, "unmatched", inbox.UNKNOWN_REQUEST)
            return
        self._result(row, event, tracked)

    def finish(self, *, last_id: int = 0, defer_progress: bool = False) -> None:
        """Progress of the multi-device requests touched, the audit rows, the inbox marks.

        With *defer_progress* (draining a backlog), a request whose later callbacks are already
        waiting in the inbox is rendered by the batch that takes them instead: the final summary
        then does not queue behind an intermediate update in Slack's 3-second update pacing.
        """
        for request_id in sorted(self.touched):
            if defer_progress and inbox.has_received(self.db, request_id, after_id=last_id):
                self.deferred += 1
                continue
            tracked = self._request(request_id)
            if tracked is not None:
                render_progress(self.db, tracked, self.settings, now=self.now)
        self._audit_outcomes()
        if self.audit:
            AuditLog(self.db).record_many(self.audit)
        for (state, error), ids in self.marks.items():
            inbox.mark(self.db, ids, state, error=error, now=self.now)

    # -- helpers --------------------------------------------------------------------------------

    def _audit_outcomes(self) -> None:
        """One audit row per request and identical outcome in this batch; its targets are the
        devices (so ``history <device>`` finds each), its detail the inbox rows behind it."""
        at = datetime.fromtimestamp(self.now, UTC)
        for (request_id, status, kind, code, applied), members in self.outcome_groups.items():
            tracked = self._request(request_id)
            assert tracked is not None
            self.audit.append(
                AuditEvent(
                    at=at,
                    actor=THINGSPACE_ACTOR,
                    channel=tracked.channel,
                    verb=Verb.CALLBACK,
                    targets=[key for key, _ in members],
                    reason=tracked.reason,
                    outcome=Outcome.FAILED if status in outcomes.FAILURES else Outcome.OK,
                    request_id=request_id,
                    detail={
                        "operation": tracked.verb,
                        "kind": kind,
                        "status": status,
                        "code": code,
                        "applied": applied,
                        "callbacks": len(members),
                        "inbox_ids": [inbox_id for _, inbox_id in members],
                    },
                )
            )

    def _mark(self, row: InboxRow, state: str, error: str | None = None) -> None:
        self.marks.setdefault((state, error), []).append(row.id)

    def _service_hint(self, row: InboxRow) -> str | None:
        """The service a callback belongs to when its content cannot say.

        A failure callback carries only ``faultResponse``, and ThingSpace does not name the service
        in the body; the request it answers does: a reachability query or monitor start, or an SMS.
        """
        if row.kind != CallbackKind.ACTION_FAILED.value:
            return row.service or None
        tracked = self._request(row.request_id)
        if tracked is not None and tracked.verb in _VERB_SERVICES:
            return _VERB_SERVICES[tracked.verb]
        if tracked is None and watches.is_monitor_request(self.db, row.request_id):
            return shapes.DIAGNOSTICS_SERVICE
        return row.service or None

    def _request(self, request_id: str) -> TrackedRequest | None:
        if request_id not in self.requests_cache:
            self.requests_cache[request_id] = requests.get_request(self.db, request_id)
        return self.requests_cache[request_id]

    def _directory_entry(self, event: CallbackEvent) -> DirectoryDevice | None:
        for device_id in event.device_ids:
            entry = directory.lookup(self.db, device_id.kind, device_id.id)
            if entry is not None:
                return entry
        return None

    def _match(
        self, tracked: TrackedRequest, event: CallbackEvent
    ) -> tuple[str | None, str, DirectoryDevice | None]:
        """(the request's device key, its current status, the directory entry)."""
        entry = self._directory_entry(event)
        candidates = [str(d) for d in event.device_ids]
        if entry is not None:
            candidates += [entry.key, *(f"{k}:{v}" for k, v in entry.ids.items())]
        found = request_devices.find_device(self.db, tracked.request_id, candidates)
        if found is None:
            return None, "", entry
        return found[0], found[1], entry

    def _detail(self, event: CallbackEvent) -> dict[str, Any]:
        detail: dict[str, Any] = {"kind": event.kind.value, "at": self.now_iso}
        if event.fault_code:
            detail["code"] = event.fault_code
        if event.fault_message:
            detail["reason"] = mask_text(event.fault_message)[:300]
        if event.state:
            detail["state"] = event.state
        if event.resume_date is not None:
            detail["resume_date"] = _iso(event.resume_date)
        if event.sms_status:
            detail["sms_status"] = event.sms_status
        if event.reachable_until is not None:
            detail["reachable_until"] = _iso(event.reachable_until)
        if event.monitor_id:
            detail["monitor_id"] = event.monitor_id
        if event.nidd_status:
            detail["nidd_status"] = event.nidd_status
        if event.kind is CallbackKind.SMS_HISTORY:
            detail["sms_events"] = [dict(e) for e in event.sms_events[:500]]
        return detail

    def _result(self, row: InboxRow, event: CallbackEvent, tracked: TrackedRequest) -> None:
        key, current, entry = self._match(tracked, event)
        if key is None:
            log.warning(
                "callback %d names a device that is not part of request %s: kept, not acted on",
                row.id,
                tracked.request_id,
            )
            self._mark(row, "unmatched", "device not in request")
            return
        status = outcomes.status_for(event, tracked.verb)
        self._mark(row, "processed")
        if status is None:
            return
        detail = self._detail(event)
        applied = outcomes.supersedes(status, current)
        if applied:
            requests.set_device_outcome(self.db, tracked.request_id, key, status, detail, now=self.now)
            self._update_directory(entry, event, status, tracked.verb)
            if tracked.verb == "suspend" and status == outcomes.OK:
                # suspended through the bot: its watch alert is expected, not news
                devices = [key] + ([entry.key] if entry is not None and entry.key != key else [])
                close_alerts(self.db, self.settings, devices, how="suspended", now=self.now, by=tracked.actor)
        group = (tracked.request_id, status, event.kind.value, event.fault_code, applied)
        self.outcome_groups.setdefault(group, []).append((key, row.id))
        if not applied:
            return
        if tracked.device_count > 1:
            self.touched.add(tracked.request_id)
            return
        self._single_reply(row, tracked, key, entry, status, detail)

    def _single_reply(
        self,
        row: InboxRow,
        tracked: TrackedRequest,
        key: str,
        entry: DirectoryDevice | None,
        status: str,
        detail: dict[str, Any],
    ) -> None:
        text, body = results.single_reply(
            tracked.verb,
            status,
            detail,
            results.device_label(entry, key),
            tz=results.zone(self.settings.timezone),
            request_id=tracked.request_id,
            now=datetime.fromtimestamp(self.now, UTC),
            no_result_after=self.no_result_text,
        )
        post_result(self.db, tracked, key=f"cb:{row.id}", text=text, blocks=body)
        self.posts += 1
        if status in outcomes.FINAL:
            settle_single_root(
                self.db,
                tracked,
                key,
                status,
                detail,
                self.settings,
                now=self.now,
                no_result_after=self.no_result_text,
            )
            requests.set_request_state(self.db, tracked.request_id, "completed", now=self.now)

    def _update_directory(
        self, entry: DirectoryDevice | None, event: CallbackEvent, status: str, verb: str
    ) -> None:
        if entry is None or status != outcomes.OK:
            return
        if event.kind is CallbackKind.SUCCEEDED and verb in _VERB_STATES:
            resume = "" if _VERB_STATES[verb] == "active" else None
            directory.set_state(self.db, entry.key, _VERB_STATES[verb], resume_date=resume)
        elif event.kind is CallbackKind.SUSPENDED:
            directory.set_state(self.db, entry.key, "suspend", resume_date=_iso(event.resume_date))
        elif event.kind is CallbackKind.RESTORED:
            directory.set_state(self.db, entry.key, "active", resume_date="")
        elif event.kind is CallbackKind.STATE_CHANGED and event.state:
            directory.set_state(self.db, entry.key, event.state)

    def _keep_unknown(self, row: InboxRow, reason: str) -> None:
        """Copy an inbox row nobody can act on to the unknown-callback store (once)."""
        body = dict(row.payload)
        unknown_callbacks.insert_many(
            self.db,
            [
                UnknownItem(
                    fingerprint=unknown_callbacks.fingerprint(body),
                    service_guess=guess_service(body),
                    request_id="" if row.request_id == inbox.UNSOLICITED else row.request_id,
                    reason=reason,
                    payload=json.dumps(body, separators=(",", ":"), ensure_ascii=True),
                )
            ],
            now=self.now,
        )

    def _notice(self, row: InboxRow, event: CallbackEvent) -> None:
        entry = self._directory_entry(event)
        key = entry.key if entry else (str(event.device) if event.device else "")
        label = results.device_label(entry, key) if key else "an unknown line"
        tz = results.zone(self.settings.timezone)
        if event.kind is CallbackKind.EXTERNAL_CHANGE:
            new_state = event.state or _CHANGE_STATES.get(event.change_type.lower(), "")
            if entry is not None and new_state:
                resume = "" if new_state == "active" else None
                directory.set_state(self.db, entry.key, new_state, resume_date=resume)
            text, body = results.external_change_notice(
                label,
                change_type=event.change_type,
                state=new_state,
                changed_by=event.changed_by,
                at=event.event_time,
                tz=tz,
                request_id=event.request_id,
            )
        else:
            if entry is not None and event.resume_date is not None:
                directory.set_state(
                    self.db, entry.key, entry.state or "suspend", resume_date=_iso(event.resume_date)
                )
            text, body = results.resume_warning_notice(
                label,
                resume_date=event.resume_date,
                comment=event.comment,
                tz=tz,
                request_id=event.request_id,
            )
        channel = self.settings.ops_channel
        if channel:
            outbox.enqueue_post(self.db, key=f"notice:{row.id}", channel=channel, text=text, blocks=body)
            self.posts += 1
        else:
            log.warning("no ops channel configured ([channels] ops): %s notice not posted", event.service)
        self.audit.append(
            AuditEvent(
                at=datetime.fromtimestamp(self.now, UTC),
                actor=THINGSPACE_ACTOR,
                channel=channel,
                verb=Verb.CALLBACK,
                targets=[key] if key else [],
                outcome=Outcome.OK,
                request_id=event.request_id,
                detail={
                    "kind": event.kind.value,
                    "service": event.service,
                    "change_type": event.change_type,
                    "state": event.state,
                    "resume_date": _iso(event.resume_date),
                    "inbox_id": row.id,
                },
            )
        )


def post_result(
    db: Database, tracked: TrackedRequest, *, key: str, text: str, blocks: list[dict[str, Any]]
) -> None:
    """A reply in the request's results thread (or a plain post if the root is unknown)."""
    root = outbox.get(db, tracked.thread_key) if tracked.thread_key else None
    if root is not None and root.kind == "post" and root.channel == tracked.channel:
        outbox.enqueue_post(
            db, key=key, channel=tracked.channel, text=text, blocks=blocks, thread_key=root.key
        )
    else:
        outbox.enqueue_post(db, key=key, channel=tracked.channel, text=text, blocks=blocks)


def render_progress(db: Database, tracked: TrackedRequest, settings: Settings, *, now: float) -> bool:
    """Rebuild the root message of a multi-device request; True when it is complete."""
    no_result_after = format_duration(settings.no_result_after)
    # a bulk action of more than 10,000 lines went out as several requests: one bar for all
    parts = requests.batch(db, tracked)
    tally = results.Tally.of(
        request_devices.status_groups(db, [p.request_id for p in parts]),
        total=requests.batch_total(parts),
        no_result_after=no_result_after,
    )
    root = outbox.get(db, tracked.thread_key) if tracked.thread_key else None
    root_text = str(root.payload.get("text", "")) if root is not None else ""
    root_blocks = root.payload.get("blocks") if root is not None else None
    if not root_text:
        root_text = f"{tracked.verb} of {tally.total:,} devices · request `{tracked.request_id}`"
    root_text = results.headline(root_text, root_blocks)
    waiting: list[str] = []
    if not tally.complete and tally.total - tally.done <= results.NAME_UP_TO:
        open_statuses = [outcomes.PENDING, *sorted(outcomes.INTERMEDIATE)]
        keys = [
            k for p in parts for k in request_devices.devices_with_status(db, p.request_id, open_statuses)
        ]
        waiting = _labels(db, keys[: results.NAME_UP_TO])
    text, body = results.progress_message(
        tracked.verb,
        tracked.request_id,
        root_text,
        root_blocks,
        tally,
        no_result_after=no_result_after,
        waiting=waiting,
    )
    if root is not None and root.kind == "post":
        outbox.enqueue_update(db, target_key=root.key, text=text, blocks=body)
    elif tally.complete:
        outbox.enqueue_post(
            db, key=f"summary:{tracked.request_id}", channel=tracked.channel, text=text, blocks=body
        )
    if tally.complete:
        _settle(db, tracked, tally, [p.request_id for p in parts])
        for part in parts:
            if part.state != "completed":
                requests.set_request_state(db, part.request_id, "completed", now=now)
    return tally.complete


def _labels(db: Database, keys: Sequence[str]) -> list[str]:
    out = []
    for key in keys:
        kind, _, value = key.partition(":")
        out.append(results.device_label(directory.lookup(db, kind, value), key))
    return out


def approver_of(db: Database, tracked: TrackedRequest) -> str:
    """Who approved the request's action (four eyes), or ``""``."""
    action_id = tracked.detail.get("pending")
    action = pending.get(db, str(action_id)) if action_id else None
    if action is None or not action.needs_approval or action.decided_by == action.actor:
        return ""
    return action.decided_by or ""


def _settle(db: Database, tracked: TrackedRequest, tally: results.Tally, request_ids: Sequence[str]) -> None:
    """Say in the thread, in a NEW message (an edit notifies nobody), that the request (all its
    parts) settled; a late callback that changes the count updates that message."""
    unfinished: list[tuple[str, str]] = []
    if 0 < tally.failed <= results.NAME_UP_TO:
        for request_id in request_ids:
            keys = request_devices.devices_with_status(db, request_id, sorted(outcomes.FAILURES))
            statuses = dict(request_devices.statuses(db, request_id, keys))
            unfinished += list(
                zip(_labels(db, keys), [statuses.get(k, outcomes.FAILED) for k in keys], strict=True)
            )
    text, body = results.settle_message(
        tracked.verb,
        tracked.request_id,
        tally,
        actor=tracked.actor,
        approver=approver_of(db, tracked),
        unfinished=unfinished,
    )
    key = f"settled:{tracked.thread_key or tracked.request_id}"
    if outbox.get(db, key) is None:
        post_result(db, tracked, key=key, text=text, blocks=body)
    else:
        outbox.enqueue_update(db, target_key=key, text=text, blocks=body)


def settle_single_root(
    db: Database,
    tracked: TrackedRequest,
    key: str,
    status: str,
    detail: dict[str, Any],
    settings: Settings,
    *,
    now: float,
    no_result_after: str,
) -> None:
    """Rewrite a one-device request's in-channel message to its outcome, keeping its context."""
    root = outbox.get(db, tracked.thread_key) if tracked.thread_key else None
    if root is None or root.kind != "post":
        return
    kind, _, value = key.partition(":")
    line = results.single_root(
        tracked.verb,
        status,
        detail,
        results.device_label(directory.lookup(db, kind, value), key),
        actor=tracked.actor,
        reason=tracked.reason,
        tz=results.zone(settings.timezone),
        now=datetime.fromtimestamp(now, UTC),
        no_result_after=no_result_after,
        headline=results.headline(str(root.payload.get("text", "")), root.payload.get("blocks")),
    )
    if not line:
        return
    rest = [dict(b) for b in (root.payload.get("blocks") or [])[1:]]
    outbox.enqueue_update(
        db,
        target_key=root.key,
        text=line,
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": line}}, *rest],
    )


def process_batch(
    db: Database,
    settings: Settings,
    *,
    now: float,
    holder: str,
    limit: int = 500,
    ids: list[int] | None = None,
    defer_progress: bool = False,
    reachability_handlers: Sequence[ReachabilityHandler] = (),
    message_handlers: Sequence[MessageHandler] = (),
) -> Processor:
    """Claim the oldest *limit* received callbacks (or those of *ids* still received) and process
    them in one transaction with their audit rows; ``claimed`` on the result lists the rows taken
    (none if another worker got there first)."""
    processor = Processor(db, settings, now, reachability_handlers, message_handlers)
    with AuditLog(db).transaction():
        rows = inbox.claim_received(db, holder=holder, limit=limit, ids=ids, now=now)
        processor.claimed = [row.id for row in rows]
        for row in rows:
            processor.handle(row)
        processor.finish(last_id=max((r.id for r in rows), default=0), defer_progress=defer_progress)
    return processor


class InboxWorker:
    """The thread that drains the inbox. ``run_once()`` processes one batch (tests call it too).

    The intake comes first: while callbacks are arriving (``intake_busy()`` is true) the worker
    takes small slices (``burst_batch`` rows, then a ``burst_pause``), so a burst of 10,000
    callbacks is acknowledged at full speed — one Python process shares one interpreter lock
    between the HTTP server and this thread — and the progress message still moves. When the
    burst ends the worker drains the backlog in full batches, rendering a request's message only
    when none of its callbacks is left waiting (so the summary is the next update Slack gets).
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        settings: Settings,
        wake_outbox: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        batch_size: int = 2000,
        poll: float = 1.0,
        intake_busy: Callable[[], bool] = lambda: False,
        burst_batch: int = 100,
        burst_pause: float = 0.2,
        reachability_handlers: Sequence[ReachabilityHandler] = (),
        message_handlers: Sequence[MessageHandler] = (),
    ) -> None:
        self.pool = pool
        self.reachability_handlers = tuple(reachability_handlers)
        self.message_handlers = tuple(message_handlers)
        self.intake_busy = intake_busy
        self.burst_batch = burst_batch
        self.burst_pause = burst_pause
        self.settings = settings
        self.wake_outbox = wake_outbox
        self.clock = clock
        self.batch_size = batch_size
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False
        self.processed = 0
        #: recorded as ``claimed_by`` on the rows this worker processes
        self.holder = f"{socket.gethostname()}:{os.getpid()}:inbox-{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        if self._thread is not None:
            return
        db = self.pool.get()
        with write(db):
            retried = inbox.requeue_failed(db)
        if retried:
            log.warning("retrying %d inbox row(s) that failed before", retried)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="inbox-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def idle(self) -> bool:
        return not self._busy and inbox.depth(self.pool.get()) == 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            burst = self.intake_busy()
            try:
                with request_context():
                    done = self.run_once(limit=self.burst_batch if burst else None)
            except Exception:
                log.exception("inbox worker batch failed; retrying shortly")
                done = 0
                self._stop.wait(self.poll)
            if burst:
                self._stop.wait(self.burst_pause)
            elif done == 0:
                self._wake.wait(self.poll)

    def run_once(self, limit: int | None = None) -> int:
        """Process the oldest batch of received callbacks; returns how many rows it took."""
        db = self.pool.get()
        now = self.clock()
        # Before each batch, so an early callback is processed before a later one of its request
        # (ThingSpace's "SMS sent" before its "delivered").
        revived = inbox.revive_unmatched(db, since=now - UNMATCHED_GRACE)
        if revived:
            log.info("%d early callback(s) now match a recorded request", revived)
        if not inbox.waiting(db):
            return 0  # the usual idle poll: no write transaction at all
        self._busy = True
        try:
            now = self.clock()
            try:
                done = process_batch(
                    db,
                    self.settings,
                    now=now,
                    holder=self.holder,
                    limit=limit or self.batch_size,
                    defer_progress=limit is None,
                    reachability_handlers=self.reachability_handlers,
                    message_handlers=self.message_handlers,
                )
                taken, posts = done.claimed, done.posts + len(done.touched)
            except Exception as exc:  # noqa: BLE001 - any failure: isolate the bad row below
                log.warning("a batch of callbacks failed (%s); processing one by one", type(exc).__name__)
                taken, posts = self._one_by_one(db, limit or self.batch_size, now)
            self.processed += len(taken)
            if posts:
                self.wake_outbox()
            return len(taken)
        finally:
            self._busy = False

    def _one_by_one(self, db: Database, limit: int, now: float) -> tuple[list[int], int]:
        """After a failed batch: the same rows one per transaction; a row that still fails is
        marked ``failed`` (unless another worker processed it meanwhile)."""
        ids = inbox.received_ids(db, limit=limit)
        taken: list[int] = []
        posts = 0
        for row_id in ids:
            try:
                done = process_batch(
                    db,
                    self.settings,
                    now=now,
                    holder=self.holder,
                    ids=[row_id],
                    reachability_handlers=self.reachability_handlers,
                    message_handlers=self.message_handlers,
                )
                taken += done.claimed
                posts += done.posts + len(done.touched)
            except Exception as exc:
                log.exception("callback %d could not be processed; marked failed", row_id)
                with write(db):
                    inbox.mark(db, [row_id], "failed", error=type(exc).__name__, now=now)
                taken.append(row_id)
        return taken, posts
