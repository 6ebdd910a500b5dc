"""Suspend, resume, cancel location and SMS: resolve, check, confirm, approve, then a job.

The command answers at once with an ephemeral card bound to a pending action that holds exactly
the devices the card lists to be acted on (their digest is on the card); devices skipped or
refused are shown but are not part of it, so a click can never reach a device the card did not
list. The pending action is single use and expires. Targets of more than
:data:`commands.prepare.AFTER_ACK` lines are acked with a placeholder and go through the same
steps in the worker (:mod:`commands.prepare`), whose card replaces it.

Suspend and resume also depend on limits that only ThingSpace knows (five provisioning actions
per line per day, 90 suspended days in a row and 180 a year), and ThingSpace is not called before
the ack. So their card says the limits are being read, and the worker (:mod:`commands.execute`)
reads them for every listed device right after. When that takes devices off, the card is replaced
by one bound to a new, smaller pending action (the first is ``superseded``: its buttons stop
working); otherwise the card is redrawn saying the limits were read. A ``--dry-run`` is completed
the same way, without buttons. Execution reads the limits again and may only drop devices.

Confirm queues the job, or — when more devices than the approval size are listed (skipped ones do
not count) — posts an approval card to the channel that another person with the role must approve
within ``[limits] approval_ttl``. The requester may withdraw it (their Reject) but never approve it.
An approval nobody decides expires (:func:`expire_approvals`, a scheduler job): its card loses its
buttons and the requester is told. Every click that changes something or is refused leaves one
audit entry.

Everything typed (reason, SMS text) or read from outside (device labels) reaches Slack through
:func:`bot.render.blocks.escape`.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlite_utils import Database

from bot.core.durations import format_duration
from bot.render import blocks
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import RequestAccepted
from commands import audit, guards, nidd, prepare
from commands.context import ActionHandler, ActionRequest, CommandRequest, Deps, Reply
from commands.grammar import MAX_REASON, Invocation, UsageError
from commands.policy import may_run, user_role
from commands.smstext import check_sms
from commands.targets import ResolvedDevice, audit_targets, resolve, resolve_keys, targeted_size
from storage import jobs, outbox, pending, requests
from storage.audit.events import SYSTEM_ACTOR

__all__ = [
    "API_CALLS",
    "BUTTONS",
    "LIMITED",
    "MODAL",
    "Notes",
    "confirm_card",
    "dry_run_reply",
    "expire_approvals",
    "modal_view",
    "nothing_to_do",
    "on_button",
    "on_modal",
    "queue_execution",
    "start",
    "tell_requester",
]

log = logging.getLogger(__name__)

BUTTONS = ("confirm", "cancel", "approve", "reject")

#: verb -> (ThingSpace call, past tense, noun) for cards and dry runs
API_CALLS = {
    "suspend": ("POST /m2m/v1/devices/actions/suspend", "suspended", "Suspend"),
    "resume": ("POST /m2m/v1/devices/actions/restore", "resumed", "Resume"),
    "cancel-location": ("POST /m2m/v1/devices/actions/cancellocation", "detached", "Cancel location for"),
    "sms": ("POST /m2m/v1/sms", "sent an SMS to", "Send an SMS to"),
    "nidd": ("POST /m2m/v1/devices/nidd/message", "sent NIDD data to", "Send NIDD data to"),
}
#: verbs that send a message: one device goes without a confirmation card, as a reply would
MESSAGES = frozenset({"sms", "nidd"})

#: verbs whose lines have provisioning limits kept by ThingSpace (read by the worker after the ack)
LIMITED = frozenset(guards.TARGET_STATE)
#: the state of a pending action replaced by a narrower one after the limits were read
SUPERSEDED = "superseded"
#: a response_url answers for 30 minutes; past this age the requester is told by chat.postEphemeral
RESPONSE_URL_LIFETIME = 25 * 60.0

SHOW_DEVICES = 10
SHOW_NOTES = 5

READING = (
    ":hourglass_flowing_sand: Reading each line's provisioning limits from its ThingSpace provisioning history "
    "(5 actions a day; 90 days suspended in a row, 180 a year); a line at a limit is taken off this card."
)


def queue_execution(db: Database, action_id: str) -> None:
    """Hand a confirmed (or approved) action to the worker; a second call is a no-op."""
    jobs.enqueue(
        db, key=f"execute:{action_id}", kind="execute", payload={"pending": action_id}, mutating=True
    )


def _count(n: int) -> str:
    return f"{n:,} device" + ("" if n == 1 else "s")


def _devices_text(devices: list[ResolvedDevice]) -> str:
    shown = [f"• {d.shown}" for d in devices[:SHOW_DEVICES]]
    if len(devices) > SHOW_DEVICES:
        shown.append(f"…and {len(devices) - SHOW_DEVICES:,} more")
    return "\n".join(shown)


def format_duration_s(seconds: float) -> str:
    """A time left, to the nearest minute from a minute up (a fresh 5-minute card says 5 min)."""
    if seconds >= 60:
        seconds = round(seconds / 60) * 60
    return format_duration(timedelta(seconds=seconds))


@dataclass
class Notes:
    """What a card says about the devices it does not act on: the first few skipped and refused
    (label, why) and how many there are in all. JSON-able, so a worker job can complete a card
    the ack started."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_n: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    refused_n: int = 0
    unknown_n: int = 0
    #: listed lines whose limits ThingSpace did not give (ThingSpace judges them)
    unread_n: int = 0
    #: of those, the lines not reached within the reads' time budget (``budget`` seconds)
    late_n: int = 0
    budget: float = 0.0

    @classmethod
    def of(cls, result: guards.GuardResult) -> Notes:
        return cls(
            skipped=[(d.label, why) for d, why in result.skipped[:SHOW_NOTES]],
            skipped_n=len(result.skipped),
            refused=[(d.label, why) for d, why in result.refused[:SHOW_NOTES]],
            refused_n=len(result.refused),
            unknown_n=len(result.unknown),
            unread_n=len(result.unread),
            late_n=result.unread_late,
            budget=result.read_budget,
        )

    def then(self, later: guards.GuardResult) -> Notes:
        """These notes plus what a later check of the listed devices took off (its unknowns
        replace ours: the later check knows more)."""
        more = Notes.of(later)
        return Notes(
            skipped=(self.skipped + more.skipped)[:SHOW_NOTES],
            skipped_n=self.skipped_n + more.skipped_n,
            refused=(self.refused + more.refused)[:SHOW_NOTES],
            refused_n=self.refused_n + more.refused_n,
            unknown_n=more.unknown_n,
            unread_n=more.unread_n,
            late_n=more.late_n,
            budget=more.budget,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": [list(x) for x in self.skipped],
            "skipped_n": self.skipped_n,
            "refused": [list(x) for x in self.refused],
            "refused_n": self.refused_n,
            "unknown_n": self.unknown_n,
            "unread_n": self.unread_n,
            "late_n": self.late_n,
            "budget": self.budget,
        }

    @classmethod
    def from_json(cls, data: Any) -> Notes:
        if not isinstance(data, dict):
            return cls()
        return cls(
            skipped=[(str(a), str(b)) for a, b in data.get("skipped", [])],
            skipped_n=int(data.get("skipped_n", 0)),
            refused=[(str(a), str(b)) for a, b in data.get("refused", [])],
            refused_n=int(data.get("refused_n", 0)),
            unknown_n=int(data.get("unknown_n", 0)),
            unread_n=int(data.get("unread_n", 0)),
            late_n=int(data.get("late_n", 0)),
            budget=float(data.get("budget", 0.0)),
        )

    def lines(self) -> list[str]:
        """mrkdwn lines (labels and reasons escaped)."""
        out: list[str] = []
        for title, items, n in (
            ("Skipped", self.skipped, self.skipped_n),
            ("Refused", self.refused, self.refused_n),
        ):
            if n:
                shown = "; ".join(f"{blocks.escape(label)} {blocks.escape(why)}" for label, why in items)
                more = f" …and {n - len(items):,} more" if n > len(items) else ""
                out.append(f"*{title} ({n:,}):* {shown}{more}")
        if self.unknown_n:
            out.append(
                f"{_count(self.unknown_n)} not in the device directory: their state is unknown, ThingSpace will judge."
            )
        if self.unread_n:
            out.append(f":grey_question: {unread_sentence(self.unread_n, self.late_n, self.budget)}")
        return out


def unread_sentence(unread: int, late: int, budget: float) -> str:
    """What a card says of the lines whose limits were not read: how many failed, how many were
    not reached in time, and what that means."""
    failed = unread - late
    why = []
    if failed:
        why.append(f"ThingSpace's provisioning history did not answer for {_count(failed)}")
    if late:
        verb = "was" if late == 1 else "were"
        why.append(f"{_count(late)} {verb} not reached within the {budget:.0f} s the bot gives these reads")
    return (
        f"Could not read the limits of {_count(unread)}: "
        + " and ".join(why)
        + ". Only the bot's own requests today were counted for them; ThingSpace will judge them when "
        "asked to act."
    )


def _allowance_line(devices: list[ResolvedDevice], allowance: dict[str, int]) -> str | None:
    """How long ThingSpace lets the lines stay suspended (auto-resume), when diagnostics said."""
    known = [(d, allowance[d.key]) for d in devices if d.key in allowance]
    if not known:
        return None
    full = guards.SUSPEND_DAYS_CONTINUOUS
    short = sorted((x for x in known if x[1] < full), key=lambda x: x[1])
    line = f"ThingSpace auto-resumes a suspended line after at most {full} days"
    if not short:
        return line + "."
    listed = "; ".join(f"{d.shown} after {days} d" for d, days in short[:SHOW_NOTES])
    more = f" …and {len(short) - SHOW_NOTES:,} more" if len(short) > SHOW_NOTES else ""
    return line + f"; with this year's suspended days, sooner for {len(short):,}: {listed}{more}."


def _sms_part(verb: str, options: dict[str, Any]) -> str:
    if verb == "nidd":
        return f" with {blocks.escape(nidd.describe(options))}"
    if verb != "sms":
        return ""
    return f" with the text “{blocks.escape(options['text'])}” ({options['encoding']})"


def dry_run_reply(
    deps: Deps,
    verb: str,
    listed: list[ResolvedDevice],
    notes: Notes,
    options: dict[str, Any],
    *,
    limits: str,
    allowance: dict[str, int] | None = None,
) -> Reply:
    """The answer to ``--dry-run``; *limits* is ``reading``, ``read`` or ``none`` (not limited)."""
    call = API_CALLS[verb][0]
    first = (
        f"*Dry run — nothing was changed.* Would call `{call}` for {_count(len(listed))}"
        + _sms_part(verb, options)
        + "."
    )
    lines = [first, _devices_text(listed) if listed else "_No device would be called._", *notes.lines()]
    extra = _allowance_line(listed, allowance or {}) if verb == "suspend" else None
    if extra:
        lines.append(extra)
    if limits == "reading" and listed:
        lines.append(READING)
    elif limits == "read" and not notes.unread_n:
        lines.append(
            ":white_check_mark: Provisioning limits read from ThingSpace's provisioning history for every listed line."
        )
    size = deps.settings.approval_size
    if len(listed) > size:
        lines.append(f"More than {size} devices: a second person would have to approve.")
    text = f"Dry run — nothing was changed. Would call {call} for {_count(len(listed))}."
    return Reply(text, [blocks.section("\n".join(lines[:2])), *[blocks.context(x) for x in lines[2:]]])


def nothing_to_do(notes: Notes) -> Reply:
    why = notes.lines()
    return Reply(
        blocks.truncate(":information_source: Nothing to do. " + " ".join(why), 3000),
        [blocks.section("Nothing to do.\n" + "\n".join(why))],
    )


def _options(inv: Invocation) -> dict[str, Any]:
    """What an SMS or NIDD action sends besides its devices, checked (a :class:`UsageError` if wrong)."""
    if inv.verb == "sms":
        check = check_sms(inv.text)
        if not check.ok:
            raise UsageError(check.message, verb=inv.verb)
        return {"text": inv.text, "encoding": check.encoding}
    if inv.verb == "nidd":
        return nidd.options_for(inv)
    return {}


def _answer_prepared(db: Database, req: CommandRequest, reply: Reply) -> Reply:
    """For a command the worker prepared after the ack, queue *reply* to replace the placeholder,
    in the caller's transaction (so a job it queues for the card cannot overtake it)."""
    if req.prepared and req.response_url:
        outbox.enqueue_respond(
            db,
            key=f"prepared:{secrets.token_urlsafe(12)}",
            response_url=req.response_url,
            text=reply.text,
            blocks=reply.blocks,
            replace_original=True,
        )
    return reply


def start(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    verb = inv.verb
    db = deps.db()
    settings = deps.settings
    options = _options(inv)
    if not (req.prepared or req.via_button) and req.response_url and verb != "cancel-location":
        size = targeted_size(db, inv.targets, verb=verb, max_targets=settings.max_targets)
        if size > prepare.AFTER_ACK:
            return prepare.later(deps, req, inv, role, size)
    devices = resolve(
        db, inv.targets, verb=verb, max_targets=settings.max_targets, single=verb == "cancel-location"
    )
    now = deps.clock()
    keys = [d.key for d in devices]
    #: the ack's audit entries name a group as typed (``group:plant-7``) and the lines named one
    #: by one; the pending action holds the exact set (its digest is in the entry), and the
    #: worker's entries list every line it acts on
    typed = audit_targets(inv.targets, devices)
    counts = requests.actions_today(db, keys, day_start=guards.day_start(now))
    preview = guards.check(verb, devices, bot_actions_today=counts, nidd_plans=settings.nidd_plans)
    listed = preview.ok
    notes = Notes.of(preview)
    #: the worker completes the card with ThingSpace's limits (it needs the response_url to redraw it);
    #: not for a card a button started: its response_url's original is the card the button was on,
    #: which is never overwritten — there the limits are read just before acting
    limited = verb in LIMITED and bool(listed) and bool(req.response_url) and not req.via_button
    reason = inv.reason
    if inv.dry_run:
        reply = dry_run_reply(deps, verb, listed, notes, options, limits="reading" if limited else "none")
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=verb,
                outcome=audit.Outcome.DRY_RUN,
                targets=typed,
                reason=reason,
                detail={
                    "would_call": len(listed),
                    "skipped": len(preview.skipped),
                    "refused": len(preview.refused),
                },
            )
            if limited:
                payload = {
                    "dry_run": {"verb": verb, "devices": [d.key for d in listed], "notes": notes.to_json()},
                    "response_url": req.response_url,
                }
                jobs.enqueue(db, key=f"dry-run:{secrets.token_urlsafe(12)}", kind="execute", payload=payload)
            _answer_prepared(db, req, reply)
        if limited or req.prepared:
            deps.wake()
        return reply
    if not listed:
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=verb,
                outcome=audit.Outcome.REFUSED,
                targets=typed,
                reason=reason,
                detail={"skipped": len(preview.skipped), "refused": len(preview.refused)},
            )
            reply = _answer_prepared(db, req, nothing_to_do(notes))
        if req.prepared:
            deps.wake()
        return reply
    direct = verb in MESSAGES and len(devices) == 1
    ttl = settings.confirm_ttl.total_seconds()
    with audit.transaction(db):
        action = pending.create(
            db,
            verb=verb,
            actor=req.user,
            channel=req.channel,
            devices=[d.key for d in listed],
            reason=reason,
            options={**options, VIA_BUTTON: True} if req.via_button else options,
            needs_approval=len(listed) > settings.approval_size,
            ttl=ttl,
            response_url=req.response_url,
            now=now,
        )
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=verb,
            outcome=audit.Outcome.QUEUED if direct else audit.Outcome.AWAITING_CONFIRMATION,
            targets=typed,
            reason=reason,
            detail={
                "pending": action.id,
                "digest": action.digest,
                "devices": len(listed),
                "skipped": len(preview.skipped),
                "refused": len(preview.refused),
            },
        )
        if direct:
            pending.set_state(db, action.id, "confirmed")
            queue_execution(db, action.id)
        elif limited:
            jobs.enqueue(
                db,
                key=f"limits:{action.id}",
                kind="execute",
                # response_url: where the worker says so if the job fails (bot.worker)
                payload={"limits": action.id, "notes": notes.to_json(), "response_url": req.response_url},
            )
        prepared = None
        if req.prepared:
            card = confirm_card(deps, action, listed, notes, limits="reading" if limited else "none")
            prepared = _answer_prepared(db, req, card)
    deps.wake()
    if prepared is not None:
        return prepared
    if direct and verb == "nidd":
        return Reply(
            f"Sending NIDD data to {listed[0].shown}… its delivery (Queued, then Delivered) will follow in a "
            "channel thread."
        )
    if direct:
        return Reply(
            f"Sending the SMS to {listed[0].shown}… delivery receipts will follow in a channel thread."
        )
    if req.via_button:
        # one card per decision: a modal (with a reason field) over the card the button was on;
        # if it cannot open, this card is posted once as a new message
        card = confirm_card(deps, action, listed, notes, limits="at-execution" if verb in LIMITED else "none")
        return Reply(card.text, card.blocks, view=modal_view(deps, action, listed, notes))
    return confirm_card(deps, action, listed, notes, limits="reading" if limited else "none")


#: the callback id (``ts:<MODAL>``) of the confirmation modal of a button-started action
MODAL = "action-modal"
_MODAL_TITLE = {
    "suspend": "Suspend",
    "resume": "Resume",
    "cancel-location": "Cancel location",
    "sms": "Send an SMS",
}
_MODAL_SUBMIT = {"suspend": "Suspend", "resume": "Resume", "cancel-location": "Detach", "sms": "Send"}
AT_EXECUTION = (
    ":information_source: Each line's provisioning limits are read from ThingSpace just before acting; "
    "a line at a limit is not sent, and you are told why."
)


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": blocks.truncate(text, limit), "emoji": True}


def modal_view(
    deps: Deps, action: pending.PendingAction, listed: list[ResolvedDevice], notes: Notes
) -> dict[str, Any]:
    """The confirmation of a button-started action as a modal: the devices, what is known about
    them, and a reason field (at most 300 characters; it reaches the channel post and the audit log)."""
    _call, _done, title = API_CALLS[action.verb]
    n = len(listed)
    body: list[dict[str, Any]] = [
        blocks.section(f"*{title} {_count(n)}?*\n{_devices_text(listed)}"),
        blocks.context(
            f"Set `{action.digest}` · expires in {format_duration_s(max(action.expires_at - deps.clock(), 0.0))}"
        ),
    ]
    body.extend(blocks.context(x) for x in notes.lines())
    if action.verb in LIMITED:
        body.append(blocks.context(AT_EXECUTION))
    if action.needs_approval:
        body.append(
            blocks.context(
                f":busts_in_silhouette: More than {deps.settings.approval_size} devices: a second person with the "
                "role must approve it in the channel."
            )
        )
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "reason",
        "max_length": MAX_REASON,
        "placeholder": _plain("e.g. stolen, customer request, site closed", 150),
    }
    if action.reason:
        element["initial_value"] = action.reason
    body.append(
        {
            "type": "input",
            "block_id": "reason",
            "optional": True,
            "label": _plain("Reason (shown in the channel and kept in the audit log)", 2000),
            "element": element,
        }
    )
    return {
        "type": "modal",
        "callback_id": f"ts:{MODAL}",
        "private_metadata": action.id,
        "title": _plain(_MODAL_TITLE.get(action.verb, "Confirm") + "?", 24),
        "submit": _plain(_MODAL_SUBMIT.get(action.verb, "Confirm"), 24),
        "close": _plain("Cancel", 24),
        "blocks": blocks.limit_blocks(body),
    }


def on_modal(deps: Deps, user: str, view: Mapping[str, Any]) -> dict[str, str] | None:
    """The modal submitted: the reason kept with the action, then exactly what Confirm does.
    Returns errors to show in the modal (it stays open), or None (it closes)."""
    db = deps.db()
    action = pending.get(db, str(view.get("private_metadata", "")))
    now = deps.clock()
    if action is None or action.state != "pending" or action.expires_at <= now:
        return {"reason": _expired_or_used(action, now)}
    state = view.get("state") or {}
    typed = (((state.get("values") or {}).get("reason") or {}).get("reason") or {}).get("value")
    reason = str(typed or "").strip()
    if len(reason) > MAX_REASON:
        return {"reason": f"At most {MAX_REASON} characters; this is {len(reason):,}."}
    if user != action.actor:
        return {"reason": "Only the person who asked can confirm this; you can run the command yourself."}
    if not may_run(user_role(deps, user, action.channel), deps.role_needed(action.verb)):
        return {"reason": f"Confirming a `{action.verb}` needs the *{deps.role_needed(action.verb)}* role."}
    with audit.transaction(db):
        pending.set_reason(db, action.id, reason)
    current = pending.get(db, action.id)
    assert current is not None
    request = ActionRequest(user=user, channel=action.channel, action_id="ts:confirm", value=action.id)
    reply = _confirm(deps, request, current)
    if not reply.replace_original:  # refused or too late: say it where they are
        return {"reason": reply.text}
    return None


def confirm_card(
    deps: Deps,
    action: pending.PendingAction,
    listed: list[ResolvedDevice],
    notes: Notes,
    *,
    limits: str,
    allowance: dict[str, int] | None = None,
) -> Reply:
    """The ephemeral card for *action*, whose devices are exactly *listed*; *limits* is
    ``reading``, ``read`` or ``none`` (a verb without provisioning limits)."""
    verb = action.verb
    _call, _done, title = API_CALLS[verb]
    n = len(listed)
    ttl = max(action.expires_at - deps.clock(), 0.0)
    question = f"{title} {_count(n)}?"
    body = [blocks.header(question), blocks.section(_devices_text(listed))]
    facts = [f"Set `{action.digest}`", f"expires in {format_duration_s(ttl)}"]
    if action.reason:
        facts.insert(0, f"Reason: {blocks.escape(action.reason)}")
    if verb == "sms":
        facts.insert(0, f"Text: “{blocks.escape(action.options['text'])}” ({action.options['encoding']})")
    if verb == "nidd":
        facts.insert(0, f"Data: {blocks.escape(nidd.describe(action.options))}")
    body.append(blocks.context(" · ".join(facts)))
    body.extend(blocks.context(x) for x in notes.lines())
    extra = _allowance_line(listed, allowance or {}) if verb == "suspend" else None
    if extra:
        body.append(blocks.context(extra))
    if limits == "reading":
        body.append(blocks.context(READING))
    elif limits == "at-execution":
        body.append(blocks.context(AT_EXECUTION))
    elif limits == "read" and not notes.unread_n:
        body.append(
            blocks.context(
                ":white_check_mark: Provisioning limits read from ThingSpace's provisioning history: "
                "every line listed is within them."
            )
        )
    if action.needs_approval:
        body.append(
            blocks.context(
                f":busts_in_silhouette: {_count(n)} is more than the approval size ({deps.settings.approval_size}): "
                "after you confirm, a second person with the role must approve it in the channel."
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
    return Reply(question, blocks.limit_blocks(body))


# -- telling the requester ------------------------------------------------------------------------


#: the option that marks an action a button started: its response_url's original is the card the
#: button was on (a status or diag card), which is never overwritten
VIA_BUTTON = "via_button"


def tell_requester(
    db: Database,
    action: pending.PendingAction,
    key: str,
    text: str,
    *,
    now: float,
    card_state: bool = False,
) -> None:
    """Tell the requester privately: through their response_url while Slack still takes it
    (30 minutes), else with chat.postEphemeral in the action's channel.

    *card_state*: *text* is the confirmation card's next state ("ThingSpace accepted …"), so it
    replaces the card (``replace_original``) instead of adding an ephemeral under it — unless a
    button started the action (its response_url's original is the card the button was on)."""
    if action.response_url and now - action.created_at < RESPONSE_URL_LIFETIME:
        replace = card_state and not action.options.get(VIA_BUTTON)
        outbox.enqueue_respond(
            db,
            key=key,
            response_url=action.response_url,
            text=text,
            blocks=[blocks.section(text)] if replace else None,
            replace_original=replace,
        )
    else:
        outbox.enqueue_ephemeral(db, key=key, channel=action.channel, user=action.actor, text=text)


# -- buttons -----------------------------------------------------------------------------------


def _expired_or_used(action: pending.PendingAction | None, now: float) -> str:
    if action is None:
        return "That confirmation no longer exists. Run the command again."
    if action.state == "pending" and action.expires_at <= now:
        return "This confirmation expired. Nothing was changed; run the command again if it is still needed."
    if action.state == SUPERSEDED:
        return (
            "This card was replaced after each line's provisioning limits were read from ThingSpace; "
            "use the buttons on the updated card."
        )
    if action.state in {"confirmed", "approved"}:
        return f"Already {action.state} by <@{action.decided_by}>; nothing more to do."
    if action.state == "expired" or (action.state == "awaiting_approval" and action.expires_at <= now):
        return "The approval window closed and nobody approved. Nothing was changed; run the command again."
    if action.state == "awaiting_approval":
        return "This is waiting for a second person's approval in the channel."
    if action.state == "cancelled" and action.decided_by == action.actor and action.needs_approval:
        return f"<@{action.actor}> withdrew this request. Nothing was changed."
    by = f" by <@{action.decided_by}>" if action.decided_by else ""
    return f"This was {action.state.replace('_', ' ')}{by}. Nothing was changed."


def _record(
    db: Database, req: ActionRequest, action: pending.PendingAction, verb: str, outcome: str, **detail: Any
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
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=kind,
                outcome=audit.Outcome.REFUSED,
                detail={"pending": req.value, "why": "unknown pending action"},
            )
        return Reply("That confirmation no longer exists. Run the command again.", replace_original=False)
    if kind == "reject" and req.user == action.actor:
        return _withdraw(deps, req, action)
    if kind == "cancel" and req.user != action.actor:
        # a pending id is no secret (it is in the card's button value): only the requester cancels
        with audit.transaction(db):
            _record(db, req, action, "cancel", "refused", why="not-requester", requested_by=action.actor)
        return Reply(
            "Only the person who asked can cancel this; it expires by itself if nobody confirms it.",
            replace_original=False,
        )
    role = user_role(deps, req.user, action.channel)
    if kind != "cancel" and not may_run(role, deps.role_needed(action.verb)):
        with audit.transaction(db):
            _record(db, req, action, kind, "denied", role=role)
        return Reply(
            f":no_entry: You can't {kind} a `{action.verb}`: it needs the *{deps.role_needed(action.verb)}* role.",
            replace_original=False,
        )
    if kind == "cancel":
        return _cancel(deps, req, action)
    if kind == "confirm":
        return _confirm(deps, req, action)
    return _decide(deps, req, action, approve=kind == "approve")


def _too_late(deps: Deps, req: ActionRequest, action: pending.PendingAction, kind: str) -> Reply:
    """The card was already used, decided, replaced or expired: say so, record the refused click."""
    db, now = deps.db(), deps.clock()
    current = pending.get(db, action.id)
    expired = current is not None and (
        current.state == "expired"
        or (current.state in {"pending", "awaiting_approval"} and current.expires_at <= now)
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
    if current is not None and current.state == "awaiting_approval" and current.expires_at <= now:
        _expire_one(deps, current.id, now)
        current = pending.get(db, action.id)
    return Reply(_expired_or_used(current, now), replace_original=False)


def _cancel(deps: Deps, req: ActionRequest, action: pending.PendingAction) -> Reply:
    db, now = deps.db(), deps.clock()
    with audit.transaction(db):
        done = pending.claim(db, action.id, from_state="pending", to_state="cancelled", by=req.user, now=now)
        if done:
            _record(db, req, action, "cancel", "ok")
    if not done:
        return _too_late(deps, req, action, "cancel")
    return Reply(
        f"Cancelled: {action.verb} of {_count(len(action.devices))}. Nothing was changed.",
        replace_original=True,
    )


def _withdraw(deps: Deps, req: ActionRequest, action: pending.PendingAction) -> Reply | None:
    """The requester's own Reject on the approval card: they take the request back."""
    db, now = deps.db(), deps.clock()
    with audit.transaction(db):
        done = pending.claim(
            db, action.id, from_state="awaiting_approval", to_state="cancelled", by=req.user, now=now
        )
        if done:
            _record(db, req, action, "cancel", "ok", withdrawn=True)
            line = (
                f":white_circle: Withdrawn by <@{action.actor}>: {action.verb} of "
                f"{_count(len(action.devices))}" + _reason_tail(action) + ". Nothing was changed."
            )
            outbox.enqueue_update(
                db, target_key=f"approval:{action.id}", text=line, blocks=[blocks.section(line)]
            )
    if not done:
        return _too_late(deps, req, action, "reject")
    deps.wake()
    return None


def _confirm(deps: Deps, req: ActionRequest, action: pending.PendingAction) -> Reply:
    db, now = deps.db(), deps.clock()
    if req.user != action.actor:
        with audit.transaction(db):
            _record(db, req, action, "confirm", "refused", why="not-requester", requested_by=action.actor)
        return Reply(
            "Only the person who asked can confirm this; you can run the command yourself.",
            replace_original=False,
        )
    target = "awaiting_approval" if action.needs_approval else "confirmed"
    window = deps.settings.approval_ttl.total_seconds()
    with audit.transaction(db):
        claimed = pending.claim(db, action.id, from_state="pending", to_state=target, by=req.user, now=now)
        if claimed:
            _record(db, req, action, "confirm", "ok", digest=action.digest)
            if claimed.needs_approval:
                pending.set_state(db, action.id, "awaiting_approval", expires_at=now + window)
                _post_approval_card(db, claimed, window, mention=deps.settings.approver_mention)
            else:
                queue_execution(db, action.id)
    if not claimed:
        return _too_late(deps, req, action, "confirm")
    deps.wake()
    n = _count(len(action.devices))
    if claimed.needs_approval:
        return Reply(
            f"Confirmed. {n} is more than the approval size ({deps.settings.approval_size}): an approval card "
            f"is in the channel; a second person with the role must approve it within {format_duration_s(window)}. "
            "Your Reject on it withdraws the request.",
            replace_original=True,
        )
    return Reply(
        f"Confirmed — working on {action.verb} for {n}. Results will follow in the channel.",
        replace_original=True,
    )


def _reason_tail(action: pending.PendingAction) -> str:
    return f" — reason: {blocks.escape(action.reason)}" if action.reason else ""


def _decide(deps: Deps, req: ActionRequest, action: pending.PendingAction, *, approve: bool) -> Reply | None:
    """Approve or Reject by a second person, never the requester (four eyes)."""
    db, now = deps.db(), deps.clock()
    kind = "approve" if approve else "reject"
    if req.user == action.actor:
        with audit.transaction(db):
            _record(db, req, action, kind, "refused", why="self-approval")
        return Reply(
            "You asked for this, so someone else must approve it (four eyes). Your Reject withdraws it.",
            replace_original=False,
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
                f"requested by <@{action.actor}>" + _reason_tail(action)
            )
            outbox.enqueue_update(
                db, target_key=f"approval:{action.id}", text=line, blocks=[blocks.section(line)]
            )
            if approve:
                queue_execution(db, action.id)
                tell_requester(
                    db,
                    action,
                    f"approved:{action.id}",
                    f":white_check_mark: <@{req.user}> approved your {action.verb} of {_count(len(action.devices))}; "
                    "it is being sent to ThingSpace and the results will follow in the channel.",
                    now=now,
                )
            else:
                tell_requester(
                    db,
                    action,
                    f"rejected:{action.id}",
                    f"<@{req.user}> rejected your {action.verb} of {_count(len(action.devices))}. Nothing was changed.",
                    now=now,
                )
    if not claimed:
        return _too_late(deps, req, action, kind)
    deps.wake()
    return None


#: the approval card's thread lists the whole set in messages of at most this many characters…
LIST_CHUNK = 2900
#: …and at most this many of them (beyond: a count and the set's digest)
LIST_MESSAGES = 10


def _post_approval_card(
    db: Database, action: pending.PendingAction, window: float, *, mention: str = ""
) -> None:
    """The approval card in the channel (mentioning the approvers' user group, if configured) and
    the full list of devices in its thread."""
    _call, _done, title = API_CALLS[action.verb]
    n = len(action.devices)
    listed = resolve_keys(db, action.devices[: SHOW_DEVICES + 1])
    text = f"<@{action.actor}> asks to {title.lower()} {_count(n)}" + _reason_tail(action)
    if action.verb in MESSAGES:
        text += f" — {'data' if action.verb == 'nidd' else 'text'}: “{blocks.escape(action.options.get('text', ''))}”"
    shown = _devices_text(listed)
    if n > SHOW_DEVICES:
        shown = (
            "\n".join(shown.split("\n")[:SHOW_DEVICES])
            + f"\n…and {n - SHOW_DEVICES:,} more (all listed in the thread)"
        )
    ping = f"<!subteam^{mention}> " if mention else ""
    body = [
        blocks.section(f":busts_in_silhouette: {ping}*Approval needed.* {text}."),
        blocks.section(shown),
        blocks.context(
            f"Set `{action.digest}` · a second person with the role must approve · "
            f"expires in {format_duration_s(window)} · the requester's Reject withdraws it"
        ),
        blocks.actions(
            blocks.button(
                "Approve",
                "ts:approve",
                action.id,
                style="primary",
                confirm=(f"Approve {title.lower()} {_count(n)}?", text, "Approve"),
            ),
            blocks.button("Reject", "ts:reject", action.id),
            block_id=f"approval:{action.id}",
        ),
    ]
    card_key = f"approval:{action.id}"
    outbox.enqueue_post(
        db,
        key=card_key,
        channel=action.channel,
        text=blocks.truncate(f"{ping}Approval needed: {text}", 3000),
        blocks=body,
    )
    if n <= SHOW_DEVICES:
        return
    chunks: list[str] = []
    current: list[str] = []
    listed_n = 0
    for device in resolve_keys(db, action.devices):
        line = f"• {device.shown}"
        if sum(len(x) + 1 for x in current) + len(line) > LIST_CHUNK:
            chunks.append("\n".join(current))
            current = []
            if len(chunks) == LIST_MESSAGES:
                break
        current.append(line)
        listed_n += 1
    if current and len(chunks) < LIST_MESSAGES:
        chunks.append("\n".join(current))
    else:
        listed_n -= len(current)
    for i, chunk in enumerate(chunks, start=1):
        head = f"*All {_count(n)} of set `{action.digest}`* ({i} of {len(chunks)}):\n" if i == 1 else ""
        tail = ""
        if i == len(chunks) and listed_n < n:
            tail = f"\n…and {n - listed_n:,} more, bound to set `{action.digest}`"
        message = head + chunk + tail
        outbox.enqueue_post(
            db,
            key=f"{card_key}:list:{i}",
            channel=action.channel,
            text=blocks.truncate(message, 3000),
            blocks=[blocks.section(message)],
            thread_key=card_key,
        )


# -- approvals nobody decided ----------------------------------------------------------------------


def _expire_one(deps: Deps, action_id: str, now: float) -> bool:
    db = deps.db()
    with audit.transaction(db):
        action = pending.get(db, action_id)
        if action is None or action.state != "awaiting_approval" or action.expires_at > now:
            return False
        pending.set_state(db, action.id, "expired")
        audit.record(
            db,
            actor=SYSTEM_ACTOR,
            channel=action.channel,
            verb=audit.Verb.APPROVE,
            outcome=audit.Outcome.EXPIRED,
            targets=action.devices,
            reason=action.reason,
            detail={"pending": action.id, "verb": action.verb, "requested_by": action.actor},
        )
        n = _count(len(action.devices))
        line = (
            f":hourglass: Expired, nobody approved: {action.verb} of {n} requested by <@{action.actor}>"
            + _reason_tail(action)
            + ". Nothing was changed."
        )
        outbox.enqueue_update(
            db, target_key=f"approval:{action.id}", text=line, blocks=[blocks.section(line)]
        )
        tell_requester(
            db,
            action,
            f"expired:{action.id}",
            f":hourglass: Nobody approved your {action.verb} of {n} in time, so it expired. Nothing was changed; "
            "run the command again if it is still needed.",
            now=now,
        )
    deps.wake()
    return True


def expire_approvals(deps: Deps, now: float | None = None) -> int:
    """Scheduler job: close every approval past its window (card without buttons, requester told,
    one audit entry each). Returns how many it closed."""
    now = deps.clock() if now is None else now
    return sum(_expire_one(deps, action_id, now) for action_id in pending.expired_approvals(deps.db(), now))


# -- the ThingSpace call of each confirmed action (VerbSpec.submit) ---------------------------------


def submit_suspend(
    client: ThingSpaceClient, devices: Sequence[DeviceId], options: Mapping[str, Any]
) -> RequestAccepted:
    return client.suspend(devices)


def submit_resume(
    client: ThingSpaceClient, devices: Sequence[DeviceId], options: Mapping[str, Any]
) -> RequestAccepted:
    return client.restore(devices)


def submit_cancel_location(
    client: ThingSpaceClient, devices: Sequence[DeviceId], options: Mapping[str, Any]
) -> RequestAccepted:
    """One device per request: ThingSpace's cancel location takes a single line."""
    return client.cancel_location(devices[0])


def submit_sms(
    client: ThingSpaceClient, devices: Sequence[DeviceId], options: Mapping[str, Any]
) -> RequestAccepted:
    # the text exactly as typed (commands.grammar undid Slack's escaping): "a < b" stays so
    return client.send_sms(devices, options["text"], encoding=options.get("encoding"))


def buttons() -> dict[str, ActionHandler]:
    """The confirmation and approval cards' buttons, for the router's button table."""
    return {kind: functools.partial(on_button, kind=kind) for kind in BUTTONS}
