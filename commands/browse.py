"""Local reads answered straight in the ack: ``find`` (the directory) and ``history`` (the audit log)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.core.durations import parse_duration
from bot.core.redact import mask_id
from bot.render import blocks, timeline
from bot.render.results import zone
from bot.render.wording import line_state
from bot.thingspace.ids import DeviceId, InvalidDeviceId, parse_device_id
from commands import audit, provisioning
from commands.context import ActionRequest, CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError, user_ref
from commands.policy import may_run, user_role
from commands.provisioning import OutsideRow
from storage import directory, jobs, outbox
from storage.audit.log import AuditLog
from storage.jobs import Job

__all__ = ["find", "find_more", "find_query", "history", "history_more", "run_history"]

FIND_LIMIT = 15
HISTORY_LIMIT = 15

#: What people write between the digits of a number: spaces, ``-``, ``.``, ``(`` and ``)``.
_SEPARATORS = re.compile(r"[\s\-.()]")


def find_query(text: str) -> str:
    """What ``find`` searches for. A digit-like query loses its separators and a leading ``+``
    (``555-123`` -> ``555123``, ``(555) 123`` -> ``555123``), since ids are stored as bare
    digits; anything else (a label, ``plant-7``) is searched as typed."""
    digits = _SEPARATORS.sub("", text).removeprefix("+")
    return digits if digits.isascii() and digits.isdigit() else text


#: Slack refuses a button value longer than this
_BUTTON_VALUE_MAX = 2000


def _find_page(
    deps: Deps, text: str, searched: str | None, after: tuple[int, int] | None, shown: int
) -> Reply:
    """One page of ``find`` for *text* (as typed; *searched*: what a previous page searched for):
    ranked matches, how many in all, a More button."""
    db = deps.db()
    query = find_query(text) if searched is None else searched
    page = directory.search(db, query, limit=FIND_LIMIT, after=after)
    if not page.devices and query != text and after is None:
        # a label or custom field may be written with the separators
        page = directory.search(db, text, limit=FIND_LIMIT)
        searched = text
    typed = blocks.escape(text)
    if not page.devices:
        if after is not None:
            return Reply(f"No more devices match `{typed}`.", replace_original=False)
        synced = directory.size(db)
        searched = f" (searched as `{blocks.escape(query)}`)" if query != text else ""
        return Reply(
            f"No device matches `{typed}`{searched} among {synced:,} in the directory. "
            "Try fewer digits, a label, or a group name."
        )
    total = page.total
    counted = (
        f"More than {total:,} devices match"
        if page.capped
        else f"{total:,} device{'s' if total != 1 else ''} match"
    )
    body: list[dict[str, Any]] = [blocks.section(f"*{counted} `{typed}`*")]
    for device in page.devices:
        icon, word = line_state(device.state)
        ids = " · ".join(
            f"{k}:`{blocks.escape(v)}`" for k, v in device.ids.items() if k in ("iccid", "mdn", "imei")
        )
        line = f"{icon} *{blocks.escape(device.label or device.key)}* — {blocks.escape(word)}\n{ids}"
        if device.groups:
            line += f"\ngroups: {blocks.escape(', '.join(device.groups))}"
        body.append(blocks.section(line, accessory=blocks.button("Status", "ts:run", f"status {device.key}")))
    end = shown + len(page.devices)
    if shown or page.after is not None:
        of = f"more than {total:,}" if page.capped else f"{total:,}"
        body.append(
            blocks.context(
                f"Showing {shown + 1:,}–{end:,} of {of}: exact id or label first, then what starts with "
                "it, then what contains it."
            )
        )
    if page.after is not None:
        value = json.dumps({"t": text, "q": searched or query, "after": list(page.after), "shown": end})
        if len(value) <= _BUTTON_VALUE_MAX:
            body.append(blocks.actions(blocks.button("More", "ts:find-more", value)))
    # a More click answers with a new message, keeping the page it was clicked on
    return Reply(f"{counted} {typed}", blocks.limit_blocks(body), replace_original=False if after else None)


def find(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    text = inv.text.strip()
    if len(find_query(text)) < 3:
        raise UsageError(
            "`find` needs at least 3 characters: part of an id, a label, a custom field or a group.",
            verb="find",
        )
    return _find_page(deps, text, None, None, 0)


def find_more(deps: Deps, req: ActionRequest) -> Reply:
    """The **More** button under a page of ``find`` (``ts:find-more``): the next page, as a new
    message; the clicker's role is checked again."""
    role = user_role(deps, req.user, req.channel)
    if not may_run(role, deps.role_needed("find")):
        return Reply("You can't search the device directory here.", replace_original=False)
    try:
        spec = json.loads(req.value)
        text, searched = str(spec["t"]), str(spec["q"])
        tier, rowid = (int(x) for x in spec["after"])
        shown = int(spec["shown"])
    except (ValueError, KeyError, TypeError):
        return Reply("That button is from an older message; run `/ts find` again.", replace_original=False)
    return _find_page(deps, text, searched, (tier, rowid), shown)


def _since(value: str) -> datetime:
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError as exc:
        if value.strip()[-1:].lower() in "smhdw" and value.strip()[:1].isdigit():  # a duration, wrong
            raise UsageError(f"--since: {blocks.escape(str(exc))}", verb="history") from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--since takes a duration like 24h or 7d, or a date like 2026-11-20; not {blocks.escape(repr(value))}.",
            verb="history",
        ) from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise UsageError(f"--since {blocks.escape(value)} is out of range.", verb="history") from None


def _filters(inv: Invocation, db: Any = None) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if inv.targets:
        if len(inv.targets) > 1:
            raise UsageError("`history` takes at most one device.", verb="history")
        try:
            filters["target"] = str(parse_device_id(inv.targets[0].text))
        except InvalidDeviceId as exc:
            labelled = directory.by_label(db, inv.targets[0].text) if db is not None else []
            if len(labelled) != 1:
                raise UsageError(blocks.escape(str(exc)), verb="history") from None
            filters["target"] = labelled[0].key  # a label (``demo-healthy``)
    if isinstance(inv.options.get("user"), str):
        filters["actor"] = user_ref(str(inv.options["user"]))
    if isinstance(inv.options.get("since"), str):
        filters["since"] = _since(str(inv.options["since"])).isoformat()
    limit = inv.options.get("limit")
    if isinstance(limit, str):
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise UsageError("--limit takes a number from 1 to 100.", verb="history")
        filters["limit"] = int(limit)
    return filters


#: audit rows read per timeline entry shown (a diag folds six calls under one entry)
ROWS_PER_ENTRY = 8


def _outside_entry(row: OutsideRow) -> timeline.TimelineEntry:
    """A provisioning event from ThingSpace (made outside the bot) as a timeline entry."""
    title = row.line.split("` ", 1)[1] if row.line.startswith("`") and "` " in row.line else row.line
    return timeline.TimelineEntry(at=row.at, actor="thingspace", title=title, source="thingspace")


def _render(
    deps: Deps,
    filters: dict[str, Any],
    before_id: int | None,
    outside: Sequence[OutsideRow] = (),
    note: str = "",
) -> Reply:
    """A page of the timeline; *outside* adds ThingSpace's provisioning events (changes made
    outside the bot) in time order (:func:`bot.render.timeline.interleave`), *note* a context line."""
    db = deps.db()
    limit = int(filters.get("limit", HISTORY_LIMIT))
    target = filters.get("target")
    title = "*History*"
    if target:
        kind, _, value = target.partition(":")
        entry = directory.lookup(db, kind, value)
        if entry:
            target = entry.key
            title = f"*History of {blocks.escape(entry.display)}*"
        else:
            title = f"*History of {blocks.escape(kind)}:{mask_id(value)}*"
    if filters.get("actor"):
        title += f" by {timeline.who(str(filters['actor']))}"
    since = datetime.fromisoformat(filters["since"]) if filters.get("since") else None
    budget = limit * ROWS_PER_ENTRY
    rows = AuditLog(db).query(
        target=target, actor=filters.get("actor"), since=since, limit=budget + 1, before_id=before_id
    )
    exhausted = len(rows) <= budget
    rows = rows[:budget]
    entries = timeline.fold(rows)
    if not exhausted and entries:
        # the oldest entry may miss rows beyond this page: leave it to the next one
        entries = entries[:-1] if len(entries) > 1 else entries
    more = len(entries) > limit or not exhausted
    entries = entries[:limit]
    oldest_at = entries[-1].at if entries and more else None
    extra = [_outside_entry(r) for r in outside if oldest_at is None or r.at >= oldest_at]
    if not entries and not extra:
        empty = "No audit entries match." if before_id is None else "No older entries."
        return Reply(empty, [blocks.section(empty), blocks.context(note)] if note else None)
    merged = timeline.interleave(entries, extra)
    now = datetime.fromtimestamp(deps.clock(), UTC)
    tz = zone(deps.settings.timezone)
    footer = f"Newest first · {len(merged)} entries · `tsbot audit export` has every row"
    if note:
        footer = f"{note} · {footer}"
    body = timeline.render(merged, title=title, tz=tz, now=now, footer=footer)
    if more and entries:
        oldest = min(e.first_row for e in entries if e.first_row is not None)
        value = json.dumps({**filters, "before": oldest})
        body.append(blocks.actions(blocks.button("More", "ts:history-more", value)))
    return Reply(f"History: {len(merged)} entries", body)


def history(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    filters = _filters(inv, deps.db())
    if not filters.get("target") or not req.response_url:
        return _render(deps, filters, None)
    # a line's history: the audit rows now, ThingSpace's provisioning history folded in after
    db = deps.db()
    payload = {
        "verb": "history",
        "filters": filters,
        "user": req.user,
        "channel": req.channel,
        "response_url": req.response_url,
        "key": filters["target"],
    }
    with audit.transaction(db):
        jobs.enqueue(db, key=f"lookup:history:{req.user}:{time.time_ns()}", kind="lookup", payload=payload)
    deps.wake()
    return _render(
        deps, filters, None, note=":hourglass_flowing_sand: Reading ThingSpace's provisioning history…"
    )


def run_history(deps: Deps, job: Job) -> None:
    """The worker's half of ``history TARGET``: the page again, with ThingSpace's provisioning
    events made outside the bot (:mod:`commands.provisioning`)."""
    filters = dict(job.payload["filters"])
    kind, _, value = str(filters["target"]).partition(":")
    since = datetime.fromisoformat(filters["since"]) if filters.get("since") else None
    rows, why = provisioning.outside_rows(
        deps, DeviceId.from_wire({"kind": kind, "id": value}), since=since, until=datetime.now(UTC)
    )
    note = why or (
        f":globe_with_meridians: {len(rows)} change(s) from ThingSpace's provisioning history, made outside the bot."
        if rows
        else "ThingSpace's provisioning history shows no change made outside the bot."
    )
    reply = _render(deps, filters, None, rows, note)
    db = deps.db()
    with audit.transaction(db):
        outbox.enqueue_respond(
            db,
            key=f"job:{job.id}:reply",
            response_url=str(job.payload["response_url"]),
            text=reply.text,
            blocks=reply.blocks,
            replace_original=True,
        )
    deps.wake()


def history_more(deps: Deps, req: ActionRequest) -> Reply:
    """The **More** button under a page of history (``ts:history-more``)."""
    role = user_role(deps, req.user, req.channel)
    if not may_run(role, deps.role_needed("history")):
        return Reply("You can't read the audit log here.", replace_original=False)
    try:
        filters = json.loads(req.value)
        before = int(filters.pop("before"))
    except (ValueError, KeyError, TypeError):
        return Reply("That button is from an older message; run `/ts history` again.", replace_original=False)
    reply = _render(deps, filters, before)
    return Reply(reply.text, reply.blocks, replace_original=False)
