"""``/ts help [verb]``: only what this user may run here, with an example of each."""

from __future__ import annotations

from collections.abc import Mapping

from bot.render import blocks
from bot.thingspace.ids import BARE_KINDS, KIND_FORMATS, KINDS
from commands.context import Reply, VerbSpec
from commands.grammar import unknown_verb_message
from commands.policy import may_run, verbs_for

__all__ = ["help_reply", "role_line", "targets_help", "unknown_verb_text"]


def role_line(role: str | None) -> str:
    if role is None:
        return (
            "You have no role here yet, so you can only read this help. Ask an admin to grant you "
            "`viewer` (or your channel or user group) in the bot's configuration file."
        )
    return f"Your role here: *{role}*."


def targets_help() -> str:
    """Every kind of target the grammar accepts, with its format (from :data:`KIND_FORMATS`)."""
    kinds = " · ".join(f"`{kind}:…` {fmt}" for kind, fmt in KIND_FORMATS.items())
    prefixed = ", ".join(k for k in KINDS if k not in BARE_KINDS)
    return (
        f"*Targets:* {kinds} · `group:NAME` a device group. An id alone works when only one kind "
        f"fits it ({prefixed} always needs its prefix); several at once with spaces or commas."
    )


def unknown_verb_text(verbs: Mapping[str, VerbSpec], word: str, role: str | None) -> str:
    """*word* is not a verb: the closest verb, and only the verbs this role may run."""
    text = unknown_verb_message(word, verbs, {v.name for v in verbs_for(verbs, role)})
    return text if role is not None else f"{text} {role_line(role)}"


def help_reply(verbs: Mapping[str, VerbSpec], role: str | None, verb: str = "") -> Reply:
    """``/ts help`` (every verb *role* may run) or ``/ts help VERB`` (how to use one)."""
    verb = verb.strip().lower()
    if verb:
        spec = verbs.get(verb)
        if spec is None:
            return Reply(unknown_verb_text(verbs, verb, role))
        if not may_run(role, spec.role):
            return Reply(
                f"`{verb}` needs the *{spec.role}* role; {role_line(role).lower()} "
                "Ask an admin if you need it."
            )
        body = [
            blocks.section(f"*/ts {spec.usage}*\n{spec.summary}"),
            blocks.context(f"Example: `{spec.example}`"),
        ]
        if spec.mutating:
            body.append(
                blocks.context(
                    "Asks you to confirm the exact devices first; `--dry-run` shows what would be called and "
                    "changes nothing."
                )
            )
        return Reply(f"/ts {spec.usage}", body)
    allowed = verbs_for(verbs, role)
    lines = [f"• `/ts {v.usage}` — {v.summary}" for v in allowed]
    body = [
        blocks.header("ThingSpace commands you can run"),
        blocks.section("\n".join(lines)),
        blocks.context(targets_help()),
        blocks.context(role_line(role), "`/ts help VERB` for details."),
    ]
    return Reply("ThingSpace commands you can run: " + ", ".join(v.name for v in allowed), body)
