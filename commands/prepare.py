"""Actions on more lines than can be checked inside Slack's 3 s, prepared by the worker.

Resolving a target, checking each line against the guard rails and writing the pending action
cost a few microseconds a line: nothing for a list of ids, but seconds for a ``group:`` of a
hundred thousand lines on a million-line fleet, and Slack shows an error after 3 s. So when the
targets name more than :data:`AFTER_ACK` lines (counted from the membership index alone), the
ack says what was asked and how many lines that is, and a ``prepare`` job runs the verb's own
handler as the person who typed it; its answer (the dry run, the confirmation card, or the
error) replaces the placeholder through the response_url, written in the same transaction as
the card's own rows.

The job is written before the ack, so a crash after the ack only delays the answer.
"""

from __future__ import annotations

import secrets

from bot.render import blocks
from commands.context import CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError, parse
from commands.router import invalid
from storage import jobs, outbox
from storage.db import write
from storage.jobs import Job

__all__ = ["AFTER_ACK", "JOB_KIND", "later", "run"]

#: more lines than this are checked after the ack (about 50 ms of the ack's budget on this size)
AFTER_ACK = 5_000
#: the job kind of a prepared command (see :func:`run`)
JOB_KIND = "prepare"


def later(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None, size: int) -> Reply:
    """Queue *inv* for the worker and answer with what is being checked."""
    db = deps.db()
    command = {
        "user": req.user,
        "channel": req.channel,
        "text": req.text,
        "response_url": req.response_url,
        "team": req.team,
    }
    with write(db):
        jobs.enqueue(
            db,
            key=f"prepare:{secrets.token_urlsafe(12)}",
            kind=JOB_KIND,
            # response_url: where the worker says so if the job fails (bot.worker)
            payload={"command": command, "role": role, "response_url": req.response_url},
        )
    deps.wake()
    return placeholder(inv, size)


def placeholder(inv: Invocation, size: int) -> Reply:
    """The ack of a prepared command: what was asked, how many lines it names, what comes next."""
    asked = f"{inv.verb}{' --dry-run' if inv.dry_run else ''}"
    named = ", ".join(f"group:{blocks.escape(t.group.strip())}" for t in inv.targets if t.is_group)
    then = (
        "the dry run replaces this message in a few seconds. Nothing is changed."
        if inv.dry_run
        else "the confirmation card replaces this message in a few seconds. Nothing changes until you confirm."
    )
    return Reply(
        f"Checking {size:,} lines for {asked}…",
        [
            blocks.section(f":hourglass_flowing_sand: *Checking {size:,} lines* of {named} for `{asked}`…"),
            blocks.context(
                f"That is too many to check within Slack's 3 seconds: each line is checked now, and {then}"
            ),
        ],
    )


def run(deps: Deps, job: Job) -> None:
    """The ``prepare`` job: the verb's handler as the person who typed the command, seconds
    later; its answer replaces the placeholder (a command that has become wrong meanwhile, say its
    group was emptied by a sync, gets the usual error there instead)."""
    spec = job.payload["command"]
    req = CommandRequest(
        user=str(spec["user"]),
        channel=str(spec["channel"]),
        text=str(spec["text"]),
        response_url=str(spec["response_url"]),
        team=str(spec.get("team", "")),
        prepared=True,
    )
    role = job.payload.get("role")
    inv: Invocation | None = None
    try:
        inv = parse(req.text, deps.verbs)
        deps.verbs[inv.verb].handler(deps, req, inv, None if role is None else str(role))
    except UsageError as exc:
        reply = invalid(deps, deps.verbs, req, exc, inv)
        db = deps.db()
        with write(db):
            outbox.enqueue_respond(
                db,
                key=f"prepared:{job.key}",
                response_url=req.response_url,
                text=reply.text,
                blocks=reply.blocks,
                replace_original=True,
            )
        deps.wake()
