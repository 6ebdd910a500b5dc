"""The worker's side of suspend, resume, cancel location and SMS.

Jobs of kind ``execute``, by payload:

* ``{"pending": id}`` — carry out a confirmed (or approved) action: guard rails again with fresh
  data (the bot's counts and every line's diagnostics), one ThingSpace call for the devices that
  still pass — only ever a subset of the ones the card listed —, the request recorded, and an
  in-channel message that becomes the results thread. The job was marked ``submitting`` before
  the call, so a crash after ThingSpace accepted it is never followed by a blind resend (see
  storage.jobs).
* ``{"limits": id, "notes": …}`` — complete a suspend/resume card with each line's limits;
* ``{"dry_run": {…}, "response_url": …}`` — the same for a ``--dry-run``;
* ``{"retry": {…}}`` — the card of a "Retry failed" click (:mod:`commands.retry`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from bot.core.redact import mask_text
from bot.render import blocks
from bot.render.blocks import Block
from bot.thingspace.errors import (
    ServerError,
    ThingSpaceConnectError,
    ThingSpaceError,
    ThingSpaceTransportError,
    UnexpectedResponse,
)
from commands import actions, audit, guards, retry
from commands.actions import API_CALLS, Notes
from commands.context import Deps
from commands.targets import ResolvedDevice, resolve_keys
from storage import jobs, outbox, pending, requests
from storage.audit.events import SYSTEM_ACTOR
from storage.jobs import Job
from storage.requests import UNCERTAIN_PREFIX

__all__ = ["PACE", "outcome_unknown", "run"]

#: seconds between the parts: ThingSpace's published pace is 100 requests a minute
PACE = 0.6

log = logging.getLogger(__name__)

#: the options of a NIDD action kept with its request, so "Retry failed" can send it again
NIDD_KEYS = ("data", "form", "bytes", "ttl")

#: how the requester is told ThingSpace took the request
ACCEPTED = {
    "suspend": "the suspension of",
    "resume": "the resumption of",
    "cancel-location": "the cancel-location request for",
    "sms": "the SMS to",
    "nidd": "the NIDD data for",
}


def run(deps: Deps, job: Job) -> None:
    payload = job.payload
    if "limits" in payload:
        _complete_card(deps, str(payload["limits"]), Notes.from_json(payload.get("notes")))
    elif "dry_run" in payload:
        _complete_dry_run(deps, payload["dry_run"], str(payload.get("response_url", "")))
    elif "retry" in payload:
        retry.complete(deps, payload["retry"])
    else:
        _execute(deps, job)


def _check(
    deps: Deps, verb: str, devices: list[ResolvedDevice]
) -> tuple[guards.GuardResult, dict[str, guards.LineLimits]]:
    """The guard rails with today's counts and, for suspend/resume, every line's provisioning history."""
    now = deps.clock()
    counts = requests.actions_today(deps.db(), [d.key for d in devices], day_start=guards.day_start(now))
    at = datetime.fromtimestamp(now, UTC)
    limits = guards.read_limits(deps.thingspace, devices, now=at) if verb in actions.LIMITED else {}
    checked = guards.check(
        verb, devices, bot_actions_today=counts, limits=limits, nidd_plans=deps.settings.nidd_plans
    )
    return checked, limits


def _complete_card(deps: Deps, action_id: str, notes: Notes) -> None:
    """Redraw a suspend/resume card once each listed line's limits are known. If some lines are
    off, the card's pending action is superseded by one holding only the others (the old buttons
    stop working); a card already confirmed or cancelled is left alone — execution checks again."""
    db = deps.db()
    action = pending.get(db, action_id)
    if action is None or action.state != "pending" or not action.response_url:
        return
    devices = resolve_keys(db, action.devices)
    checked, _ = _check(deps, action.verb, devices)
    dropped = [*checked.skipped, *checked.refused]
    notes = notes.then(checked)
    now = deps.clock()
    with audit.transaction(db):
        current = pending.get(db, action_id)
        if current is None or current.state != "pending" or current.expires_at <= now:
            return
        if not dropped:
            reply = actions.confirm_card(
                deps, current, devices, notes, limits="read", allowance=checked.allowance
            )
        else:
            claimed = pending.claim(
                db, action_id, from_state="pending", to_state=actions.SUPERSEDED, by=SYSTEM_ACTOR, now=now
            )
            if claimed is None:
                return
            replacement = None
            if checked.ok:
                replacement = pending.create(
                    db,
                    verb=action.verb,
                    actor=action.actor,
                    channel=action.channel,
                    devices=[d.key for d in checked.ok],
                    reason=action.reason,
                    options=action.options,
                    needs_approval=len(checked.ok) > deps.settings.approval_size,
                    ttl=action.expires_at - now,
                    response_url=action.response_url,
                    now=now,
                )
            audit.record(
                db,
                actor=SYSTEM_ACTOR,
                channel=action.channel,
                verb=action.verb,
                outcome=audit.Outcome.REFUSED,
                targets=[d.key for d, _ in dropped],
                reason=action.reason,
                detail={
                    "pending": action.id,
                    "requested_by": action.actor,
                    "why": {d.key: why for d, why in dropped[:50]},
                    "replaced_by": replacement.id if replacement else None,
                    "digest": replacement.digest if replacement else None,
                    "devices": len(checked.ok),
                },
            )
            if replacement is None:
                reply = actions.nothing_to_do(notes)
            else:
                reply = actions.confirm_card(
                    deps, replacement, checked.ok, notes, limits="read", allowance=checked.allowance
                )
        outbox.enqueue_respond(
            db,
            key=f"limits:{action_id}",
            response_url=action.response_url,
            text=reply.text,
            blocks=reply.blocks,
            replace_original=True,
        )
    deps.wake()


def _complete_dry_run(deps: Deps, spec: dict[str, Any], response_url: str) -> None:
    """Redraw a suspend/resume ``--dry-run`` answer with each line's limits."""
    if not response_url:
        return
    verb = str(spec["verb"])
    devices = resolve_keys(deps.db(), [str(k) for k in spec.get("devices", [])])
    checked, _ = _check(deps, verb, devices)
    notes = Notes.from_json(spec.get("notes")).then(checked)
    reply = actions.dry_run_reply(
        deps, verb, checked.ok, notes, {}, limits="read", allowance=checked.allowance
    )
    db = deps.db()
    with audit.transaction(db):
        outbox.enqueue_respond(
            db,
            key=f"dry-run:{time.time_ns()}",
            response_url=response_url,
            text=reply.text,
            blocks=reply.blocks,
            replace_original=True,
        )
    deps.wake()


def _execute(deps: Deps, job: Job) -> None:
    db = deps.db()
    action = pending.get(db, job.payload["pending"])
    if action is None:
        with audit.transaction(db):
            jobs.finish(db, job.id, ok=False, error="pending action missing")
        return
    verb = action.verb
    devices = resolve_keys(db, action.devices)
    checked, _ = _check(deps, verb, devices)
    call = API_CALLS[verb][0]
    reply_key = f"execute:{action.id}"
    if not checked.ok:
        lines = [f"{d.shown}: {blocks.escape(why)}" for d, why in [*checked.skipped, *checked.refused]]
        with audit.transaction(db):
            audit.record(
                db,
                actor=action.actor,
                channel=action.channel,
                verb=verb,
                outcome=audit.Outcome.REFUSED,
                targets=action.devices,
                reason=action.reason,
                detail={"pending": action.id},
            )
            actions.tell_requester(
                db,
                action,
                reply_key,
                "Nothing was sent to ThingSpace:\n" + "\n".join(f"• {x}" for x in lines[:20]),
                now=deps.clock(),
            )
            jobs.finish(db, job.id)
        return
    with audit.transaction(db):
        jobs.start_submit(db, job.id)
    if len(checked.ok) > deps.settings.request_size:
        _execute_in_parts(deps, job, action, checked)
        return
    ids = [d.device_id for d in checked.ok]
    started = time.monotonic()
    try:
        submit = deps.verbs[verb].submit
        if submit is None:
            raise ValueError(f"not an action verb: {verb}")
        accepted = submit(deps.thingspace, ids, action.options)
    except ThingSpaceError as exc:
        latency = round((time.monotonic() - started) * 1000)
        uncertain = outcome_unknown(exc)
        with audit.transaction(db):
            audit.record(
                db,
                actor=action.actor,
                channel=action.channel,
                verb=audit.Verb.THINGSPACE_CALL,
                outcome=audit.Outcome.QUEUED if uncertain else audit.Outcome.FAILED,
                targets=[d.key for d in checked.ok],
                reason=action.reason,
                detail={
                    "operation": verb,
                    "error": type(exc).__name__,
                    "message": mask_text(str(exc))[:300],
                    "latency_ms": latency,
                    "uncertain": uncertain,
                },
            )
            if uncertain:
                _track_uncertain(deps, action, checked.ok, exc, reply_key)
            else:
                actions.tell_requester(
                    db,
                    action,
                    reply_key,
                    f":x: ThingSpace refused the {verb}: {blocks.escape(exc.user_message)}. Nothing was changed.",
                    now=deps.clock(),
                )
            jobs.finish(db, job.id, ok=False, error=type(exc).__name__)
        deps.hook("thingspace_error", verb, type(exc).__name__)
        if uncertain:
            deps.wake()
        return
    latency = round((time.monotonic() - started) * 1000)
    request_id = accepted.request_id
    n = len(checked.ok)
    root = f"req:{request_id}"
    headline = _headline(action, checked.ok)
    approved = f" · approved by <@{action.decided_by}>" if action.needs_approval and action.decided_by else ""
    body = [
        blocks.section(headline),
        blocks.context(f"Request `{request_id}`{approved} · results will land in this thread"),
    ]
    body.extend(_left_out(checked))
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
            detail={
                "pending": action.id,
                "text": action.options.get("text", ""),
                # what a "Retry failed" sends again
                **({"nidd": {k: action.options.get(k) for k in NIDD_KEYS}} if verb == "nidd" else {}),
            },
        )
        audit.record(
            db,
            actor=action.actor,
            channel=action.channel,
            verb=audit.Verb.THINGSPACE_CALL,
            outcome=audit.Outcome.ACCEPTED,
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
        actions.tell_requester(
            db,
            action,
            reply_key,
            f":white_check_mark: ThingSpace accepted {ACCEPTED[verb]} {_subject(checked.ok)} "
            f"(request `{request_id}`). Results will land in the thread of its post in {blocks.channel_ref(action.channel)}.",
            now=deps.clock(),
            card_state=True,
        )
        jobs.finish(db, job.id)
    deps.hook("thingspace_ok", verb, latency)


def outcome_unknown(exc: ThingSpaceError) -> bool:
    """Whether a failed changing call may still have been carried out: no answer after the request
    left (a timeout, a broken connection) or a 5xx. A refused connection never left; a 4xx is
    ThingSpace saying no."""
    if isinstance(exc, ThingSpaceTransportError):
        return not isinstance(exc, ThingSpaceConnectError)
    return isinstance(exc, ServerError | UnexpectedResponse)


def _track_uncertain(
    deps: Deps,
    action: pending.PendingAction,
    devices: list[ResolvedDevice],
    exc: ThingSpaceError,
    reply_key: str,
) -> None:
    """Record a request nobody knows the outcome of (no request id), so reconciliation settles it
    (``bot.inbox.unanswered``: suspend and resume from each line's provisioning history) and the
    thread says what is known; worded as uncertain until then. Nothing is sent again."""
    db = deps.db()
    request_id = f"{UNCERTAIN_PREFIX}{action.id}"
    root = f"req:{request_id}"
    why = blocks.escape(exc.user_message)
    headline = _headline(action, devices)
    body = [
        blocks.section(headline),
        blocks.context(
            f":warning: ThingSpace did not confirm it ({why}): it may or may not have been done. "
            "Nothing will be sent again; the outcome of each line lands in this thread once it is known."
        ),
    ]
    outbox.enqueue_post(db, key=root, channel=action.channel, text=headline, blocks=body)
    requests.add_request(
        db,
        request_id=request_id,
        verb=action.verb,
        actor=action.actor,
        channel=action.channel,
        devices=[d.key for d in devices],
        thread_key=root,
        response_url=action.response_url,
        reason=action.reason,
        detail={"pending": action.id, "uncertain": True, "error": type(exc).__name__},
        now=deps.clock(),
    )
    actions.tell_requester(
        db,
        action,
        reply_key,
        f":warning: ThingSpace did not confirm the {action.verb} of {_subject(devices)} ({why}): it may "
        "or may not have been carried out. Nothing will be sent again; I am checking, and the outcome "
        "will appear in the channel thread.",
        now=deps.clock(),
    )


def _execute_in_parts(
    deps: Deps, job: Job, action: pending.PendingAction, checked: guards.GuardResult
) -> None:
    """Send a bulk action of more than ``[limits] request_size`` lines (ThingSpace takes at most
    10,000 per request, "Activate Devices") as several requests, :data:`PACE`
    seconds apart, under one results message: each request is recorded as soon as ThingSpace
    accepts it (so a crash never resends one), all of them share the message's thread and a
    ``batch`` id, and the inbox worker draws one progress bar and one summary over them (Retry
    failed takes the failures of every part). If ThingSpace refuses a part, the parts after it
    are not sent and the requester is told how many lines went out."""
    db = deps.db()
    verb = action.verb
    call = API_CALLS[verb][0]
    devices = checked.ok
    total = len(devices)
    size = deps.settings.request_size
    parts = [devices[i : i + size] for i in range(0, total, size)]
    root = f"batch:{action.id}"
    headline = _headline(action, devices)
    approved = f" · approved by <@{action.decided_by}>" if action.needs_approval and action.decided_by else ""
    sent = 0
    request_ids: list[str] = []
    for number, part in enumerate(parts, start=1):
        if number > 1:
            time.sleep(PACE)
        with audit.transaction(db):
            jobs.extend_lease(db, job.id)
        submit = deps.verbs[verb].submit
        if submit is None:
            raise ValueError(f"not an action verb: {verb}")
        started = time.monotonic()
        try:
            accepted = submit(deps.thingspace, [d.device_id for d in part], action.options)
        except ThingSpaceError as exc:
            _part_refused(deps, job, action, part, exc, sent=sent, total=total, root=root if sent else None)
            return
        latency = round((time.monotonic() - started) * 1000)
        request_id = accepted.request_id
        request_ids.append(request_id)
        keys = [d.key for d in part]
        with audit.transaction(db):
            if number == 1:
                body = [
                    blocks.section(headline),
                    blocks.context(
                        f"Sent in {len(parts)} requests of at most {size:,} lines, "
                        f"first `{request_id}`{approved} · results will land in this thread"
                    ),
                ]
                body.extend(_left_out(checked))
                outbox.enqueue_post(db, key=root, channel=action.channel, text=headline, blocks=body)
            requests.add_request(
                db,
                request_id=request_id,
                verb=verb,
                actor=action.actor,
                channel=action.channel,
                devices=keys,
                thread_key=root,
                response_url=action.response_url,
                reason=action.reason,
                detail={
                    "pending": action.id,
                    "text": action.options.get("text", ""),
                    "batch": action.id,
                    "part": number,
                    "parts": len(parts),
                    "batch_total": total,
                },
            )
            audit.record(
                db,
                actor=action.actor,
                channel=action.channel,
                verb=audit.Verb.THINGSPACE_CALL,
                outcome=audit.Outcome.ACCEPTED,
                targets=keys,
                reason=action.reason,
                request_id=request_id,
                detail={
                    "operation": call,
                    "devices": len(part),
                    "latency_ms": latency,
                    "part": number,
                    "parts": len(parts),
                    "batch": action.id,
                },
            )
        sent += len(part)
        deps.wake()
        deps.hook("thingspace_ok", verb, latency)
    with audit.transaction(db):
        actions.tell_requester(
            db,
            action,
            f"execute:{action.id}",
            f":white_check_mark: ThingSpace accepted {ACCEPTED[verb]} {total:,} devices in {len(parts)} requests "
            f"(`{request_ids[0]}` … `{request_ids[-1]}`). Results will land in the thread of its post "
            f"in {blocks.channel_ref(action.channel)}.",
            now=deps.clock(),
            card_state=True,
        )
        jobs.finish(db, job.id)
    deps.wake()


def _part_refused(
    deps: Deps,
    job: Job,
    action: pending.PendingAction,
    part: list[ResolvedDevice],
    exc: ThingSpaceError,
    *,
    sent: int,
    total: int,
    root: str | None,
) -> None:
    db = deps.db()
    verb = action.verb
    with audit.transaction(db):
        audit.record(
            db,
            actor=action.actor,
            channel=action.channel,
            verb=audit.Verb.THINGSPACE_CALL,
            outcome=audit.Outcome.FAILED,
            targets=[d.key for d in part],
            reason=action.reason,
            detail={"operation": verb, "error": type(exc).__name__, "message": mask_text(str(exc))[:300]},
        )
        if root is not None:  # the progress bar counts only what went out
            requests.set_batch_total(db, root, sent)
        what = blocks.escape(exc.user_message)
        if sent:
            text = (
                f":warning: ThingSpace accepted {ACCEPTED[verb]} {sent:,} of {total:,} devices, then refused "
                f"the next request: {what}. The other {total - sent:,} were not sent; run the command "
                "again for them once ThingSpace accepts requests."
            )
        elif outcome_unknown(exc):
            text = (
                f":warning: ThingSpace did not confirm the {verb} ({what}): the first request may or may "
                "not have been carried out, and nothing more was sent. Check with `/ts status` before "
                "running the command again."
            )
        else:
            text = f":x: ThingSpace refused the {verb}: {what}. Nothing was changed."
        actions.tell_requester(db, action, f"execute:{action.id}", text, now=deps.clock())
        jobs.finish(db, job.id, ok=False, error=type(exc).__name__)
    deps.hook("thingspace_error", verb, type(exc).__name__)
    deps.wake()


def _left_out(checked: guards.GuardResult) -> list[Block]:
    """The results message's lines about what was not sent: lines skipped or refused by the guard
    rails (with why), and lines whose limits ThingSpace did not give in time."""
    out: list[Block] = []
    notes = [f"{d.shown}: {blocks.escape(why)}" for d, why in [*checked.skipped, *checked.refused]]
    if notes:
        more = " …" if len(notes) > 10 else ""
        out.append(blocks.context(f"Not sent ({len(notes):,}): " + "; ".join(notes[:10]) + more))
    if checked.unread:
        out.append(
            blocks.context(
                actions.unread_sentence(len(checked.unread), checked.unread_late, checked.read_budget)
            )
        )
    return out


def _subject(devices: list[ResolvedDevice]) -> str:
    return devices[0].shown if len(devices) == 1 else f"{len(devices):,} devices"


def _headline(action: pending.PendingAction, devices: list[ResolvedDevice]) -> str:
    """The in-channel message: who, what, why (every typed word escaped)."""
    who = f"<@{action.actor}>"
    subject = _subject(devices)
    reason = f" — reason: _{blocks.escape(action.reason)}_" if action.reason else ""
    if action.verb == "suspend":
        return f":double_vertical_bar: {who} is suspending {subject}{reason}"
    if action.verb == "resume":
        return f":arrow_forward: {who} is resuming {subject}{reason}"
    if action.verb == "cancel-location":
        return f":satellite_antenna: {who} asked ThingSpace to cancel the location of {subject}{reason}"
    text = blocks.escape(str(action.options.get("text", "")))
    if action.verb == "nidd":
        return f":package: {who} sent NIDD data to {subject}: “{text}” ({int(action.options.get('bytes', 0)):,} bytes){reason}"
    return f":speech_balloon: {who} sent an SMS to {subject}: “{text}”{reason}"
