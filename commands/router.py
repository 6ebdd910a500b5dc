"""Entry points from Slack: a slash command or a button click in, a :class:`Reply` out.

Everything here is local work — parse, authorize, read the directory and the audit log, write
a job or a pending action with its audit entry — so the reply can go back in Slack's ack. What
needs ThingSpace is a job row, run by the worker after the ack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.core.redact import mask_text
from commands import actions, audit, browse, lookup, retry
from commands.context import ActionRequest, CommandRequest, Deps, Reply
from commands.grammar import Invocation, UnknownVerb, UsageError, parse
from commands.help import help_reply, role_line, unknown_verb_text
from commands.policy import VERBS, may_run, role_of
from storage import memberships

__all__ = ["EXTRA_ACTIONS", "EXTRA_VERBS", "handle_action", "handle_command", "user_role"]

log = logging.getLogger(__name__)

Handler = Callable[[Deps, CommandRequest, Invocation, str | None], Reply]

_HANDLERS: dict[str, Handler] = {
    "help": lambda deps, req, inv, role: help_reply(role, inv.text),
    "find": browse.find,
    "history": browse.history,
    "status": lookup.start,
    "diag": lookup.start,
    "reach": lookup.start,
    "request": lookup.start_request,
    "suspend": actions.start,
    "resume": actions.start,
    "cancel-location": actions.start,
    "sms": actions.start,
}

#: Verb families registered by other modules (watches): verb -> handler.
EXTRA_VERBS: dict[str, Handler] = {}

ActionHandler = Callable[[Deps, ActionRequest], Reply | None]
#: Buttons registered by other modules: the part after ``ts:`` in action_id -> handler.
EXTRA_ACTIONS: dict[str, ActionHandler] = {}


def user_role(deps: Deps, user: str, channel: str) -> str | None:
    groups: set[str] = set()
    if deps.settings.grants.mentions_groups():
        groups = memberships.groups_of(deps.db(), user)  # wall clock, like the refresh that wrote them
    return role_of(deps.settings.grants, user=user, groups=groups, channel=channel)


#: Verbs whose handlers write their own audit entry (with the outcome only they know).
SELF_AUDITED = frozenset(
    {"suspend", "resume", "sms", "cancel-location", "reach", "watch", "unwatch", "diag", "status", "request"}
)


def _invalid(deps: Deps, req: CommandRequest, exc: UsageError, inv: Invocation | None) -> Reply:
    db = deps.db()
    verb = inv.verb if inv else exc.verb or "unknown"
    with audit.transaction(db):
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=verb,
            outcome="invalid",
            targets=[t.text for t in inv.targets] if inv else [],
            detail={"error": mask_text(exc.message)},
        )
    deps.hook("command", verb, "invalid")
    return _usage_reply(exc)


def handle_command(deps: Deps, req: CommandRequest) -> Reply:
    """Answer a ``/ts`` command from local work only; every command leaves one audit entry."""
    db = deps.db()
    try:
        inv = parse(req.text)
    except UnknownVerb as exc:
        # list only what this user may run, as help does
        role = user_role(deps, req.user, req.channel)
        return _invalid(deps, req, UsageError(unknown_verb_text(exc.word, role)), None)
    except UsageError as exc:
        return _invalid(deps, req, exc, None)
    role = user_role(deps, req.user, req.channel)
    targets = [t.text for t in inv.targets]
    if not may_run(role, inv.verb):
        need = VERBS[inv.verb].role
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=inv.verb,
                outcome="denied",
                targets=targets,
                detail={"role": role, "needed": need},
            )
        deps.hook("command", inv.verb, "denied")
        return Reply(
            f":no_entry: You can't run `{inv.verb}` here: it needs the *{need}* role. "
            f"{role_line(role)} `/ts help` lists what you can run; an admin can grant more."
        )
    handler = _HANDLERS.get(inv.verb) or EXTRA_VERBS.get(inv.verb)
    if handler is None:
        return Reply(f"`{inv.verb}` is not available in this installation. Try `/ts help`.")
    try:
        reply = handler(deps, req, inv, role)
    except UsageError as exc:
        return _invalid(deps, req, exc, inv)
    if inv.verb not in SELF_AUDITED:
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=inv.verb,
                outcome="ok",
                targets=targets,
                detail={"text": inv.text[:200]} if inv.text else {},
            )
    deps.hook("command", inv.verb, "ok")
    return reply


def _usage_reply(exc: UsageError) -> Reply:
    text = f":warning: {exc.message}"
    if exc.verb and exc.verb in VERBS:
        text += f"\nUsage: `/ts {VERBS[exc.verb].usage}`"
    return Reply(text)


def handle_action(deps: Deps, req: ActionRequest) -> Reply | None:
    """A button click. Returns a reply to post via the response_url, or None when the handler
    queued its own messages."""
    parts = req.action_id.split(":")  # ts:<kind>[:serial]
    kind = parts[1] if len(parts) > 1 else req.action_id
    if kind == "run":
        # buttons that run a command as the clicker (Diagnose, Suspend… on a status card)
        return handle_command(
            deps,
            CommandRequest(user=req.user, channel=req.channel, text=req.value, response_url=req.response_url),
        )
    if kind in actions.BUTTONS:
        return actions.on_button(deps, req, kind)
    if kind == "retry":
        return retry.on_retry(deps, req)
    if kind == "history-more":
        return browse.history_more(deps, req, user_role(deps, req.user, req.channel))
    extra = EXTRA_ACTIONS.get(kind)
    if extra is not None:
        return extra(deps, req)
    log.info("ignored unknown action %s", kind)
    return Reply("That button belongs to an older version of the bot; run the command again.")
