"""``/ts usage TARGET|group:NAME [--days 30]``: per-day data and SMS, against the plan, with a chart.

The command answers at once ("reading…") and queues a lookup job; :func:`run_usage` (on the
worker) reads ThingSpace's usage history for each line (SDK ``DeviceUsageListRequest`` →
``usageHistory``), works out the figures (:func:`summarise`, pure), posts them in the channel and
the chart (a PNG, :mod:`bot.render.chart`) in that post's thread — or the day-by-day table there
when the chart cannot be uploaded.

* One line: per-day data and SMS, domestic and international where ThingSpace splits them (the
  international share), the total against the plan's allowance, and the days that stand out
  (more than three times the window's median day and well outside its spread).
* A group of up to :data:`MAX_GROUP` lines: the group's total per day and its top 10 consumers.
  Larger groups are refused with the reason (one usage call per line).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from bot.render import blocks
from bot.render.chart import ChartSpec, render_usage_chart
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import UsageRecord
from commands import audit
from commands.context import CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError
from commands.targets import resolve
from commands.verdict import format_bytes, plan_allowance
from storage import jobs, outbox
from storage.jobs import Job

__all__ = ["MAX_DAYS", "MAX_GROUP", "DaySum", "UsageSummary", "run_usage", "start", "summarise"]

MAX_GROUP: Final = 100
MAX_DAYS: Final = 365  # ThingSpace keeps 12 months of usage
DEFAULT_DAYS: Final = 30
TOP: Final = 10
#: a day stands out above max(RATIO × the median day, the median + SPREAD × the median deviation)
RATIO: Final = 3.0
SPREAD: Final = 4.0
#: ...and above this, so a quiet line's 2 KB day is not news
FLOOR: Final = 256 * 1024
#: days listed in the text table (the chart shows them all)
TABLE_DAYS: Final = 62


def _usage(message: str) -> UsageError:
    return UsageError(message, verb="usage")


def _days(inv: Invocation) -> int:
    raw = inv.options.get("days")
    if raw is None:
        return DEFAULT_DAYS
    text = str(raw).strip().lower().removesuffix("d")
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise _usage(
            f"--days takes a whole number of days from 1 to {MAX_DAYS} (ThingSpace keeps 12 months), "
            f"not “{str(raw)[:20]}”."
        )
    return int(text)


def start(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    db = deps.db()
    days = _days(inv)
    if len(inv.targets) != 1:
        raise _usage("`usage` takes one line or one group:NAME.")
    token = inv.targets[0]
    devices = resolve(db, inv.targets, verb="usage", max_targets=deps.settings.max_targets)
    if len(devices) > MAX_GROUP:
        raise _usage(
            f"group:{token.group} has more than {MAX_GROUP} lines; `usage` reads each line's history "
            f"(one ThingSpace call per line), so it takes groups of up to {MAX_GROUP}. Name a smaller "
            "group or one line."
        )
    group = token.group if token.is_group else ""
    payload = {
        "verb": "usage",
        "devices": [str(d.device_id) for d in devices],
        "keys": [d.key for d in devices],
        "labels": [d.label for d in devices],
        "plans": [d.entry.plan if d.entry else "" for d in devices],
        "group": group,
        "days": days,
        "user": req.user,
        "channel": req.channel,
        "response_url": req.response_url,
    }
    with audit.transaction(db):
        jobs.enqueue(db, key=f"lookup:usage:{req.user}:{time.time_ns()}", kind="lookup", payload=payload)
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb="usage",
            outcome=audit.Outcome.QUEUED,
            targets=[f"group:{group}"] if group else [d.key for d in devices],
            detail={"days": days, "lines": len(devices)},
        )
    deps.wake()
    subject = f"group:{blocks.escape(group)} ({len(devices)} lines)" if group else devices[0].shown
    return Reply(
        f":hourglass_flowing_sand: Reading {days} days of usage for {subject}… the figures and a chart "
        "will be posted in this channel."
    )


# -- the figures (pure) ---------------------------------------------------------------------------


@dataclass
class DaySum:
    day: date
    bytes: int = 0
    sms: int = 0
    domestic: int | None = None
    international: int | None = None

    def add(self, record: UsageRecord) -> None:
        self.bytes += record.bytes_used
        self.sms += record.sms_used
        for name, value in (
            ("domestic", record.domestic_bytes),
            ("international", record.international_bytes),
        ):
            if value is not None:
                setattr(self, name, (getattr(self, name) or 0) + value)


@dataclass
class UsageSummary:
    days: list[DaySum]
    total: int
    sms: int
    domestic: int | None
    international: int | None
    median: float
    usual: tuple[float, float]
    standouts: list[DaySum]
    #: plan allowance per billing cycle (bytes), when known
    allowance: int | None = None
    #: (label, bytes) of the biggest consumers (groups)
    top: list[tuple[str, int]] = field(default_factory=list)

    @property
    def international_share(self) -> float | None:
        if self.international is None:
            return None
        split = (self.domestic or 0) + self.international
        return self.international / split if split else 0.0


def summarise(
    records: Sequence[UsageRecord],
    *,
    first: date,
    last: date,
    allowance: int | None = None,
    per_line: Mapping[str, int] | None = None,
) -> UsageSummary:
    """Per-day sums from *first* to *last* (days without a record count as 0), the usual range
    (the middle half of the days), the days that stand out, the split and the top consumers."""
    days = {
        first + timedelta(days=i): DaySum(first + timedelta(days=i)) for i in range((last - first).days + 1)
    }
    for record in records:
        if record.timestamp is None:
            continue
        day = record.timestamp.astimezone(UTC).date()
        if day in days:
            days[day].add(record)
    ordered = list(days.values())
    values = [d.bytes for d in ordered]
    median = float(statistics.median(values)) if values else 0.0
    deviation = float(statistics.median(abs(v - median) for v in values)) if values else 0.0
    if len(values) >= 4:
        quarters = statistics.quantiles(values, n=4)
        usual = (float(quarters[0]), float(quarters[2]))
    else:
        usual = (float(min(values, default=0)), float(max(values, default=0)))
    threshold = max(RATIO * median, median + SPREAD * deviation, FLOOR)
    standouts = [d for d in ordered if d.bytes > threshold]
    splits = [d for d in ordered if d.international is not None or d.domestic is not None]
    top = sorted((per_line or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    return UsageSummary(
        days=ordered,
        total=sum(values),
        sms=sum(d.sms for d in ordered),
        domestic=sum(d.domestic or 0 for d in splits) if splits else None,
        international=sum(d.international or 0 for d in splits) if splits else None,
        median=median,
        usual=usual,
        standouts=standouts,
        allowance=allowance,
        top=top,
    )


def _plan_line(summary: UsageSummary, days: int) -> str:
    if summary.allowance is None:
        return "Plan size unknown (ThingSpace's plan list does not give it)."
    share = summary.allowance * days / 30
    pct = 100 * summary.total / share if share else 0.0
    return (
        f"Total {format_bytes(summary.total)} against the plan's {format_bytes(summary.allowance)} a month "
        f"(≈{format_bytes(share)} for {days} days): {pct:.0f}%."
    )


def answer(
    summary: UsageSummary, *, subject: str, days: int, lines: int, unread: int
) -> tuple[str, list[dict[str, Any]]]:
    """The channel post: the headline figures (subject already escaped)."""
    head = f":bar_chart: *Usage of {subject}* — last {days} day{'s' if days != 1 else ''}"
    facts = [
        (
            f"Data {format_bytes(summary.total)} · SMS {summary.sms:,} · usual day "
            f"{format_bytes(summary.usual[0])}–{format_bytes(summary.usual[1])} (median {format_bytes(summary.median)})"
        ),
        _plan_line(summary, days) if lines == 1 else f"{lines} lines.",
    ]
    share = summary.international_share
    if share is None:
        facts.append("ThingSpace does not split this usage into domestic and international.")
    else:
        facts.append(
            f"Domestic {format_bytes(summary.domestic or 0)} · international {format_bytes(summary.international or 0)} "
            f"(*{share:.0%} international*)"
        )
    if summary.standouts:
        shown = ", ".join(f"{d.day:%a %d %b} {format_bytes(d.bytes)}" for d in summary.standouts[-5:])
        facts.append(f":warning: Days that stand out ({len(summary.standouts)}): {shown}")
    else:
        facts.append("No day stands out.")
    if summary.top:
        facts.append(
            "Top consumers: "
            + ", ".join(f"{blocks.escape(label)} {format_bytes(n)}" for label, n in summary.top)
        )
    if unread:
        facts.append(
            f":grey_question: ThingSpace did not give the usage of {unread} line(s); they are left out."
        )
    body = [blocks.section(head), *(blocks.context(f) for f in facts)]
    text = f"Usage of {subject}, last {days} days: {format_bytes(summary.total)}, {summary.sms:,} SMS"
    return blocks.truncate(text, 3000), body


def table(summary: UsageSummary) -> str:
    """The day-by-day table (the chart's fallback), newest day first."""
    rows = []
    for d in reversed(summary.days[-TABLE_DAYS:]):
        intl = f"  intl {format_bytes(d.international)}" if d.international else ""
        mark = "  ◀ stands out" if d in summary.standouts else ""
        rows.append(f"{d.day:%a %d %b}  {format_bytes(d.bytes):>8}  {d.sms:>4} SMS{intl}{mark}")
    more = f"\n…and {len(summary.days) - TABLE_DAYS} earlier days" if len(summary.days) > TABLE_DAYS else ""
    return blocks.truncate("```\n" + "\n".join(rows) + more + "\n```", 2900)


# -- the worker's half ----------------------------------------------------------------------------


def run_usage(deps: Deps, job: Job) -> None:
    """Read each line's usage history, post the figures, then the chart (or the table) in the thread."""
    payload = job.payload
    days = int(payload["days"])
    now = datetime.fromtimestamp(deps.clock(), UTC)
    last = now.date()
    first = last - timedelta(days=days - 1)
    earliest = datetime(first.year, first.month, first.day, tzinfo=UTC)
    records: list[UsageRecord] = []
    per_line: dict[str, int] = {}
    unread = 0
    failure: ThingSpaceError | None = None
    for device_text, label in zip(payload["devices"], payload["labels"], strict=True):
        kind, _, value = str(device_text).partition(":")
        try:
            got = list(
                deps.thingspace.usage_history(DeviceId.from_wire({"kind": kind, "id": value}), earliest, now)
            )
        except ThingSpaceError as exc:
            unread += 1
            failure = exc
            continue
        records.extend(got)
        per_line[str(label)] = sum(r.bytes_used for r in got)
    if failure is not None and not per_line:
        raise failure  # nothing read: lookup.run answers and audits ThingSpace's error
    allowance = None
    plans = [p for p in payload.get("plans", []) if p]
    if len(payload["devices"]) == 1:
        plan = plans[0] if plans else next((r.service_plan for r in records if r.service_plan), "")
        try:
            allowance = deps.thingspace.account_info().plan_allowance(plan)
        except ThingSpaceError:
            allowance = None
        allowance = allowance or plan_allowance(plan)
    group = str(payload.get("group") or "")
    summary = summarise(
        records, first=first, last=last, allowance=allowance, per_line=per_line if group else None
    )
    subject = f"group:{blocks.escape(group)}" if group else blocks.escape(str(payload["labels"][0]))
    text, body = answer(summary, subject=subject, days=days, lines=len(payload["devices"]), unread=unread)
    started = time.perf_counter()
    png = render_usage_chart(
        ChartSpec(
            title=f"Usage of {'group:' + group if group else payload['labels'][0]}, last {days} days",
            days=[d.day for d in summary.days],
            domestic=[(d.domestic if d.domestic is not None else d.bytes) for d in summary.days],
            international=[d.international or 0 for d in summary.days],
            plan_per_day=(summary.allowance / 30) if summary.allowance else None,
            usual=summary.usual,
            standouts=[d.day for d in summary.standouts],
        )
    )
    render_ms = (time.perf_counter() - started) * 1000
    db = deps.db()
    root = f"usage:{job.id}"
    name = f"usage-{group or payload['keys'][0].split(':')[-1][-4:]}-{last:%Y%m%d}.png"
    with audit.transaction(db):
        outbox.enqueue_post(db, key=root, channel=str(payload["channel"]), text=text, blocks=body)
        outbox.enqueue_file(
            db,
            key=f"{root}:chart",
            channel=str(payload["channel"]),
            thread_key=root,
            filename=name,
            title=f"Usage, last {days} days",
            data=png,
            fallback_text=table(summary),
        )
        audit.record(
            db,
            actor=str(payload["user"]),
            channel=str(payload["channel"]),
            verb="usage",
            outcome=audit.Outcome.OK,
            targets=[f"group:{group}"] if group else list(payload["keys"]),
            detail={
                "days": days,
                "lines": len(payload["devices"]),
                "unread": unread,
                "total_bytes": summary.total,
                "standouts": len(summary.standouts),
                "chart_ms": round(render_ms),
            },
        )
    deps.hook("chart_render", render_ms)
