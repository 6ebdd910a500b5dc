"""The "Retry failed" button (``ts:retry``, value: the request id) under a results summary.

It starts a new request for just the devices of that request that failed, expired or gave no
result: the clicker's role is checked for the original verb, the guard rails run again with
today's counts and — for suspend and resume — each line's limits read from ThingSpace (a line
that used its five actions today is refused here, before ThingSpace is asked to act), and the
clicker gets the same confirmation card as the command would give: a new pending action bound to
exactly the devices the card lists, needing a second approver when they are more than the
approval size. Nothing is sent until Confirm.

Reading limits means calling ThingSpace, which never happens before Slack has its ack: for
suspend and resume the click is answered "reading…", and the worker posts the card
(:func:`complete`). One audit entry per click, written where the outcome is known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlite_utils import Database

from bot.core.outcome_status import RETRYABLE
from bot.render import blocks
from commands import actions, audit, guards
from commands.actions import Notes
from commands.context import ActionRequest, Deps, Reply
from commands.policy import may_run, user_role
from commands.smstext import check_sms
from commands.targets import resolve_keys
from storage import jobs, outbox, pending, request_devices, requests
from storage.requests import TrackedRequest

__all__ = ["complete", "on_retry"]


def _failed(db: Database, tracked: TrackedRequest) -> list[str]:
    """The lines of the request that failed, expired or gave no result — across every request of
    its bulk action when it was sent in parts."""
    return [
        key
        for part in requests.batch(db, tracked)
        for key in request_devices.devices_with_status(db, part.request_id, sorted(RETRYABLE))
    ]


def on_retry(deps: Deps, req: ActionRequest) -> Reply:
    """Answer a Retry failed click with a confirmation card for the failed devices."""
    db = deps.db()
    request_id = req.value.strip()
    tracked = requests.get_request(db, request_id) if request_id else None
    if tracked is None:
        return Reply(
            "That request is not known to this bot any more; run the command again.", replace_original=False
        )
    verb = tracked.verb
    if verb not in actions.API_CALLS:
        return Reply(f"A `{verb}` request cannot be retried from here; run it again.", replace_original=False)
    role = user_role(deps, req.user, tracked.channel)
    if not may_run(role, deps.role_needed(verb)):
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=audit.Verb.RETRY,
                outcome=audit.Outcome.DENIED,
                request_id=request_id,
                detail={"verb": verb, "role": role},
            )
        return Reply(
            f":no_entry: You can't retry a `{verb}`: it needs the *{deps.role_needed(verb)}* role.",
            replace_original=False,
        )
    failed = _failed(db, tracked)
    if not failed:
        return Reply(
            f"Nothing to retry: no device of request `{request_id}` failed (the others succeeded or are "
            "still waiting for ThingSpace).",
            replace_original=False,
        )
    if verb in actions.LIMITED:
        spec = {"request": request_id, "user": req.user, "response_url": req.response_url}
        with audit.transaction(db):
            jobs.enqueue(
                db,
                key=f"retry:{request_id}:{req.user}:{deps.clock()}",
                kind="execute",
                payload={"retry": spec, "response_url": req.response_url},
            )
        deps.wake()
        return Reply(
            f":hourglass_flowing_sand: Reading the provisioning limits of the {len(failed):,} failed "
            "line(s) from ThingSpace; the confirmation card follows.",
            replace_original=False,
        )
    return _card(deps, req.user, req.response_url, tracked, failed, limits={})


def complete(deps: Deps, spec: dict[str, Any]) -> None:
    """Worker job: the card for a suspend/resume retry, with each line's limits read."""
    db = deps.db()
    request_id = str(spec["request"])
    tracked = requests.get_request(db, request_id)
    if tracked is None:
        return
    failed = _failed(db, tracked)
    devices = resolve_keys(db, failed)
    limits = guards.read_limits(deps.thingspace, devices, now=datetime.fromtimestamp(deps.clock(), UTC))
    user, response_url = str(spec["user"]), str(spec.get("response_url", ""))
    reply = _card(deps, user, response_url, tracked, failed, limits=limits)
    with audit.transaction(db):
        key = f"retry-card:{request_id}:{user}:{deps.clock()}"
        if response_url:
            outbox.enqueue_respond(
                db, key=key, response_url=response_url, text=reply.text, blocks=reply.blocks
            )
        else:
            outbox.enqueue_ephemeral(
                db, key=key, channel=tracked.channel, user=user, text=reply.text, blocks=reply.blocks
            )
    deps.wake()


def _card(
    deps: Deps,
    user: str,
    response_url: str,
    tracked: TrackedRequest,
    failed: list[str],
    *,
    limits: dict[str, guards.LineLimits],
) -> Reply:
    """Check the failed devices, bind a pending action to those that pass, and build the card
    (or say why nothing can be retried); one audit entry either way."""
    db = deps.db()
    now = deps.clock()
    verb, request_id = tracked.verb, tracked.request_id
    devices = resolve_keys(db, failed)
    keys = [d.key for d in devices]
    counts = requests.actions_today(db, keys, day_start=guards.day_start(now))
    preview = guards.check(
        verb, devices, bot_actions_today=counts, limits=limits, nidd_plans=deps.settings.nidd_plans
    )
    options: dict[str, Any] = {}
    if verb == "nidd":
        kept = tracked.detail.get("nidd")
        if not isinstance(kept, dict) or not kept.get("data"):
            return Reply(
                ":warning: The original NIDD data was not kept, so it cannot be sent again.",
                replace_original=False,
            )
        options = {**kept, "text": str(tracked.detail.get("text", ""))}
    if verb == "sms":
        text = str(tracked.detail.get("text", ""))
        check = check_sms(text)
        if not check.ok:
            return Reply(
                f":warning: The original SMS cannot be sent again: {blocks.escape(check.message)}",
                replace_original=False,
            )
        options = {"text": text, "encoding": check.encoding}
    reason = f"retry of request {request_id}" + (f": {tracked.reason}" if tracked.reason else "")
    notes = Notes.of(preview)
    if not preview.ok:
        with audit.transaction(db):
            audit.record(
                db,
                actor=user,
                channel=tracked.channel,
                verb=audit.Verb.RETRY,
                outcome=audit.Outcome.REFUSED,
                targets=keys,
                reason=reason,
                request_id=request_id,
                detail={"verb": verb, "skipped": len(preview.skipped), "refused": len(preview.refused)},
            )
        why = "\n".join(notes.lines())
        return Reply(
            blocks.truncate(
                f":information_source: Nothing to retry — every failed device is ruled out:\n{why}", 3000
            ),
            replace_original=False,
        )
    settings = deps.settings
    with audit.transaction(db):
        action = pending.create(
            db,
            verb=verb,
            actor=user,
            channel=tracked.channel,
            devices=[d.key for d in preview.ok],
            reason=reason,
            options=options,
            needs_approval=len(preview.ok) > settings.approval_size,
            ttl=settings.confirm_ttl.total_seconds(),
            response_url=response_url,
            now=now,
        )
        audit.record(
            db,
            actor=user,
            channel=tracked.channel,
            verb=audit.Verb.RETRY,
            outcome=audit.Outcome.AWAITING_CONFIRMATION,
            targets=keys,
            reason=reason,
            request_id=request_id,
            detail={
                "verb": verb,
                "pending": action.id,
                "digest": action.digest,
                "devices": len(preview.ok),
                "skipped": len(preview.skipped),
                "refused": len(preview.refused),
            },
        )
    limited = "read" if verb in actions.LIMITED else "none"
    card = actions.confirm_card(deps, action, preview.ok, notes, limits=limited, allowance=preview.allowance)
    return Reply(card.text, card.blocks, replace_original=False)
