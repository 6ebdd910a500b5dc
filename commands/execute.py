"""Carrying out a confirmed action on the worker: guard rails with fresh data, one ThingSpace
call, the request recorded, and an in-channel message that becomes the results thread.

The job was marked ``submitting`` before the call, so a crash after ThingSpace accepted it is
never followed by a blind resend (see storage.jobs).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot import blocks
from bot.redact import mask_text
from bot.thingspace.errors import ThingSpaceError
from commands import audit, guards
from commands.actions import API_CALLS
from commands.context import Deps
from commands.targets import ResolvedDevice, resolve_keys
from storage import jobs, outbox, pending, requests
from storage.jobs import Job

__all__ = ["LIMITS_CHECK_MAX", "run"]

log = logging.getLogger(__name__)

#: how the requester is told ThingSpace took the request
ACCEPTED = {
    "suspend": "the suspension of",
    "resume": "the resumption of",
    "cancel-location": "the cancel-location request for",
    "sms": "the SMS to",
}

#: up to this many devices, each line's limits are read from diagnostics before acting
LIMITS_CHECK_MAX = 25


def _limits(deps: Deps, devices: list[ResolvedDevice]) -> dict[str, guards.LineLimits]:
    """Read provisioning limits from diagnostics for small sets (bounded parallelism)."""
    if len(devices) > LIMITS_CHECK_MAX:
        return {}

    def one(device: ResolvedDevice) -> tuple[str, guards.LineLimits]:
        try:
            diag = deps.thingspace.extended_diagnostics(device.device_id)
        except ThingSpaceError:
            return device.key, guards.LineLimits()
        return device.key, guards.LineLimits(diag.actions_today, diag.suspended_days_year)

    with ThreadPoolExecutor(max_workers=min(8, len(devices) or 1)) as pool:
        return dict(pool.map(one, devices))


def run(deps: Deps, job: Job) -> None:
    db = deps.db()
    action = pending.get(db, job.payload["pending"])
    if action is None:
        with audit.transaction(db):
            jobs.finish(db, job.id, ok=False, error="pending action missing")
        return
    verb = action.verb
    devices = resolve_keys(db, action.devices)
    now = deps.clock()
    counts = requests.actions_today(db, [d.key for d in devices], day_start=guards.day_start(now))
    limits = _limits(deps, devices) if verb in guards.TARGET_STATE else {}
    checked = guards.check(verb, devices, bot_actions_today=counts, limits=limits)
    call = API_CALLS[verb][0]
    reply_key = f"execute:{action.id}"
    if not checked.ok:
        lines = [f"{d.label}: {why}" for d, why in [*checked.skipped, *checked.refused]]
        with audit.transaction(db):
            audit.record(
                db,
                actor=action.actor,
                channel=action.channel,
                verb=verb,
                outcome="refused",
                targets=action.devices,
                reason=action.reason,
                detail={"pending": action.id},
            )
            _tell(
                db,
                action,
                reply_key,
                "Nothing was sent to ThingSpace:\n" + "\n".join(f"• {x}" for x in lines[:20]),
            )
            jobs.finish(db, job.id)
        return
    with audit.transaction(db):
        jobs.start_submit(db, job.id)
    ids = [d.device_id for d in checked.ok]
    started = time.monotonic()
    try:
        if verb == "suspend":
            accepted = deps.thingspace.suspend(ids)
        elif verb == "resume":
            accepted = deps.thingspace.restore(ids)
        elif verb == "cancel-location":
            accepted = deps.thingspace.cancel_location(ids[0])
        elif verb == "sms":
            accepted = deps.thingspace.send_sms(
                ids, action.options["text"], encoding=action.options.get("encoding")
            )
        else:
            raise ValueError(f"not an action verb: {verb}")
    except ThingSpaceError as exc:
        latency = round((time.monotonic() - started) * 1000)
        with audit.transaction(db):
            audit.record(
                db,
                actor=action.actor,
                channel=action.channel,
                verb="thingspace.call",
                outcome="failed",
                targets=[d.key for d in checked.ok],
                reason=action.reason,
                detail={
                    "operation": verb,
                    "error": type(exc).__name__,
                    "message": mask_text(str(exc))[:300],
                    "latency_ms": latency,
                },
            )
            _tell(
                db,
                action,
                reply_key,
                f":x: ThingSpace refused the {verb}: {exc.user_message}. Nothing was changed.",
            )
            jobs.finish(db, job.id, ok=False, error=type(exc).__name__)
        deps.hook("thingspace_error", verb, type(exc).__name__)
        return
    latency = round((time.monotonic() - started) * 1000)
    request_id = accepted.request_id
    n = len(checked.ok)
    root = f"req:{request_id}"
    who = f"<@{action.actor}>"
    subject = f"{n:,} device{'s' if n != 1 else ''}" if n != 1 else checked.ok[0].label
    reason = f" — reason: _{action.reason}_" if action.reason else ""
    approved = f" · approved by <@{action.decided_by}>" if action.needs_approval and action.decided_by else ""
    headline = {
        "suspend": f":double_vertical_bar: {who} is suspending {subject}{reason}",
        "resume": f":arrow_forward: {who} is resuming {subject}{reason}",
        "cancel-location": f":satellite_antenna: {who} asked ThingSpace to cancel the location of {subject}{reason}",
        "sms": f":speech_balloon: {who} sent an SMS to {subject}: “{action.options.get('text', '')}”",
    }[verb]
    body = [
        blocks.section(headline),
        blocks.context(f"Request `{request_id}`{approved} · results will land in this thread"),
    ]
    notes = [f"{d.label}: {why}" for d, why in [*checked.skipped, *checked.refused]]
    if notes:
        body.append(
            blocks.context(
                f"Not sent ({len(notes)}): " + "; ".join(notes[:10]) + (" …" if len(notes) > 10 else "")
            )
        )
    if verb == "cancel-location":
        body.append(
            blocks.context(
                "ThingSpace queues cancel-location requests (a platform-wide hourly cap); it can take hours."
            )
        )
    with audit.transaction(db):
        outbox.enqueue_post(db, key=root, channel=action.channel, text=headline, blocks=body)
        requests.add_request(
            db,
            request_id=request_id,
            verb=verb,
            actor=action.actor,
            channel=action.channel,
            devices=[d.key for d in checked.ok],
            thread_key=root,
            response_url=action.response_url,
            reason=action.reason,
            detail={"pending": action.id, "text": action.options.get("text", "")},
        )
        audit.record(
            db,
            actor=action.actor,
            channel=action.channel,
            verb="thingspace.call",
            outcome="accepted",
            targets=[d.key for d in checked.ok],
            reason=action.reason,
            request_id=request_id,
            detail={
                "operation": call,
                "devices": n,
                "latency_ms": latency,
                "skipped": len(checked.skipped),
                "refused": len(checked.refused),
            },
        )
        _tell(
            db,
            action,
            reply_key,
            f"ThingSpace accepted {ACCEPTED[verb]} {subject} (request `{request_id}`). "
            "Results will appear in the channel thread.",
        )
        jobs.finish(db, job.id)
    deps.hook("thingspace_ok", verb, latency)


def _tell(db: Any, action: pending.PendingAction, key: str, text: str) -> None:
    """Tell the requester privately (their response_url while it is valid)."""
    if action.response_url:
        outbox.enqueue_respond(
            db, key=key, response_url=action.response_url, text=text, replace_original=False
        )
    else:
        outbox.enqueue_ephemeral(db, key=key, channel=action.channel, user=action.actor, text=text)
