"""Scheduled work of reachability monitoring: evaluation ticks, monitor upkeep, digests, pruning,
and the command worker's two reachability jobs.

Task functions are module-level, take :class:`~commands.context.Deps` and ``now`` (tests pass a
clock); :func:`scheduled_tasks` lists them for the composition root:

=========================  ==============================  ======================================
task id                    every                           does
=========================  ==============================  ======================================
``reachability-evaluate``  ``[alerts] evaluate_every``     :func:`bot.core.reachability.evaluate`
``reachability-monitors``  10 min (and at start)           :func:`sync_monitors`: start, renew, stop
``alerts-digest``          1 min                           :func:`send_digests` once a day/channel
``reachability-prune``     6 h                             forget history older than 30 days
=========================  ==============================  ======================================

Only the process that holds the scheduler lease runs their bodies (:mod:`bot.scheduler.lease`).

The command worker runs :func:`run_monitor_job` for the ``watch-monitors`` job (queued by
``watch``/``unwatch`` so monitors start at once, not at the next tick) and :func:`run_alert_diag`
for the ``alert-diag`` job (Diagnose → the card's thread); the composition root gives it both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

from sqlite_utils import Database

from bot.audit.calls import current_principal
from bot.core import reachability
from bot.core.config import Settings
from bot.core.redact import mask_text
from bot.render import alert_cards
from bot.scheduler.tasks import ScheduledTask
from bot.thingspace.errors import InvalidRequest, ThingSpaceError
from bot.thingspace.ids import DeviceId
from commands import diag
from commands.context import Deps
from storage import alerts, outbox, watches
from storage.audit.events import SYSTEM_ACTOR, AuditEvent, Outcome
from storage.audit.log import AuditLog
from storage.db import write
from storage.jobs import Job

__all__ = [
    "DIGEST_GRACE",
    "HISTORY_KEEP",
    "MONITOR_CHUNK",
    "MONITOR_REQUEST_TYPE",
    "MonitorSync",
    "digest_day",
    "digest_task",
    "evaluate_task",
    "monitors_task",
    "prune_task",
    "run_alert_diag",
    "run_monitor_job",
    "scheduled_tasks",
    "send_digests",
    "sync_monitors",
]

log = logging.getLogger(__name__)

#: Reachability for data, plus loss-of-connectivity reports (Verizon: "Monitor Device Reachability";
#: SDK ``NotificationReportRequest``).
MONITOR_REQUEST_TYPE = "REACHABLE_FOR_DATA_AND_LOSS"
#: Devices per start request (ThingSpace takes bulk lists; smaller bodies fail less).
MONITOR_CHUNK = 1000
#: At most this many devices get a monitor per run; the rest follow at the next run.
MONITOR_MAX_PER_RUN = 20_000
#: Monitor ids per stop request.
STOP_CHUNK = 100
#: ThingSpace said the request itself is wrong: ask again only after a day.
RETRY_INVALID = 86_400.0
#: The digest goes out at ``digest_time`` or up to this long after (a restart catches up).
DIGEST_GRACE = timedelta(hours=6)
#: Reachability history is kept this long.
HISTORY_KEEP = timedelta(days=30)


# -- monitors ------------------------------------------------------------------------------------


@dataclass
class MonitorSync:
    requested: int = 0
    failed: int = 0
    stopped: int = 0
    request_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sync_monitors(deps: Deps, *, now: float) -> MonitorSync:
    """Start monitors for watches without a live one (or whose one expires within a quarter of
    :data:`bot.core.reachability.MONITOR_TTL`), and stop the monitors of unwatched devices and replaced ones.

    Rows are claimed in a write transaction before each ThingSpace call, so two runners (the
    worker after a ``watch`` and the scheduled job) never ask for the same device twice.
    """
    db = deps.db()
    ttl = reachability.MONITOR_TTL.total_seconds()
    result = MonitorSync()
    while result.requested + result.failed < MONITOR_MAX_PER_RUN:
        with write(db):
            candidates = watches.monitor_candidates(db, now=now, renew_before=ttl / 4, limit=MONITOR_CHUNK)
            if not candidates:
                break
            kind = candidates[0].kind  # one kind of identifier per request
            chunk = [w for w in candidates if w.kind == kind]
            row_ids = watches.claim_monitor_starts(db, chunk, expires_at=now + ttl, now=now)
        _start(deps, db, chunk, row_ids, now=now, ttl=ttl, result=result)
    while True:
        with write(db):
            claimed = watches.claim_stops(db, now=now, limit=STOP_CHUNK * 5)
        if not claimed:
            break
        if not _stop(deps, db, claimed, now=now, result=result):
            break
    return result


def _start(
    deps: Deps,
    db: Database,
    chunk: list[watches.Watch],
    row_ids: list[int],
    *,
    now: float,
    ttl: float,
    result: MonitorSync,
) -> None:
    devices = [w.device for w in chunk]
    started = time.monotonic()
    try:
        ids = [DeviceId.from_wire({"kind": w.kind, "id": w.ident}) for w in chunk]
        accepted = deps.thingspace.start_reachability_monitor(
            ids, MONITOR_REQUEST_TYPE, datetime.fromtimestamp(now + ttl, UTC)
        )
    except ThingSpaceError as exc:
        wait = RETRY_INVALID if isinstance(exc, InvalidRequest) else reachability.MONITOR_RETRY
        message = mask_text(exc.user_message)
        with write(db):
            watches.release_monitor_claims(db, row_ids)
            watches.set_monitor_retry(db, devices, retry_at=now + wait, error=message)
            _audit_monitor_call(
                db, "start_reachability_monitor", devices, Outcome.FAILED, started, error=type(exc).__name__
            )
        result.failed += len(chunk)
        result.errors.append(message)
        log.warning("could not start reachability monitors for %d device(s): %s", len(chunk), message)
        return
    with write(db):
        watches.mark_monitors_requested(db, row_ids, request_id=accepted.request_id, now=now)
        watches.set_monitor_retry(db, devices, retry_at=None, error=None)
        for device in devices:  # from now on, silence counts
            reachability.refresh_due(db, device)
        _audit_monitor_call(
            db,
            "start_reachability_monitor",
            devices,
            Outcome.ACCEPTED,
            started,
            request_id=accepted.request_id,
        )
    result.requested += len(chunk)
    result.request_ids.append(accepted.request_id)


def _stop(
    deps: Deps, db: Database, claimed: list[tuple[int, str]], *, now: float, result: MonitorSync
) -> bool:
    by_monitor: dict[str, list[int]] = {}
    for row_id, monitor_id in claimed:
        by_monitor.setdefault(monitor_id, []).append(row_id)
    ids = list(by_monitor)
    for i in range(0, len(ids), STOP_CHUNK):
        part = ids[i : i + STOP_CHUNK]
        devices = watches.devices_of_monitor_rows(db, [r for monitor in part for r in by_monitor[monitor]])
        started = time.monotonic()
        try:
            accepted = deps.thingspace.stop_reachability_monitors(part)
        except ThingSpaceError as exc:
            rows = [r for monitor in ids[i:] for r in by_monitor[monitor]]
            message = mask_text(exc.user_message)
            with write(db):
                watches.unclaim_stops(db, rows, error=message, now=now)
                _audit_monitor_call(
                    db,
                    "stop_reachability_monitors",
                    devices,
                    Outcome.FAILED,
                    started,
                    error=type(exc).__name__,
                )
            result.errors.append(message)
            log.warning("could not stop %d reachability monitor(s): %s", len(ids) - i, message)
            return False
        with write(db):
            _audit_monitor_call(
                db,
                "stop_reachability_monitors",
                devices,
                Outcome.ACCEPTED,
                started,
                request_id=accepted.request_id,
            )
        result.stopped += len(part)
    return True


def _audit_monitor_call(
    db: Database,
    operation: str,
    devices: list[str],
    outcome: str,
    started: float,
    request_id: str | None = "",
    error: str = "",
) -> None:
    """One ``thingspace.call`` row for a monitor start or stop (inside the caller's transaction)."""
    AuditLog(db).record(
        AuditEvent.thingspace_call(
            actor=_actor(),
            operation=operation,
            targets=devices,
            outcome=outcome,
            latency_ms=(time.monotonic() - started) * 1000,
            request_id=request_id,
            error=error,
        )
    )


def _actor() -> str:
    """The user a watch or unwatch job runs for; the scheduler's own renewals are the system's."""
    principal = current_principal()
    return principal.actor if principal is not None else SYSTEM_ACTOR


def monitors_task(deps: Deps, now: float | None = None) -> MonitorSync:
    return sync_monitors(deps, now=deps.clock() if now is None else now)


def run_monitor_job(deps: Deps, job: Job) -> None:
    """The worker's ``watch-monitors`` job: sync now, tell the requester what ThingSpace said.
    With results polled there are no monitors: the watch is asked about by status queries."""
    if deps.settings.poll_results:
        return
    result = sync_monitors(deps, now=deps.clock())
    url = str(job.payload.get("response_url") or "")
    text = ""
    if result.errors:
        text = (
            f":warning: ThingSpace did not accept the reachability monitors of {result.failed:,} device(s): "
            f"{result.errors[0]} The bot asks again every {int(reachability.MONITOR_RETRY // 60)} min; "
            "`/ts watches DEVICE` shows where it stands."
        )
    elif result.requested:
        text = (
            f":satellite_antenna: ThingSpace is monitoring the reachability of {result.requested:,} device(s) "
            f"(request `{result.request_ids[0]}`)."
        )
    elif result.stopped:
        text = f":satellite_antenna: Stopped {result.stopped:,} reachability monitor(s) at ThingSpace."
    if text and url:
        db = deps.db()
        with write(db):
            outbox.enqueue_respond(db, key=f"job:{job.id}:reply", response_url=url, text=text)


# -- diagnose from a card --------------------------------------------------------------------------


def run_alert_diag(deps: Deps, job: Job) -> None:
    """The worker's ``alert-diag`` job: run diag and post the card in the alert's thread."""
    payload: dict[str, Any] = {**job.payload, "in_channel": True}  # posted in the alert's thread
    kind, _, ident = str(payload["device"]).partition(":")
    device_id = DeviceId.from_wire({"kind": kind, "id": ident})
    body: list[dict[str, Any]] | None
    try:
        text, body = diag.run_diag(deps, device_id, payload)
    except ThingSpaceError as exc:
        text, body = f":warning: ThingSpace could not answer: {exc.user_message}", None
    text = f"<@{payload['user']}> asked for diagnostics: {text}"
    db = deps.db()
    key = f"alert-diag:{job.id}"
    with write(db):
        try:
            outbox.enqueue_post(
                db,
                key=key,
                channel=payload["channel"],
                text=text,
                blocks=body,
                thread_key=payload["card_key"],
            )
        except outbox.UnknownMessage:
            outbox.enqueue_post(db, key=key, channel=payload["channel"], text=text, blocks=body)


# -- evaluation, digest, pruning -------------------------------------------------------------------


def evaluate_task(deps: Deps, now: float | None = None) -> reachability.Tick:
    tick = reachability.evaluate(deps.db(), deps.settings, now=deps.clock() if now is None else now)
    if tick.messages:
        deps.wake()
    return tick


def digest_day(settings: Settings, now: float) -> str | None:
    """The local date whose digest is due at *now*, else None.

    A day's digest is due from its ``digest_time`` for :data:`DIGEST_GRACE` of real time (a bot that
    was down at that moment catches up when it starts). With a late ``digest_time`` that window
    crosses midnight, so yesterday's digest may still be due today. Times are compared as instants,
    not wall clocks: a DST change inside the window neither stretches nor shortens it, and a
    ``digest_time`` that does not exist on a spring-forward day falls an hour later, as clocks do.
    """
    tz = reachability.timezone_of(settings)
    hour, _, minute = settings.digest_time.partition(":")
    try:
        at = dt_time(int(hour), int(minute))
    except ValueError:
        log.warning("digest_time %r is not HH:MM; no digest", settings.digest_time)
        return None
    today = datetime.fromtimestamp(now, UTC).astimezone(tz).date()
    grace = DIGEST_GRACE.total_seconds()
    for day in (today, today - timedelta(days=1)):
        due = datetime.combine(day, at, tzinfo=tz).timestamp()
        if due <= now < due + grace:
            return day.isoformat()
    return None


def send_digests(db: Database, settings: Settings, *, now: float) -> int:
    """Queue today's digest for every channel with watches, once; returns how many were queued."""
    day = digest_day(settings, now)
    if day is None:
        return 0
    tz_name = settings.timezone or "UTC"
    start = now - 86_400
    sent = 0
    for counts in watches.channel_counts(db):
        channel = counts.channel
        with write(db):
            if not alerts.claim_digest(db, channel=channel, day=day, now=now):
                continue
            longest = alerts.longest_outage(db, channel=channel, start=start, end=now)
            label = reachability.labels_for(db, [longest.device])[longest.device] if longest else ""
            figures = alert_cards.DigestFigures(
                channel=channel,
                day=day,
                counts=counts,
                alerting=alerts.count_open(db, channel=channel),
                raised=alerts.raised_count(db, channel=channel, start=start, end=now),
                resolved=alerts.resolved_count(db, channel=channel, start=start, end=now),
                longest=longest,
                longest_label=label,
            )
            text, body = alert_cards.digest_message(figures, tz_name=tz_name)
            outbox.enqueue_post(db, key=f"digest:{channel}:{day}", channel=channel, text=text, blocks=body)
        sent += 1
    return sent


def digest_task(deps: Deps, now: float | None = None) -> int:
    sent = send_digests(deps.db(), deps.settings, now=deps.clock() if now is None else now)
    if sent:
        deps.wake()
    return sent


def prune_task(deps: Deps, now: float | None = None) -> int:
    now = deps.clock() if now is None else now
    db = deps.db()
    with write(db):
        return watches.prune_history(db, before=now - HISTORY_KEEP.total_seconds())


# -- the task list --------------------------------------------------------------------------------


#: the id of the monitor upkeep task (left out when results are polled: monitors only call back)
MONITORS_TASK = "reachability-monitors"


def scheduled_tasks(settings: Settings) -> list[ScheduledTask]:
    """Evaluation ticks, monitor upkeep (also at start), digests and history pruning."""
    return [
        ScheduledTask("reachability-evaluate", evaluate_task, settings.alert_evaluate_every),
        ScheduledTask(MONITORS_TASK, monitors_task, timedelta(minutes=10), at_start=True),
        ScheduledTask("alerts-digest", digest_task, timedelta(minutes=1)),
        ScheduledTask("reachability-prune", prune_task, timedelta(hours=6)),
    ]
