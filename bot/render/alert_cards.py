"""Block Kit for watch alerts: the card of one device, the grouped card, thread replies, the digest.

Pure functions from stored rows to ``(text, blocks)``; the caller queues them in the outbox. A
card is rendered again whenever its alert changes (acknowledged, snoozed, snooze ended, down again,
recovered) and replaces the previous version in place. Times are shown in the configured time
zone; durations as ``3 h 12 min``. Labels come in as stored (custom fields anyone can edit in
ThingSpace) and are escaped here with :func:`bot.render.blocks.escape`.

Buttons (action ids under ``ts:``; values are alert or group ids):

``alert-ack``                 Acknowledge — records who
``alert-snooze-1h|4h|24h``    Snooze for that long (audited; the alert fires again when it ends)
``alert-diag``                Diagnose — diagnostics posted in the card's thread
``group-ack``, ``group-snooze-1h|4h|24h``  the same for every device of a grouped card
``alert-diag`` (a menu on the grouped card)  Diagnose the chosen device (value: its alert id)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo
from typing import Any

from bot.core.durations import format_duration
from bot.render import blocks, times
from storage import outbox
from storage.alerts import Alert, AlertGroup, Outage
from storage.watches import ChannelCounts, ReachState, Watch

__all__ = [
    "SNOOZE_CHOICES",
    "DigestFigures",
    "alert_card",
    "digest_message",
    "down_again_reply",
    "event_line",
    "group_card",
    "group_listing",
    "moved_to_group_card",
    "recovered_reply",
    "snooze_ended_reply",
    "state_line",
    "without_link",
]

Block = dict[str, Any]

#: Snooze buttons: label suffix -> hours.
SNOOZE_CHOICES: dict[str, int] = {"1h": 1, "4h": 4, "24h": 24}
#: Members listed on a grouped card before "…and N more".
GROUP_LIST = 15
#: Devices in a grouped card's "Diagnose one device" menu (Slack's static_select takes 100).
DIAGNOSE_MENU = 100


def _clock(at: float, tz: tzinfo, now: float | None = None) -> str:
    """A ``<!date^…>`` token: each reader's own zone in Slack, ``08:35 UTC`` (with the date when it
    is not today) in the configured zone as the fallback."""
    return times.at(at, tz, now=now)


def _span(seconds: float) -> str:
    return format_duration(timedelta(seconds=max(seconds, 0)))


def _rule(watch: Watch | None) -> str:
    if watch is None:
        return "no longer watched"
    if watch.wake_every is not None:
        return f"wakes every {_span(watch.wake_every)}; alert after {watch.missed_wakes + 1} missed wakes"
    return f"alert after {_span(watch.alert_after or 0)} unreachable"


def _problem(alert: Alert, watch: Watch | None, now: float, tz: tzinfo) -> str:
    """The one line that says what is wrong, as of *now*."""
    if alert.condition == "missed-wakes" and watch is not None and watch.wake_every:
        missed = int((now - alert.down_since) // watch.wake_every)
        return (
            f"missed {max(missed, watch.missed_wakes + 1)} expected wakes — last seen "
            f"{_clock(alert.down_since, tz, now)} ({_span(now - alert.down_since)} ago)"
        )
    return f"not reachable since {_clock(alert.down_since, tz, now)} ({_span(now - alert.down_since)})"


def _status_line(alert: Alert, tz: tzinfo, now: float | None = None) -> str:
    if alert.state == "acknowledged":
        return f":eyes: Acknowledged by <@{alert.acked_by}> at {_clock(alert.acked_at or 0, tz, now)}"
    if alert.state == "snoozed":
        return f":zzz: Snoozed by <@{alert.snoozed_by}> until {_clock(alert.snoozed_until or 0, tz, now)}"
    if alert.state == "resolved":
        if alert.resolved_how == "recovered":
            return f":white_check_mark: Recovered at {_clock(alert.resolved_at or 0, tz, now)}"
        if alert.resolved_how == "suspended":
            by = next((e.get("by") for e in reversed(alert.events) if e.get("kind") == "suspended"), None)
            who = f" by <@{by}>" if by else ""
            return f":double_vertical_bar: Closed: the line was suspended{who} at {_clock(alert.resolved_at or 0, tz, now)}"
        if alert.resolved_how == "rule-changed":
            return ":heavy_minus_sign: Closed: the watch's rule was changed"
        return ":heavy_minus_sign: Closed: the device is no longer watched"
    return ":rotating_light: Firing"


#: events shown on a card's event line (the newest; older ones are in the thread)
EVENTS_SHOWN = 8


def _event_text(event: Mapping[str, Any], tz: tzinfo, now: float) -> str:
    at = float(event.get("at") or 0)
    when = times.at(at, tz, now=now) if at else ""
    by = f" <@{event['by']}>" if event.get("by") else ""
    kind = event.get("kind")
    if kind == "ack":
        return f":eyes: ack{by} {when}"
    if kind == "snooze":
        hours = max(round((float(event.get("until") or at) - at) / 3600), 1)
        return f":zzz: {hours} h{by} {when}"
    if kind == "snooze-end":
        return f":alarm_clock: snooze over {when}"
    if kind == "recovered":
        return f":large_green_circle: recovered {when}"
    if kind == "down-again":
        return f":red_circle: down again {when}"
    if kind == "suspended":
        return f":double_vertical_bar: suspended{by} {when}"
    return f":heavy_minus_sign: closed {when}"


def event_line(alert: Alert, tz: tzinfo, now: float) -> str:
    """``👀 ack @U0OPS1 08:39 · 💤 1 h @U0OPS1 08:40 · 🟢 recovered 08:41``: every step so far."""
    events = alert.events
    shown = [_event_text(e, tz, now) for e in events[-EVENTS_SHOWN:]]
    if len(events) > EVENTS_SHOWN:
        shown.insert(0, f"{len(events) - EVENTS_SHOWN} earlier")
    return " · ".join(shown)


def _acknowledged(alert: Alert) -> bool:
    """Someone owns this outage: acknowledged now, or acknowledged since it last went down."""
    if alert.state == "acknowledged":
        return True
    for event in reversed(alert.events):
        if event.get("kind") == "down-again":
            return False
        if event.get("kind") == "ack":
            return True
    return False


def _buttons(prefix: str, value: str, *, diagnose: bool, acknowledge: bool = True) -> Block:
    """Acknowledge and Snooze change the alert, so each asks first (Slack's confirm dialog)."""
    what = "every device on this card" if prefix == "group" else "this alert"
    elements = (
        [
            blocks.button(
                "Acknowledge",
                f"ts:{prefix}-ack",
                value,
                style="primary",
                confirm=(
                    "Acknowledge?",
                    f"You take {what}: the card and its thread name you as the owner.",
                    "Acknowledge",
                ),
            )
        ]
        if acknowledge
        else []
    )
    elements += [
        blocks.button(
            f"Snooze {hours} h",
            f"ts:{prefix}-snooze-{key}",
            value,
            confirm=(
                f"Snooze for {hours} h?",
                f"No page for {what} for {hours} h; it fires again then if the device is still down.",
                "Snooze",
            ),
        )
        for key, hours in SNOOZE_CHOICES.items()
    ]
    if diagnose:
        elements.append(blocks.button("Diagnose", "ts:alert-diag", value))
    return blocks.actions(*elements, block_id=f"{prefix}:{value}")


def alert_card(
    alert: Alert, *, label: str, watch: Watch | None, now: float, tz: tzinfo
) -> tuple[str, list[Block]]:
    """The card of one device's alert, in its current state (*label* as stored; escaped here)."""
    label = blocks.escape(label)
    title = "Missed wakes" if alert.condition == "missed-wakes" else "Unreachable"
    if alert.state == "resolved":
        if alert.resolved_how == "recovered":
            took = _span(alert.recovered_after or 0)
            text = f":large_green_circle: {label} recovered after {took}"
            body = [
                blocks.section(
                    f":large_green_circle: *Recovered* · *{label}*\n"
                    f"Recovered after *{took}* (down {_clock(alert.down_since, tz, now)} → "
                    f"{_clock(alert.resolved_at or now, tz, now)})."
                ),
                blocks.context(f"{title} · {_rule(watch)} · alert #{alert.id}"),
            ]
            if alert.events:
                body.append(blocks.context(event_line(alert, tz, now)))
            return text, body
        text = f"{label}: alert closed"
        closed = [
            blocks.section(f":white_circle: *{title}* · *{label}*\n{_status_line(alert, tz, now)}."),
            blocks.context(f"Raised {_clock(alert.raised_at, tz, now)} · alert #{alert.id}"),
        ]
        if alert.events:
            closed.append(blocks.context(event_line(alert, tz, now)))
        return text, closed
    icon = ":crescent_moon:" if alert.condition == "missed-wakes" else ":red_circle:"
    problem = _problem(alert, watch, now, tz)
    text = f"{icon} {label}: {problem}"
    facts = [_status_line(alert, tz, now), _rule(watch), f"raised {_clock(alert.raised_at, tz, now)}"]
    if alert.reopened:
        facts.append(f"down again ×{alert.reopened}")
    facts.append(f"`{alert.device}` · alert #{alert.id}")
    body = [
        blocks.section(f"{icon} *{title}* · *{label}*\n{problem[0].upper()}{problem[1:]}."),
        blocks.context(" · ".join(facts)),
    ]
    if alert.events:
        body.append(blocks.context(event_line(alert, tz, now)))
    body.append(_buttons("alert", str(alert.id), diagnose=True, acknowledge=not _acknowledged(alert)))
    return text, body


def moved_to_group_card(
    alert: Alert, *, label: str, tz: tzinfo, now: float | None = None
) -> tuple[str, list[Block]]:
    """What an individual card shrinks to when its alert joins a grouped card: it links to the
    grouped card (:data:`storage.outbox.LINK_SLOT`, filled with its permalink when it is sent)."""
    label = blocks.escape(label)
    text = f"{label}: now part of a grouped alert"
    return text, [
        blocks.context(
            f":red_circle: *{label}* not reachable since {_clock(alert.down_since, tz, now)} — "
            f"more devices in this channel went down together; see {outbox.LINK_SLOT}."
        )
    ]


def without_link(text: str, body: list[Block]) -> tuple[str, list[Block]]:
    """A pointer card whose grouped card cannot be linked: plain words where the link would be."""

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return node.replace(outbox.LINK_SLOT, "the grouped alert")
        if isinstance(node, list):
            return [fill(x) for x in node]
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        return node

    return fill(text), fill(body)


def group_card(
    group: AlertGroup, members: Sequence[Alert], *, labels: Mapping[str, str], now: float, tz: tzinfo
) -> tuple[str, list[Block]]:
    """One card for many devices of a channel that went down within the grouping window."""
    total = len(members)
    open_members = [m for m in members if m.state != "resolved"]
    counts: dict[str, int] = {}
    for m in members:
        counts[m.state] = counts.get(m.state, 0) + 1
    summary = " · ".join(
        f"{counts[s]:,} {word}"
        for s, word in (
            ("firing", "firing"),
            ("acknowledged", "acknowledged"),
            ("snoozed", "snoozed"),
            ("resolved", "recovered or closed"),
        )
        if counts.get(s)
    )
    first = min((m.down_since for m in members), default=group.opened_at)
    if not open_members:
        recovered = [m.recovered_after for m in members if m.recovered_after is not None]
        longest = f" (longest outage {_span(max(recovered))})" if recovered else ""
        text = f":large_green_circle: All {total:,} devices of this grouped alert recovered{longest}"
        return text, [
            blocks.section(
                f":large_green_circle: *All {total:,} devices recovered*{longest}.\n"
                f"They went down from {_clock(first, tz, now)}."
            ),
            blocks.context(f"Grouped alert #{group.id} · {summary}"),
        ]
    text = f":red_circle: {len(open_members):,} of {total:,} devices down in this channel"
    lines: list[str] = []
    for m in open_members[:GROUP_LIST]:
        what = "missed wakes" if m.condition == "missed-wakes" else "unreachable"
        extra = ""
        if m.state == "acknowledged":
            extra = f" · ack <@{m.acked_by}>"
        elif m.state == "snoozed":
            extra = f" · snoozed until {_clock(m.snoozed_until or 0, tz, now)}"
        lines.append(
            f"• {blocks.escape(labels.get(m.device, m.device))} — {what} since {_clock(m.down_since, tz, now)}{extra}"
        )
    if len(open_members) > GROUP_LIST:
        lines.append(f"…and {len(open_members) - GROUP_LIST:,} more — every device is listed in the thread")
    body = [
        blocks.section(
            f":red_circle: *{total:,} devices went down together* in this channel "
            f"(first at {_clock(first, tz, now)}); {len(open_members):,} still down."
        ),
        blocks.section("\n".join(lines)),
        blocks.section(
            "Diagnose one device:",
            accessory=blocks.static_select(
                "Choose a device…",
                "ts:alert-diag",
                [(labels.get(m.device, m.device), str(m.id)) for m in open_members[:DIAGNOSE_MENU]],
            ),
        ),
        blocks.context(f"Grouped alert #{group.id} · {summary}"),
        _buttons(
            "group",
            str(group.id),
            diagnose=False,
            acknowledge=any(m.state in ("firing", "snoozed") for m in open_members),
        ),
    ]
    return text, body


def group_listing(
    members: Sequence[Alert], *, labels: Mapping[str, str], tz: tzinfo, now: float
) -> list[str]:
    """ "Show all": every device of a grouped card still down, for its thread, in messages of at
    most 2,900 characters (labels escaped here)."""
    lines = []
    for m in members:
        if m.state == "resolved":
            continue
        what = "missed wakes" if m.condition == "missed-wakes" else "unreachable"
        lines.append(
            f"• {blocks.escape(labels.get(m.device, m.device))} — {what} since {times.at(m.down_since, tz, now=now)}"
        )
    chunks: list[str] = []
    current = f"*All {len(lines):,} devices still down:*"
    for line in lines:
        if len(current) + len(line) + 1 > 2900:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if lines:
        chunks.append(current)
    return chunks


def recovered_reply(alert: Alert, *, label: str) -> str:
    return f":large_green_circle: {blocks.escape(label)} recovered after {_span(alert.recovered_after or 0)}."


def down_again_reply(alert: Alert, *, label: str, tz: tzinfo, now: float | None = None) -> str:
    return (
        f":red_circle: {blocks.escape(label)} is down again since {_clock(alert.down_since, tz, now)} "
        f"(×{alert.reopened}); the alert is firing again on this card."
    )


def snooze_ended_reply(
    labels: Sequence[str],
    *,
    back: Sequence[tuple[str, float]] = (),
    recover_after: float = 0.0,
    tz: tzinfo = UTC,
    now: float | None = None,
) -> str:
    """The thread reply when a snooze ends. *labels*: devices still down (their alert fires again);
    *back*: ``(label, reachable since)`` of devices up again but not for ``recover_after`` yet (flap
    damping): their alert resolves if they stay up, so "still not reachable" would be wrong."""
    if not back:
        if len(labels) == 1:
            return (
                f":alarm_clock: Snooze ended: {blocks.escape(labels[0])} is still not reachable; "
                "the alert is firing again."
            )
        return f":alarm_clock: Snooze ended: {len(labels):,} devices are still not reachable; firing again."
    wait = _span(recover_after)
    if not labels and len(back) == 1:
        label, since = back[0]
        return (
            f":alarm_clock: Snooze ended: {blocks.escape(label)} is reachable again since "
            f"{_clock(since, tz, now)}; the alert resolves at {_clock(since + recover_after, tz, now)} if it stays "
            f"reachable ({wait} without a drop), and fires again if it drops."
        )
    if not labels:
        return (
            f":alarm_clock: Snooze ended: {len(back):,} devices are reachable again; "
            f"their alerts resolve once each has stayed up for {wait}."
        )
    down = f"{len(labels):,} {'device is' if len(labels) == 1 else 'devices are'} still not reachable"
    up = f"{len(back):,} {'is' if len(back) == 1 else 'are'} reachable again"
    return f":alarm_clock: Snooze ended: {down} (firing again); {up} (resolving once up for {wait})."


@dataclass(frozen=True)
class DigestFigures:
    channel: str
    day: str
    counts: ChannelCounts
    alerting: int
    raised: int
    resolved: int
    longest: Outage | None
    longest_label: str


def digest_message(figures: DigestFigures, *, tz_name: str) -> tuple[str, list[Block]]:
    """The daily digest of one channel."""
    c = figures.counts
    longest = "none"
    if figures.longest is not None:
        longest = f"{blocks.escape(figures.longest_label)}: {_span(figures.longest.seconds)}"
        if figures.longest.ongoing:
            longest += " (ongoing)"
    sleepy = f" ({c.sleepy:,} sleepy)" if c.sleepy else ""
    text = (
        f"Daily reachability digest {figures.day}: {c.watched:,} watched, {c.unreachable:,} unreachable now, "
        f"{figures.raised:,} alerts raised, {figures.resolved:,} resolved"
    )
    body = [
        blocks.section(f":bar_chart: *Daily reachability digest* · {figures.day} ({tz_name})"),
        blocks.fields(
            [
                ("Devices watched", f"{c.watched:,}{sleepy}"),
                ("Unreachable now", f"{c.unreachable:,}"),
                ("Alerts open now", f"{figures.alerting:,}"),
                ("Longest outage (24 h)", longest),
                ("Alerts raised (24 h)", f"{figures.raised:,}"),
                ("Alerts resolved (24 h)", f"{figures.resolved:,}"),
            ]
        ),
        blocks.context(
            "Sleepy devices are unreachable between wakes by design; they alert only on missed wakes."
        ),
    ]
    return text, body


def state_line(state: ReachState | None, tz: tzinfo, now: float) -> str:
    """``reachable since …`` / ``unreachable since …`` / ``not heard from yet``."""
    if state is None:
        return "not heard from yet"
    word = "reachable" if state.reachable else "unreachable"
    return f"{word} since {_clock(state.since, tz, now)} ({_span(now - state.since)})"
