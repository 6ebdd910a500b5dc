"""The "Retry failed" button (``ts:retry``, value: the request id) under a results summary.

It starts a new confirmed request for just the devices of that request that failed, expired or
gave no result: the clicker's role is checked for the original verb, the guard rails run again
with today's counts (a line that used its five actions today is refused here, before ThingSpace
is called), and the clicker gets the same confirmation card as the command would give — a new
pending action bound to exactly those devices, needing a second approver above the approval size.
Nothing is sent until Confirm.
"""

from __future__ import annotations

from bot.outcomes import RETRYABLE
from commands import actions, audit, guards
from commands.context import ActionRequest, Deps, Reply
from commands.policy import VERBS, may_run
from commands.smstext import check_sms
from commands.targets import resolve_keys
from storage import pending, request_outcomes, requests

__all__ = ["on_retry"]


def on_retry(deps: Deps, req: ActionRequest) -> Reply:
    """Answer a Retry failed click with a confirmation card for the failed devices."""
    db = deps.db()
    now = deps.clock()
    request_id = req.value.strip()
    tracked = requests.get_request(db, request_id) if request_id else None
    if tracked is None:
        return Reply(
            "That request is not known to this bot any more; run the command again.", replace_original=False
        )
    verb = tracked.verb
    if verb not in actions.API_CALLS:
        return Reply(f"A `{verb}` request cannot be retried from here; run it again.", replace_original=False)
    from commands.router import user_role  # late import: the router imports this module

    role = user_role(deps, req.user, tracked.channel)
    if not may_run(role, verb):
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb="retry",
                outcome="denied",
                request_id=request_id,
                detail={"verb": verb, "role": role},
            )
        return Reply(
            f":no_entry: You can't retry a `{verb}`: it needs the *{VERBS[verb].role}* role.",
            replace_original=False,
        )
    failed = request_outcomes.devices_with_status(db, request_id, sorted(RETRYABLE))
    if not failed:
        return Reply(
            f"Nothing to retry: no device of request `{request_id}` failed (the others succeeded or are "
            "still waiting for ThingSpace).",
            replace_original=False,
        )
    devices = resolve_keys(db, failed)
    keys = [d.key for d in devices]
    counts = requests.actions_today(db, keys, day_start=guards.day_start(now))
    preview = guards.check(verb, devices, bot_actions_today=counts)
    options: dict[str, str] = {}
    if verb == "sms":
        text = str(tracked.detail.get("text", ""))
        check = check_sms(text)
        if not check.ok:
            return Reply(
                f":warning: The original SMS cannot be sent again: {check.message}", replace_original=False
            )
        options = {"text": text, "encoding": check.encoding}
    reason = f"retry of request {request_id}" + (f": {tracked.reason}" if tracked.reason else "")
    if not preview.ok:
        why = "\n".join(f"• {d.label} {what}" for d, what in [*preview.skipped, *preview.refused][:20])
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=tracked.channel,
                verb="retry",
                outcome="refused",
                targets=keys,
                reason=reason,
                request_id=request_id,
                detail={"verb": verb, "skipped": len(preview.skipped), "refused": len(preview.refused)},
            )
        return Reply(
            f":information_source: Nothing to retry — every failed device is ruled out:\n{why}",
            replace_original=False,
        )
    settings = deps.settings
    ttl = settings.confirm_ttl.total_seconds()
    with audit.transaction(db):
        action = pending.create(
            db,
            verb=verb,
            actor=req.user,
            channel=tracked.channel,
            devices=keys,
            reason=reason,
            options=options,
            needs_approval=len(devices) > settings.approval_size,
            ttl=ttl,
            response_url=req.response_url,
            now=now,
        )
        audit.record(
            db,
            actor=req.user,
            channel=tracked.channel,
            verb="retry",
            outcome="awaiting-confirmation",
            targets=keys,
            reason=reason,
            request_id=request_id,
            detail={"verb": verb, "pending": action.id, "digest": action.digest, "devices": len(keys)},
        )
    card = actions._confirm_card(verb, devices, preview, action, ttl, reason, options)
    return Reply(card.text, card.blocks, replace_original=False)
