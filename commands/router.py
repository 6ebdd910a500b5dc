"""Entry points from Slack: a slash command or a button click in, a :class:`Reply` out.

Everything here is local work — parse, authorize, read the directory and the audit log, write
a job or a pending action with its audit entry — so the reply can go back in Slack's ack. What
needs ThingSpace is a job row, run by the worker after the ack.

The :class:`Router` is given its tables by the composition root: the verbs
(:data:`commands.registry.VERBS`) and the buttons (:data:`commands.registry.BUTTONS`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.core.redact import mask_text
from commands import audit
from commands.context import ActionHandler, ActionRequest, CommandRequest, Deps, Reply, VerbSpec, ViewHandler
from commands.grammar import Invocation, UnknownVerb, UsageError, parse
from commands.help import role_line, unknown_verb_text
from commands.policy import may_run, user_role

__all__ = ["RUN_BUTTON", "Router", "invalid"]

log = logging.getLogger(__name__)

#: a button that runs a command as the clicker (Diagnose, Suspend… on a status card); its value
#: is the command text
RUN_BUTTON = "run"


class Router:
    """Dispatches slash commands through the verb table and clicks through the button table
    (the part of ``action_id`` after ``ts:``, e.g. ``ts:confirm`` -> ``confirm``)."""

    def __init__(
        self,
        verbs: Mapping[str, VerbSpec],
        buttons: Mapping[str, ActionHandler],
        views: Mapping[str, ViewHandler] | None = None,
    ) -> None:
        self.verbs = verbs
        self.buttons = buttons
        self.views = dict(views or {})

    def handle_command(self, deps: Deps, req: CommandRequest) -> Reply:
        """Answer a ``/ts`` command from local work only; every command leaves one audit entry."""
        db = deps.db()
        try:
            inv = parse(req.text, self.verbs)
        except UnknownVerb as exc:
            # list only what this user may run, as help does
            role = user_role(deps, req.user, req.channel)
            return self._invalid(deps, req, UsageError(unknown_verb_text(self.verbs, exc.word, role)), None)
        except UsageError as exc:
            return self._invalid(deps, req, exc, None)
        spec = self.verbs[inv.verb]
        role = user_role(deps, req.user, req.channel)
        targets = [t.text for t in inv.targets]
        if not may_run(role, spec.role):
            with audit.transaction(db):
                audit.record(
                    db,
                    actor=req.user,
                    channel=req.channel,
                    verb=inv.verb,
                    outcome=audit.Outcome.DENIED,
                    targets=targets,
                    detail={"role": role, "needed": spec.role},
                )
            deps.hook("command", inv.verb, "denied")
            return Reply(
                f":no_entry: You can't run `{inv.verb}` here: it needs the *{spec.role}* role. "
                f"{role_line(role)} `/ts help` lists what you can run; an admin can grant more."
            )
        try:
            reply = spec.handler(deps, req, inv, role)
        except UsageError as exc:
            return self._invalid(deps, req, exc, inv)
        if not spec.self_audited:
            with audit.transaction(db):
                audit.record(
                    db,
                    actor=req.user,
                    channel=req.channel,
                    verb=inv.verb,
                    outcome=audit.Outcome.OK,
                    targets=targets,
                    detail={"text": inv.text[:200]} if inv.text else {},
                )
        deps.hook("command", inv.verb, "ok")
        return reply

    def handle_action(self, deps: Deps, req: ActionRequest) -> Reply | None:
        """A button click. Returns a reply to post via the response_url, or None when the handler
        queued its own messages."""
        parts = req.action_id.split(":")  # ts:<kind>[:serial]
        kind = parts[1] if len(parts) > 1 else req.action_id
        if kind == RUN_BUTTON:
            return self.handle_command(
                deps,
                CommandRequest(
                    user=req.user,
                    channel=req.channel,
                    text=req.value,
                    response_url=req.response_url,
                    trigger_id=req.trigger_id,
                    via_button=True,
                ),
            )
        handler = self.buttons.get(kind)
        if handler is not None:
            return handler(deps, req)
        log.info("ignored unknown action %s", kind)
        return Reply("That button belongs to an older version of the bot; run the command again.")

    def handle_view(self, deps: Deps, user: str, view: Mapping[str, Any]) -> dict[str, str] | None:
        """A submitted modal, by its ``callback_id`` (``ts:<kind>``, looked up in the button table
        as ``view:<kind>``): None closes it, ``{block_id: message}`` shows errors in it."""
        kind = str(view.get("callback_id", "")).removeprefix("ts:")
        handler = self.views.get(kind)
        if handler is None:
            return {"reason": "This form belongs to an older version of the bot; run the command again."}
        return handler(deps, user, view)

    def _invalid(self, deps: Deps, req: CommandRequest, exc: UsageError, inv: Invocation | None) -> Reply:
        return invalid(deps, self.verbs, req, exc, inv)


def invalid(
    deps: Deps, verbs: Mapping[str, VerbSpec], req: CommandRequest, exc: UsageError, inv: Invocation | None
) -> Reply:
    """The answer to a command that is wrong (its usage line included), with its audit entry."""
    db = deps.db()
    verb = inv.verb if inv else exc.verb or "unknown"
    with audit.transaction(db):
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=verb,
            outcome=audit.Outcome.INVALID,
            targets=[t.text for t in inv.targets] if inv else [],
            detail={"error": mask_text(exc.message)},
        )
    deps.hook("command", verb, "invalid")
    text = f":warning: {exc.message}"
    if exc.verb and exc.verb in verbs:
        text += f"\nUsage: `/ts {verbs[exc.verb].usage}`"
    return Reply(text)
