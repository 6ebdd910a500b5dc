"""``/ts history`` as a timeline: one entry per thing a person (or the bot) did, the ThingSpace calls
and callbacks it caused folded under it, times in the reader's zone.

:func:`fold` turns audit rows (newest first, as the log answers) into :class:`TimelineEntry` values;
:func:`interleave` merges entries from another source — ThingSpace's own provisioning history of a
device, marked ``source="thingspace"`` — by time; :func:`render` draws them as Block Kit. Rows of
``history`` itself (reading the log) are left out; ``tsbot audit export`` keeps every row.

Folding, in time order: a ``thingspace.call`` without a request id belongs to the latest earlier
entry of the same person (the lookups behind ``status`` and ``diag``); one with a request id starts
that request on the latest earlier entry of the same person; a ``callback`` joins the entry holding
its request id; a ``confirm``/``approve``/``reject``/``cancel`` joins the entry whose pending action
it decided.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from bot.render import blocks, times
from storage.audit.events import SYSTEM_ACTOR, THINGSPACE_ACTOR, AuditRow

__all__ = ["HIDDEN_VERBS", "TimelineEntry", "fold", "interleave", "render", "who"]

#: meta-commands: reading the log is not part of a device's story
HIDDEN_VERBS = frozenset({"history", "find", "help"})
_CALL = "thingspace.call"
_CALLBACK = "callback"
_DECISIONS = frozenset({"confirm", "approve", "reject", "cancel"})
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
#: how many folded lines one entry shows before "…and N more"
SHOW_LINES = 6


def who(actor: str) -> str:
    """A person as a mention; the bot's own actors as words (never a broken ``<@system>``)."""
    if _USER.match(actor):
        return f"<@{actor}>"
    if actor == SYSTEM_ACTOR:
        return "the bot"
    if actor == THINGSPACE_ACTOR:
        return "ThingSpace"
    return blocks.escape(actor or "someone")


@dataclass
class TimelineEntry:
    """One line of the timeline and what is folded under it."""

    at: datetime
    actor: str
    title: str
    lines: list[str] = field(default_factory=list)
    #: ``bot`` (the audit log) or ``thingspace`` (ThingSpace's provisioning history, issue 16)
    source: str = "bot"
    #: the oldest audit row id behind it (paging with More)
    first_row: int | None = None
    request_ids: set[str] = field(default_factory=set)
    pending: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: where it ended, once later rows said (``suspended``, ``rejected``…), shown in the title
    outcome: str = ""


def _operation(row: AuditRow) -> str:
    op = str(row.detail.get("operation") or "call")
    return op.rsplit("/", 1)[-1] if op.startswith(("POST ", "GET ", "PUT ", "DELETE ")) else op


def _outcome(text: str) -> str:
    return text.replace("-", " ")


def _title(row: AuditRow) -> str:
    title = f"*{blocks.escape(row.verb)}* → {blocks.escape(_outcome(row.outcome))}"
    if row.reason:
        title += f" — _{blocks.escape(row.reason)}_"
    return title


def fold(rows: Sequence[AuditRow]) -> list[TimelineEntry]:
    """Audit rows (any order) → timeline entries, newest first (see the module docstring)."""
    entries: list[TimelineEntry] = []
    latest_by_actor: dict[str, TimelineEntry] = {}
    by_request: dict[str, TimelineEntry] = {}
    by_pending: dict[str, TimelineEntry] = {}
    for row in sorted(rows, key=lambda r: r.id):
        if row.verb in HIDDEN_VERBS:
            continue
        pending_id = str(row.detail.get("pending") or "")
        if row.verb == _CALL:
            owner = by_request.get(row.request_id) if row.request_id else None
            owner = owner or latest_by_actor.get(row.actor)
            if owner is not None:
                if not row.request_id:
                    owner.calls.append((_operation(row), row.outcome))
                if row.request_id:
                    owner.request_ids.add(row.request_id)
                    by_request[row.request_id] = owner
                    owner.lines.append(
                        f"ThingSpace took the {blocks.escape(_operation(row))} request · req `{row.request_id[:8]}`"
                    )
                continue
        elif row.verb == _CALLBACK and row.request_id in by_request:
            owner = by_request[row.request_id]
            what = blocks.escape(str(row.detail.get("kind") or row.detail.get("status") or row.outcome))
            count = len(row.targets)
            many = f" ({count:,} devices)" if count > 1 else ""
            owner.lines.append(
                f"ThingSpace called back: {what}{many} → {blocks.escape(_outcome(row.outcome))}"
            )
            owner.outcome = (
                f"{what}{many}" if row.outcome == "ok" else f"{what}{many}: {_outcome(row.outcome)}"
            )
            continue
        elif row.verb in _DECISIONS and pending_id in by_pending:
            owner = by_pending[pending_id]
            owner.lines.append(
                f"{blocks.escape(row.verb)} by {who(row.actor)} → {blocks.escape(_outcome(row.outcome))}"
            )
            if row.outcome == "ok":
                owner.outcome = {"confirm": "confirmed", "approve": "approved", "reject": "rejected"}.get(
                    row.verb, "cancelled"
                )
            if row.reason and "— _" not in owner.title:  # a reason given when confirming (a modal)
                owner.title += f" — _{blocks.escape(row.reason)}_"
            continue
        entry = TimelineEntry(
            at=row.at, actor=row.actor, title=_title(row), first_row=row.id, pending=pending_id
        )
        if row.request_id:
            entry.request_ids.add(row.request_id)
            by_request[row.request_id] = entry
            entry.title += f" · req `{row.request_id[:8]}`"
        if pending_id:
            by_pending[pending_id] = entry
        if _USER.match(row.actor):
            latest_by_actor[row.actor] = entry
        entries.append(entry)
    for entry in entries:
        if entry.outcome:
            entry.title = re.sub(r"→ [^—·]*", f"→ {entry.outcome} ", entry.title, count=1).replace("  ", " ")
            entry.title = entry.title.rstrip()
        if entry.calls:
            failed = [op for op, outcome in entry.calls if outcome not in ("ok", "accepted")]
            names = list(dict.fromkeys(op for op, _ in entry.calls))
            shown = ", ".join(blocks.escape(n) for n in names[:4]) + (", …" if len(names) > 4 else "")
            state = "all answered" if not failed else f"{len(failed)} failed"
            word = "call" if len(entry.calls) == 1 else "calls"
            entry.lines.insert(0, f"{len(entry.calls)} ThingSpace {word} ({shown}) — {state}")
    return sorted(entries, key=lambda e: e.at, reverse=True)


def interleave(entries: Sequence[TimelineEntry], extra: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """*entries* and *extra* (e.g. ThingSpace's provisioning history, ``source="thingspace"``) in one
    timeline, newest first. Entries at the same moment keep the audit log's first."""
    merged = [(e.at, 1, i, e) for i, e in enumerate(entries)]
    merged += [(e.at, 0, i, e) for i, e in enumerate(extra)]
    return [e for *_, e in sorted(merged, key=lambda x: (x[0], x[1], -x[2]), reverse=True)]


def render(
    entries: Sequence[TimelineEntry], *, title: str, tz: tzinfo, now: datetime, footer: str = ""
) -> list[dict[str, Any]]:
    """Block Kit for a page of the timeline: one section per few entries (≤ 3,000 characters)."""
    texts: list[str] = []
    for entry in entries:
        when = f"{times.at(entry.at, tz, now=now)} ({times.ago(entry.at, now)})"
        if entry.source == "thingspace":  # a row of ThingSpace's own history: it says who did it
            marked = "" if "from ThingSpace" in entry.title else " · _from ThingSpace_"
            line = f"*{when}* · {entry.title}{marked}"
        else:
            line = f"*{when}* · {who(entry.actor)} {entry.title}"
        extra = entry.lines[:SHOW_LINES]
        if len(entry.lines) > SHOW_LINES:
            extra.append(f"…and {len(entry.lines) - SHOW_LINES} more")
        texts.append("\n".join([line, *(f"    ↳ {x}" for x in extra)]))
    body: list[dict[str, Any]] = [blocks.section(title)]
    chunk: list[str] = []
    for text in texts:
        text = blocks.truncate(text, 2900)
        if chunk and sum(len(x) + 1 for x in chunk) + len(text) > 2900:
            body.append(blocks.section("\n".join(chunk)))
            chunk = []
        chunk.append(text)
    if chunk:
        body.append(blocks.section("\n".join(chunk)))
    if footer:
        body.append(blocks.context(footer))
    return blocks.limit_blocks(body)
