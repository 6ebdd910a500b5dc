"""``/ts help [verb]``: only what this user may run here, with an example of each."""

from __future__ import annotations

from bot import blocks
from commands.context import Reply
from commands.policy import VERBS, may_run, verbs_for

__all__ = ["help_reply", "role_line"]


def role_line(role: str | None) -> str:
    if role is None:
        return (
            "You have no role here yet, so you can only read this help. Ask an admin to grant you "
            "`viewer` (or your channel or user group) in the bot's configuration file."
        )
    return f"Your role here: *{role}*."


def help_reply(role: str | None, verb: str = "") -> Reply:
    if verb:
        spec = VERBS.get(verb)
        if spec is None:
            return Reply(f"There is no `{verb}` command. Try `/ts help` for the list.")
        if not may_run(role, verb):
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
    allowed = verbs_for(role)
    lines = [f"• `/ts {v.usage}` — {v.summary}" for v in allowed]
    body = [
        blocks.header("ThingSpace commands you can run"),
        blocks.section("\n".join(lines)),
        blocks.context(
            role_line(role),
            "Targets: `iccid:…`, `mdn:…`, `imei:…`, a bare ICCID/IMEI, or `group:NAME`; several at once with "
            "spaces or commas. `/ts help VERB` for details.",
        ),
    ]
    return Reply("ThingSpace commands you can run: " + ", ".join(v.name for v in allowed), body)
