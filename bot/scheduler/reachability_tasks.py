"""Scheduled work of reachability monitoring: evaluation ticks, monitor upkeep, digests, pruning.

Job functions are module-level, take their dependencies and ``now`` (tests pass a clock), and
are registered by :func:`register` (appended to :data:`bot.jobs.EXTRA_JOBS`) with explicit ids,
``coalesce``, ``max_instances=1`` and a misfire grace of half the interval:

=========================  ==============================  ======================================
job id                     every                           does
=========================  ==============================  ======================================
``reachability-evaluate``  ``[alerts] evaluate_every``     :func:`bot.reachability.evaluate`
``reachability-monitors``  10 min (and at start)           :func:`sync_monitors`: start, renew, stop
``alerts-digest``          1 min                           :func:`send_digests` once a day/channel
``reachability-prune``     6 h                             forget history older than 30 days
=========================  ==============================  ======================================

Only the process that holds the scheduler lease runs their bodies (:mod:`bot.scheduler`).

Importing this module also plugs reachability into the rest of the bot: the inbox worker's
``REACHABILITY_HANDLERS`` (callbacks → state), the command worker's runners for the
``watch-monitors`` job (queued by ``watch``/``unwatch`` so monitors start at once, not at the next
tick) and the ``alert-diag`` job (Diagnose → the card's thread), and :mod:`commands.watch`
(verbs and buttons).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from bot.audit.calls import current_principal
from bot.core import reachability
from bot.core.config import Settings
from bot.core.redact import mask_text
from bot.inbox import worker as inbox_worker
from bot.render import alert_cards
from bot.scheduler.tasks import EXTRA_JOBS, add_interval_job
from bot.thingspace.errors import InvalidRequest, ThingSpaceError
from bot.thingspace.ids import DeviceId
from bot.worker import command_worker as worker
from commands.context import Deps
from storage import alerts, outbox, watches
from storage.audit.events import SYSTEM_ACTOR, AuditEvent, Outcome
from storage.audit.log import AuditLog
from storage.db import write
from storage.jobs import Job

if TYPE_CHECKING:
    from bot.app import Runtime

__all__ = [
    "DIGEST_GRACE",
    "HISTORY_KEEP",
    "MONITOR_CHUNK",
    "MONITOR_REQUEST_TYPE",
    "MonitorSync",
    "digest_day",
    "digest_job",
    "evaluate_job",
    "monitors_job",
    "prune_job",
    "register",
    "run_alert_diag",
    "run_monitor_job",
    "send_digests",
    "sync_monitors",
]

log = logging.getLogger(__name__)

#: Reachability for data, plus loss-of-connectivity reports (thingspace-api.md §9.1).
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
    :data:`bot.reachability.MONITOR_TTL`), and stop the monitors of unwatched devices and replaced ones.

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


def monitors_job(runtime: Runtime, now: float | None = None) -> MonitorSync:
    return sync_monitors(runtime.deps, now=runtime.clock() if now is None else now)


def run_monitor_job(deps: Deps, job: Job) -> None:
    """The worker's ``watch-monitors`` job: sync now, tell the requester what ThingSpace said."""
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
    from commands import diag

    payload: dict[str, Any] = dict(job.payload)
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


def evaluate_job(runtime: Runtime, now: float | None = None) -> reachability.Tick:
    tick = reachability.evaluate(
        runtime.pool.get(), runtime.settings, now=runtime.clock() if now is None else now
    )
    if tick.messages:
        runtime.wake()
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


def digest_job(runtime: Runtime, now: float | None = None) -> int:
    sent = send_digests(runtime.pool.get(), runtime.settings, now=runtime.clock() if now is None else now)
    if sent:
        runtime.wake()
    return sent


def prune_job(runtime: Runtime, now: float | None = None) -> int:
    now = runtime.clock() if now is None else now
    db = runtime.pool.get()
    with write(db):
        return watches.prune_history(db, before=now - HISTORY_KEEP.total_seconds())


# -- registration ----------------------------------------------------------------------------------


def register(scheduler: Any, runtime: Runtime) -> None:
    """Add the reachability jobs to the scheduler (an entry of :data:`bot.jobs.EXTRA_JOBS`)."""
    settings = runtime.settings
    add_interval_job(
        scheduler, evaluate_job, settings.alert_evaluate_every, "reachability-evaluate", [runtime]
    )
    add_interval_job(
        scheduler, monitors_job, timedelta(minutes=10), "reachability-monitors", [runtime], at_start=True
    )
    add_interval_job(scheduler, digest_job, timedelta(minutes=1), "alerts-digest", [runtime])
    add_interval_job(scheduler, prune_job, timedelta(hours=6), "reachability-prune", [runtime])
    runtime.metrics.alerts_firing_from(lambda: float(alerts.count_open(runtime.pool.get(), state="firing")))


if register not in EXTRA_JOBS:
    EXTRA_JOBS.append(register)
if reachability.on_callback not in inbox_worker.REACHABILITY_HANDLERS:
    inbox_worker.REACHABILITY_HANDLERS.append(reachability.on_callback)
worker.RUNNERS["watch-monitors"] = run_monitor_job
worker.RUNNERS["alert-diag"] = run_alert_diag

import commands.watch  # noqa: F401 - registers the watch verbs and the alert buttons
