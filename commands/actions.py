"""Suspend, resume, cancel location and SMS: resolve, check, confirm, approve, then a job.

The command answers with an ephemeral card bound to a pending action (the exact device set,
single use, expiring). Confirm queues the job, or — above the approval size — posts an approval
card to the channel that another person with the role must approve. Nothing here calls
ThingSpace; :mod:`commands.execute` does, from the worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot import blocks
from bot.durations import format_duration
from commands import audit, guards
from commands.context import ActionRequest, CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError
from commands.policy import VERBS, may_run
from commands.smstext import check_sms
from commands.targets import ResolvedDevice, resolve
from storage import jobs, outbox, pending, requests

__all__ = ["API_CALLS", "BUTTONS", "on_button", "queue_execution", "start"]

BUTTONS = ("confirm", "cancel", "approve", "reject")

#: verb -> (ThingSpace call, past tense, noun) for cards and dry runs
API_CALLS = {
    "suspend": ("POST /m2m/v1/devices/actions/suspend", "suspended", "Suspend"),
    "resume": ("POST /m2m/v1/devices/actions/restore", "resumed", "Resume"),
    "cancel-location": ("POST /m2m/v1/devices/actions/cancellocation", "detached", "Cancel location for"),
    "sms": ("POST /m2m/v1/sms", "sent an SMS to", "Send an SMS to"),
}

SHOW_DEVICES = 10
#: how long an approval card waits for the second person (at least the confirm TTL)
APPROVAL_WINDOW = 3600.0


def queue_execution(db: Any, action_id: str) -> None:
    """Hand a confirmed (or approved) action to the worker; a second call is a no-op."""
    jobs.enqueue(
        db, key=f"execute:{action_id}", kind="execute", payload={"pending": action_id}, mutating=True
    )


def _devices_text(devices: list[ResolvedDevice]) -> str:
    shown = [f"• {d.label}" for d in devices[:SHOW_DEVICES]]
    if len(devices) > SHOW_DEVICES:
        shown.append(f"…and {len(devices) - SHOW_DEVICES:,} more")
    return "\n".join(shown)


def _count(n: int) -> str:
    return f"{n:,} device" + ("" if n == 1 else "s")


def _preview(verb: str, result: guards.GuardResult) -> list[str]:
    lines: list[str] = []
    for title, items in (("Skipped", result.skipped), ("Refused", result.refused)):
        if items:
            shown = "; ".join(f"{d.label} {why}" for d, why in items[:5])
            more = f" …and {len(items) - 5} more" if len(items) > 5 else ""
            lines.append(f"*{title} ({len(items)}):* {shown}{more}")
    if result.unknown:
        lines.append(
            f"{_count(len(result.unknown))} not in the device directory: their state is unknown, ThingSpace will judge."
        )
    return lines


def start(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    verb = inv.verb
    db = deps.db()
    settings = deps.settings
    devices = resolve(
        db, inv.targets, verb=verb, max_targets=settings.max_targets, single=verb == "cancel-location"
    )
    options: dict[str, Any] = {}
    if verb == "sms":
        check = check_sms(inv.text)
        if not check.ok:
            raise UsageError(check.message, verb=verb)
        options = {"text": inv.text, "encoding": check.encoding}
    now = deps.clock()
    keys = [d.key for d in devices]
    counts = requests.actions_today(db, keys, day_start=guards.day_start(now))
    preview = guards.check(verb, devices, bot_actions_today=counts)
    call = API_CALLS[verb][0]
    reason = inv.reason
    if inv.dry_run:
        lines = [
            f"*Dry run — nothing was changed.* Would call `{call}` for {_count(len(preview.ok))}"
            + (f" with the text “{inv.text}” ({options['encoding']})" if verb == "sms" else "")
            + ".",
            _devices_text(preview.ok) if preview.ok else "_No device would be called._",
            *_preview(verb, preview),
        ]
        if len(devices) > settings.approval_size:
            lines.append(
                f"More than {settings.approval_size} devices: a second person would have to approve."
            )
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=verb,
                outcome="dry-run",
                targets=keys,
                reason=reason,
                detail={
                    "would_call": len(preview.ok),
                    "skipped": len(preview.skipped),
                    "refused": len(preview.refused),
                },
            )
        return Reply(
            lines[0], [blocks.section("\n".join(lines[:2])), *[blocks.context(x) for x in lines[2:]]]
        )
    if not preview.ok:
        why = _preview(verb, preview)
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=verb,
                outcome="refused",
                targets=keys,
                reason=reason,
                detail={"skipped": len(preview.skipped), "refused": len(preview.refused)},
            )
        return Reply(
            ":information_source: Nothing to do. " + " ".join(why),
            [blocks.section("Nothing to do.\n" + "\n".join(why))],
        )
    needs_approval = len(devices) > settings.approval_size
    direct = verb == "sms" and len(devices) == 1
    ttl = settings.confirm_ttl.total_seconds()
    with audit.transaction(db):
        action = pending.create(
            db,
            verb=verb,
            actor=req.user,
            channel=req.channel,
            devices=keys,
            reason=reason,
            options=options,
            needs_approval=needs_approval,
            ttl=ttl,
            response_url=req.response_url,
            now=now,
        )
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=verb,
            outcome="queued" if direct else "awaiting-confirmation",
            targets=keys,
            reason=reason,
            detail={"pending": action.id, "digest": action.digest, "devices": len(keys)},
        )
        if direct:
            pending.set_state(db, action.id, "confirmed")
            queue_execution(db, action.id)
    deps.wake()
    if direct:
        return Reply(
            f"Sending the SMS to {devices[0].label}… delivery receipts will follow in a channel thread."
        )
    return _confirm_card(verb, devices, preview, action, ttl, reason, options)


def _confirm_card(
    verb: str,
    devices: list[ResolvedDevice],
    preview: guards.GuardResult,
    action: pending.PendingAction,
    ttl: float,
    reason: str,
    options: dict[str, Any],
) -> Reply:
    _call, _done, title = API_CALLS[verb]
    n = len(preview.ok)
    question = f"{title} {_count(n)}?"
    body = [blocks.header(question), blocks.section(_devices_text(preview.ok))]
    facts = [f"Set `{action.digest}`", f"expires in {format_duration_s(ttl)}"]
    if reason:
        facts.insert(0, f"Reason: {reason}")
    if verb == "sms":
        facts.insert(0, f"Text: “{options['text']}” ({options['encoding']})")
    body.append(blocks.context(" · ".join(facts)))
    body.extend(blocks.context(x) for x in _preview(verb, preview))
    if action.needs_approval:
        body.append(
            blocks.context(
                ":busts_in_silhouette: This is a bulk action: after you confirm, a second person with the role must approve it in the channel."
            )
        )
    danger = verb in {"suspend", "cancel-location"}
    body.append(
        blocks.actions(
            blocks.button(
                "Confirm",
                "ts:confirm",
                action.id,
                style="danger" if danger else "primary",
                confirm=(question, f"{_count(n)}, set {action.digest}. This calls ThingSpace.", "Yes, do it")
                if n > 1
                else None,
            ),
            blocks.button("Cancel", "ts:cancel", action.id),
            block_id=f"pending:{action.id}",
        )
    )
    return Reply(question, body)


def format_duration_s(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


def _expired_or_used(action: pending.PendingAction | None, now: float) -> str:
    if action is None:
        return "That confirmation no longer exists. Run the command again."
    if action.state == "pending" and action.expires_at <= now:
        return "This confirmation expired. Nothing was changed; run the command again if it is still needed."
    if action.state in {"confirmed", "approved"}:
        return f"Already {action.state} by <@{action.decided_by}>; nothing more to do."
    if action.state == "awaiting_approval" and action.expires_at <= now:
        return "The approval window closed. Nothing was changed; run the command again."
    if action.state == "awaiting_approval":
        return "This is waiting for a second person's approval in the channel."
    return f"This was {action.state.replace('_', ' ')}{f' by <@{action.decided_by}>' if action.decided_by else ''}. Nothing was changed."


def _record(
    db: Any, req: ActionRequest, action: pending.PendingAction, verb: str, outcome: str, **detail: Any
) -> None:
    audit.record(
        db,
        actor=req.user,
        channel=req.channel,
        verb=verb,
        outcome=outcome,
        targets=action.devices,
        reason=action.reason if outcome == "ok" else "",
        detail={"pending": action.id, "verb": action.verb, **detail},
    )


def on_button(deps: Deps, req: ActionRequest, kind: str) -> Reply | None:
    """Confirm, Cancel, Approve or Reject on a pending action; the clicker is authorized again."""
    db = deps.db()
    action = pending.get(db, req.value)
    if action is None:
        return Reply("That confirmation no longer exists. Run the command again.", replace_original=False)
    from commands.router import user_role  # late import: router imports this module

    role = user_role(deps, req.user, action.channel)
    if kind != "cancel" and not may_run(role, action.verb):
        with audit.transaction(db):
            _record(db, req, action, kind, "denied", role=role)
        return Reply(
            f":no_entry: You can't {kind} a `{action.verb}`: it needs the *{VERBS[action.verb].role}* role.",
            replace_original=False,
        )
    if kind == "cancel":
        return _cancel(deps, req, action)
    if kind == "confirm":
        return _confirm(deps, req, action)
    return _decide(deps, req, action, approve=kind == "approve")


def _too_late(deps: Deps, req: ActionRequest, action: pending.PendingAction, kind: str) -> Reply:
    """The card was already used, decided or expired: say so, record the refused click."""
    db, now = deps.db(), deps.clock()
    current = pending.get(db, action.id)
    expired = (
        current is not None
        and current.state in {"pending", "awaiting_approval"}
        and current.expires_at <= now
    )
    with audit.transaction(db):
        _record(
            db,
            req,
            action,
            kind,
            "expired" if expired else "refused",
            state=current.state if current else None,
        )
    return Reply(_expired_or_used(current, now), replace_original=False)


def _cancel(deps: Deps, req: ActionRequest, action: pending.PendingAction) -> Reply:
    db, now = deps.db(), deps.clock()
    with audit.transaction(db):
        done = pending.cancel(db, action.id, by=req.user, now=now)
        if done:
            _record(db, req, action, "cancel", "ok")
    if not done:
        return _too_late(deps, req, action, "cancel")
    return Reply(
        f"Cancelled: {action.verb} of {_count(len(action.devices))}. Nothing was changed.",
        replace_original=True,
    )


def _confirm(deps: Deps, req: ActionRequest, action: pending.PendingAction) -> Reply:
    if req.user != action.actor:
        return Reply(
            "Only the person who asked can confirm this; you can run the command yourself.",
            replace_original=False,
        )
    db, now = deps.db(), deps.clock()
    target = "awaiting_approval" if action.needs_approval else "confirmed"
    with audit.transaction(db):
        claimed = pending.claim(db, action.id, from_state="pending", to_state=target, by=req.user, now=now)
        if claimed:
            _record(db, req, action, "confirm", "ok", digest=action.digest)
            if claimed.needs_approval:
                window = max(deps.settings.confirm_ttl.total_seconds(), APPROVAL_WINDOW)
                pending.set_state(db, action.id, "awaiting_approval", expires_at=now + window)
                _post_approval_card(db, claimed)
            else:
                queue_execution(db, action.id)
    if not claimed:
        return _too_late(deps, req, action, "confirm")
    deps.wake()
    n = _count(len(action.devices))
    if claimed.needs_approval:
        return Reply(
            f"Confirmed. {n} is more than the approval size ({deps.settings.approval_size}): an approval card "
            "is in the channel; "
            "a second person with the role must approve it.",
            replace_original=True,
        )
    return Reply(
        f"Confirmed — working on {action.verb} for {n}. Results will follow in the channel.",
        replace_original=True,
    )


def _decide(deps: Deps, req: ActionRequest, action: pending.PendingAction, *, approve: bool) -> Reply | None:
    """Approve or Reject: a second person, never the requester (four eyes)."""
    db, now = deps.db(), deps.clock()
    kind = "approve" if approve else "reject"
    if req.user == action.actor:
        with audit.transaction(db):
            _record(db, req, action, kind, "refused", why="self-approval")
        return Reply(
            "You asked for this, so someone else must approve it (four eyes).", replace_original=False
        )
    to_state = "approved" if approve else "denied"
    with audit.transaction(db):
        claimed = pending.claim(
            db, action.id, from_state="awaiting_approval", to_state=to_state, by=req.user, now=now
        )
        if claimed:
            _record(db, req, action, kind, "ok", requested_by=action.actor)
            word = "Approved" if approve else "Rejected"
            line = (
                f"{word} by <@{req.user}>: {action.verb} of {_count(len(action.devices))} "
                f"requested by <@{action.actor}>" + (f" — {action.reason}" if action.reason else "")
            )
            outbox.enqueue_update(
                db, target_key=f"approval:{action.id}", text=line, blocks=[blocks.section(line)]
            )
            if approve:
                queue_execution(db, action.id)
    if not claimed:
        return _too_late(deps, req, action, kind)
    deps.wake()
    return None


def _post_approval_card(db: Any, action: pending.PendingAction) -> None:
    _call, _done, title = API_CALLS[action.verb]
    n = len(action.devices)
    text = f"<@{action.actor}> asks to {title.lower()} {_count(n)}" + (
        f" — reason: {action.reason}" if action.reason else ""
    )
    body = [
        blocks.section(f":busts_in_silhouette: *Approval needed.* {text}."),
        blocks.context(
            f"Set `{action.digest}` · a second person with the role must approve · expires in 1 h"
        ),
        blocks.actions(
            blocks.button(
                "Approve",
                "ts:approve",
                action.id,
                style="danger",
                confirm=(f"Approve {title.lower()} {_count(n)}?", text, "Approve"),
            ),
            blocks.button("Reject", "ts:reject", action.id),
            block_id=f"approval:{action.id}",
        ),
    ]
    outbox.enqueue_post(
        db, key=f"approval:{action.id}", channel=action.channel, text=f"Approval needed: {text}", blocks=body
    )
