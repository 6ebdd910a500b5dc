"""What callback results look like in Slack: pure functions from outcomes to text and blocks.

* one device: a reply in the request's thread per outcome ("suspended until Sun 15 Mar 2026");
* many devices: the request's root message, rebuilt with a progress block
  (``▓▓▓▓▓▓░░░░ 62% · 2,480 of 4,000 · 12 failed``) and, once every device has answered, a
  summary of failures by reason and a "Retry failed" button (``ts:retry``, value: request id);
* notices for the ops channel: a line changed outside the bot, a line auto-resuming in 7 days.

Blocks added here carry ``block_id`` values starting with ``ts-result``, so a re-render drops
the previous progress and keeps the root's own blocks.

Labels (custom fields anyone can edit in ThingSpace) and text from ThingSpace (failure messages,
comments, who changed a line) are passed in as they are and escaped here with
:func:`bot.render.blocks.escape`, so none of it can mention a channel or hide a link.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import outcome_status as outcomes
from bot.core.redact import mask_id
from bot.render import blocks, messaging, times
from storage.directory import DirectoryDevice

__all__ = [
    "RETRY_ACTION",
    "Tally",
    "device_label",
    "external_change_notice",
    "headline",
    "parse_when",
    "past_tense",
    "progress_message",
    "resume_warning_notice",
    "settle_message",
    "single_reply",
    "single_root",
    "zone",
]

RETRY_ACTION = "ts:retry"
_TAG = "ts-result"

Block = dict[str, Any]

_DONE_WORD = {
    "suspend": "suspended",
    "resume": "resumed",
    "sms": "delivered",
    "nidd": "delivered",
    "cancel-location": "detached",
    "reach": "answered",
}
_NOUN = {
    "suspend": "Suspend",
    "resume": "Resume",
    "sms": "SMS",
    "nidd": "NIDD delivery",
    "sms-history": "SMS event history",
    "cancel-location": "Cancel location",
    "reach": "Reachability query",
}


def zone(name: str) -> tzinfo:
    """The configured time zone; UTC when the name is unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def parse_when(value: object) -> datetime | None:
    """A stored ISO time (or epoch seconds) back to an aware datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def device_label(entry: DirectoryDevice | None, key: str) -> str:
    """``tracker-0042 (iccid …9708)`` from the directory, else the masked id."""
    if entry is not None:
        return entry.display
    kind, _, value = key.partition(":")
    return f"{kind}:{mask_id(value)}" if value else mask_id(key)


def single_reply(
    verb: str,
    status: str,
    detail: Mapping[str, Any],
    label: str,
    *,
    tz: tzinfo,
    request_id: str,
    now: datetime,
    no_result_after: str = "30 min",
) -> tuple[str, list[Block]]:
    """The thread reply for one device's outcome (*label* as stored; escaped here)."""
    label = blocks.escape(label)
    at = parse_when(detail.get("at")) or now
    when = times.at(at, tz, now=now)
    source = {
        "request-status": " (from ThingSpace's request status; no callback arrived)",
        "provisioning-history": " (from the line's provisioning history; ThingSpace never confirmed the request)",
    }.get(str(detail.get("via") or ""), "")
    if status == outcomes.NO_RESULT:
        text = (
            f":grey_question: No result for {label} after {no_result_after}: ThingSpace sent no callback."
            f" Check with `/ts request {request_id}` or `/ts status`."
        )
    elif status == outcomes.FAILED:
        reason = outcomes.failure_reason(status, detail, no_result_after=no_result_after)
        text = f":x: {_NOUN.get(verb, verb)} of {label} failed: {blocks.escape(reason)}."
    elif status == outcomes.EXPIRED:
        text = f":hourglass: The SMS to {label} expired: the device did not receive it within 5 days."
    elif verb == "suspend":
        text = f":double_vertical_bar: {label} is suspended — ThingSpace confirmed at {when}{source}."
        resume = parse_when(detail.get("resume_date"))
        if resume is not None:
            days = max((resume - at).days, 0)
            text = (
                f":double_vertical_bar: {label} is suspended until {times.day(resume, tz)} — ThingSpace confirmed at "
                f"{when}{source}; it auto-resumes then ({days} days)."
            )
    elif verb == "resume":
        text = f":arrow_forward: {label} is resumed (active again) — ThingSpace confirmed at {when}{source}."
    elif verb == "cancel-location":
        text = (
            f":satellite_antenna: Cancel location done for {label} at {when}: the device was detached "
            "and re-attaches to pick up its network settings."
        )
    elif verb == "sms" and status == outcomes.SENT:
        text = f":outbox_tray: SMS to {label} sent: ThingSpace handed it to the network at {when}."
    elif verb == "sms":
        text = f":white_check_mark: SMS delivered to {label} at {when}."
    elif verb == "nidd" and status in (outcomes.QUEUED, outcomes.DELIVERED):
        text = messaging.nidd_reply(status, detail, label, at_text=when) or text_default(verb, label, when)
    elif verb == "sms-history":
        events = [e for e in detail.get("sms_events") or [] if isinstance(e, Mapping)]
        lines = messaging.sms_event_lines(events)
        text = f":scroll: ThingSpace's SMS event history for {label}: {len(events):,} event(s)" + (
            ":\n" + "\n".join(lines) if lines else " in the window."
        )
    elif status == outcomes.REACHABLE:
        until = parse_when(detail.get("reachable_until"))
        tail = f" until about {times.at(until, tz, now=now)}" if until else ""
        text = f":large_green_circle: {label} is reachable for data{tail} (ThingSpace, {when})."
    elif status == outcomes.UNREACHABLE:
        text = f":red_circle: {label} is not reachable right now (ThingSpace, {when})."
    elif status == outcomes.REGISTERED:
        text = (
            f":hourglass_flowing_sand: ThingSpace registered the query; {label} is not reachable at the moment. "
            "The answer follows when it wakes."
        )
    else:
        text = text_default(verb, label, when, source)
    body: list[Block] = [blocks.section(blocks.truncate(text, 3000))]
    if status in outcomes.RETRYABLE and verb in _DONE_WORD and verb != "reach":
        body.append(
            blocks.actions(
                blocks.button("Retry failed", RETRY_ACTION, request_id),
                block_id=f"{_TAG}-retry",
            )
        )
    return text, body


def text_default(verb: str, label: str, when: str, source: str = "") -> str:
    return f":white_check_mark: {_NOUN.get(verb, verb)} of {label}: done at {when}{source}."


@dataclass
class Tally:
    """How the devices of one request stand."""

    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(
        cls,
        groups: Sequence[tuple[str, str, str, int]],
        *,
        total: int | None = None,
        no_result_after: str = "30 min",
    ) -> Tally:
        """From ``(status, reason, code, count)`` groups (``storage.request_devices.status_groups``)."""
        tally = cls(total=sum(g[3] for g in groups) if total is None else total)
        for status, reason, code, n in groups:
            tally.counts[status] += n
            if status in outcomes.FAILURES:
                detail = {"reason": reason, "code": code}
                tally.reasons[outcomes.failure_reason(status, detail, no_result_after=no_result_after)] += n
        return tally

    @property
    def done(self) -> int:
        return sum(n for status, n in self.counts.items() if status in outcomes.FINAL)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.counts.items() if status in outcomes.FAILURES)

    @property
    def waiting_intermediate(self) -> int:
        return sum(n for status, n in self.counts.items() if status in outcomes.INTERMEDIATE)

    @property
    def complete(self) -> bool:
        return self.done >= self.total


def _own(block: Mapping[str, Any]) -> bool:
    return str(block.get("block_id", "")).startswith(_TAG)


def headline(root_text: str, root_blocks: Sequence[Mapping[str, Any]] | None) -> str:
    """The root message's own headline: its first section that this module did not add (the
    text of a root already rewritten with progress carries that progress)."""
    for block in root_blocks or []:
        if block.get("type") == "section" and not _own(block):
            text = block.get("text")
            if isinstance(text, Mapping) and text.get("text"):
                return str(text["text"])
    return root_text.split("\n", 1)[0]


#: the in-channel headline of a request, while it runs -> once it settled
_PAST = (
    ("is suspending", "suspended"),
    ("is resuming", "resumed"),
    ("asked ThingSpace to cancel the location of", "cancelled the location of"),
)
#: outstanding devices named on the progress line and in the settle message up to this many
NAME_UP_TO = 5


def past_tense(text: str) -> str:
    """A request's headline once it has settled: ``@ana is suspending 30 devices`` -> ``@ana
    suspended 30 devices``."""
    for present, past in _PAST:
        if present in text:
            return text.replace(present, past, 1)
    return text


def _names(labels: Sequence[str]) -> str:
    return ", ".join(blocks.escape(x) for x in labels[:NAME_UP_TO])


def progress_message(
    verb: str,
    request_id: str,
    root_text: str,
    root_blocks: Sequence[Mapping[str, Any]] | None,
    tally: Tally,
    *,
    no_result_after: str = "30 min",
    waiting: Sequence[str] = (),
) -> tuple[str, list[Block]]:
    """The root message of a multi-device request with its progress, or its final summary.

    *waiting*: labels (as stored; escaped here) of the devices still outstanding, given when there
    are few (:data:`NAME_UP_TO` or fewer), so a bar stuck at ``29 of 30`` says which line it waits for.
    Once every device has answered, the headline is in the past tense.
    """
    kept = [dict(b) for b in (root_blocks or []) if not _own(b)]
    if not kept:
        kept = [blocks.section(root_text)]
    bar = blocks.progress_bar(tally.done, tally.total, failed=tally.failed)
    if tally.waiting_intermediate:
        bar += f" · {tally.waiting_intermediate:,} sent, awaiting delivery"
    title = root_text.split("\n", 1)[0]
    if not tally.complete:
        if waiting and tally.total - tally.done <= NAME_UP_TO:
            bar += f" · waiting for {_names(waiting)}"
        body = [*kept, {**blocks.context(bar), "block_id": f"{_TAG}-progress"}]
        return blocks.truncate(f"{title} — {bar}", 3000), blocks.limit_blocks(body)
    title = past_tense(title)
    for block in kept:
        text_obj = block.get("text")
        if block.get("type") == "section" and isinstance(text_obj, Mapping) and text_obj.get("text"):
            block["text"] = {**text_obj, "text": past_tense(str(text_obj["text"]))}
            break
    body = [*kept, {**blocks.context(bar), "block_id": f"{_TAG}-progress"}]
    succeeded = tally.done - tally.failed
    word = _DONE_WORD.get(verb, "done")
    icon = ":white_check_mark:" if tally.failed == 0 else ":warning:"
    lines = [f"{icon} *Done:* {succeeded:,} of {tally.total:,} {word} · {tally.failed:,} failed"]
    if tally.reasons:
        lines.append("*Failures by reason:*")
        shown = tally.reasons.most_common(10)
        lines.extend(f"• {blocks.escape(reason)} — {n:,}" for reason, n in shown)
        rest = sum(tally.reasons.values()) - sum(n for _, n in shown)
        if rest:
            lines.append(f"• other reasons — {rest:,}")
    body.append({**blocks.section("\n".join(lines)), "block_id": f"{_TAG}-summary"})
    if tally.failed and verb != "reach":
        body.append(
            blocks.actions(
                blocks.button("Retry failed", RETRY_ACTION, request_id),
                block_id=f"{_TAG}-retry",
            )
        )
    text = f"{title} — done: {succeeded:,} of {tally.total:,} {word}, {tally.failed:,} failed"
    return blocks.truncate(text, 3000), blocks.limit_blocks(body)


def settle_message(
    verb: str,
    request_id: str,
    tally: Tally,
    *,
    actor: str,
    approver: str = "",
    unfinished: Sequence[tuple[str, str]] = (),
) -> tuple[str, list[Block]]:
    """The NEW message posted in a multi-device request's thread when it settles (an edit notifies
    nobody): the requester (and approver) named, the count, and — when there are few — which lines
    did not make it. *unfinished*: ``(label, status)`` of failed devices (labels escaped here)."""
    word = _DONE_WORD.get(verb, "done")
    succeeded = tally.done - tally.failed
    icon = ":white_check_mark:" if tally.failed == 0 else ":warning:"
    who = f"<@{actor}>" + (f", approved by <@{approver}>" if approver else "")
    line = f"{icon} {succeeded:,} of {tally.total:,} {word} ({_NOUN.get(verb, verb).lower()} asked by {who})"
    if tally.failed and unfinished and tally.failed <= NAME_UP_TO:
        parts: dict[str, list[str]] = {}
        for label, status in unfinished[:NAME_UP_TO]:
            parts.setdefault(_UNFINISHED_WORD.get(status, "failed"), []).append(label)
        line += "".join(f" · {kind}: {_names(labels)}" for kind, labels in parts.items())
    elif tally.failed:
        line += f" · {tally.failed:,} failed (see the summary above)"
    buttons = []
    if tally.failed and verb != "reach":
        buttons.append(blocks.button("Retry failed", RETRY_ACTION, request_id))
    buttons.append(blocks.button("Details", "ts:run", f"request {request_id}"))
    body = [blocks.section(line), blocks.actions(*buttons, block_id=f"{_TAG}-settled")]
    return blocks.truncate(line, 3000), body


#: how a failed device is named in the settle message
_UNFINISHED_WORD = {outcomes.NO_RESULT: "no result", outcomes.EXPIRED: "expired", outcomes.FAILED: "failed"}

#: the verbs whose one-device channel message is rewritten to its outcome
REWRITTEN = frozenset({"suspend", "resume", "cancel-location", "sms"})

_ROOT_ICON = {
    "suspend": ":double_vertical_bar:",
    "resume": ":arrow_forward:",
    "cancel-location": ":satellite_antenna:",
    "sms": ":speech_balloon:",
    "reach": ":satellite_antenna:",
}


def single_root(
    verb: str,
    status: str,
    detail: Mapping[str, Any],
    label: str,
    *,
    actor: str,
    reason: str,
    tz: tzinfo,
    now: datetime,
    no_result_after: str = "30 min",
    headline: str = "",
) -> str:
    """The in-channel message of a one-device request, rewritten to its outcome (label and reason
    as stored; escaped here): ``⏸ Suspended demo-usage-spike … · auto-resumes Sun 7 Mar 2027``.
    An SMS keeps its *headline* (it carries the text sent) with the outcome added."""
    if verb not in REWRITTEN:
        return ""  # only the actions' own messages are rewritten (reach, sms-history, nidd… keep theirs)
    label = blocks.escape(label)
    tail = f" — by <@{actor}>" + (f", reason: _{blocks.escape(reason)}_" if reason else "")
    at = parse_when(detail.get("at")) or now
    when = times.at(at, tz, now=now)
    if status in outcomes.FAILURES:
        why = blocks.escape(outcomes.failure_reason(status, detail, no_result_after=no_result_after))
        if verb == "sms" and headline:
            return f"{headline} · :x: not delivered: {why}"
        return f":x: {_NOUN.get(verb, verb)} of {label} did not complete: {why}{tail}"
    if status not in outcomes.FINAL:
        return ""
    if verb == "suspend":
        resume = parse_when(detail.get("resume_date"))
        auto = f" · auto-resumes {times.day(resume, tz)}" if resume else ""
        return f":double_vertical_bar: Suspended {label} at {when}{auto}{tail}"
    if verb == "resume":
        return f":arrow_forward: Resumed {label} (active again) at {when}{tail}"
    if verb == "cancel-location":
        return f":satellite_antenna: Cancelled the location of {label} at {when}: it re-attaches{tail}"
    if verb == "sms" and headline:
        return f"{headline} · :white_check_mark: delivered at {when}"
    if verb == "sms":
        return f":speech_balloon: SMS delivered to {label} at {when}{tail}"
    return f"{_ROOT_ICON.get(verb, ':white_check_mark:')} {_NOUN.get(verb, verb)} of {label}: done at {when}{tail}"


def external_change_notice(
    label: str,
    *,
    change_type: str,
    state: str,
    changed_by: str,
    at: datetime | None,
    tz: tzinfo,
    request_id: str,
) -> tuple[str, list[Block]]:
    """Someone changed a line outside the bot (ThingSpace ExternalProvisioningChanges)."""
    what = blocks.escape(change_type or "a change")
    parts = [f":warning: Someone changed a line outside the bot: {blocks.escape(label)} — {what}"]
    if state:
        parts.append(f" (now {blocks.escape(state)})")
    if changed_by:
        parts.append(f" by {blocks.escape(changed_by)}")
    if at is not None:
        parts.append(f" at {times.at(at, tz)}")
    text = "".join(parts) + "."
    body = [
        blocks.section(text),
        blocks.context(f"ThingSpace ExternalProvisioningChanges · request `{request_id}`"),
    ]
    return text, body


def resume_warning_notice(
    label: str, *, resume_date: datetime | None, comment: str, tz: tzinfo, request_id: str
) -> tuple[str, list[Block]]:
    """A suspended line resumes in 7 days (ThingSpace ResumeTrackingNotification)."""
    when = f" on {times.day(resume_date, tz)}" if resume_date else ""
    text = (
        f":alarm_clock: {blocks.escape(label)} resumes in 7 days: ThingSpace will auto-resume the suspended "
        f"line{when}."
    )
    body = [blocks.section(text)]
    notes = [f"ThingSpace ResumeTrackingNotification · request `{request_id}`"]
    if comment:
        notes.insert(0, blocks.truncate(blocks.escape(comment), 300))
    body.append(blocks.context(*notes))
    return text, body
