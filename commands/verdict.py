"""The ``diag`` verdict: what the checks found, turned into an answer an on-call engineer can act on.

Pure logic, no I/O: :func:`judge` takes :class:`Facts` (whatever the checks of
:mod:`commands.diag` could gather; ``None`` means "that check could not run") and returns a
:class:`Verdict`: a grade (``healthy``, ``degraded``, ``down``, ``unknown``), one sentence, the
evidence behind it in the order on-call engineers check a line (identify it; provisioned and
usable; policy limits; attached; data session; activity and usage; expected hardware; asleep by
design; then remediate), and the next steps the bot can take, as ``/ts`` commands for buttons.

The rules, in that order:

1. line state: suspended, deactivated or not yet active is *down*; a suspend shows its auto-resume
   date and the 90/180-day counters; a request still waiting for ThingSpace, or all 5 provisioning
   actions of the day used, is *degraded* (and no Suspend/Resume button is offered);
2. attached / data session: data sessions are read from the connection history (its Start and
   Stop events), never from ThingSpace's ``connected`` flag, which only says the network sees the
   device (attached). Attached with no data session for longer than :data:`QUIET_AFTER` is a hung
   device (*down*: cancel location, then reboot by SMS); silent and not attached (or not
   connected) is *down*; silent with the attach state not reported is *down* too, worded as
   silent; more than :data:`MAX_SESSIONS_PER_HOUR` session starts in an hour is a reconnect loop
   (*degraded*, Verizon's network guideline is at most 4 attempts an hour);
3. usage: the last hour (or today) far above the device's own pattern is a spike (*degraded*,
   Suspend is offered: a stolen tracker looks like this), no traffic for days from a device that
   used to send some is *down*, the cycle over the plan's allowance is *degraded*; the allowance
   comes from the account's plan list (``servicePlans[].sizeKb``), or else from a size written in
   the plan's name, and the card says which;
4. hardware: an IMEI–ICCID mismatch or an IMEI change (ThingSpace's mismatch report, or the
   bot's own directory: the IMEI it last synced, and the changes it recorded) is *degraded*;
5. sleep: a device that wakes on a cycle (from the watch configuration, or inferred from its
   session starts) and was seen within its cycle is *asleep by design* (healthy); one that missed
   its wake-ups is *down*.

When nothing is wrong but the line state or its liveness could not be established (checks
failed), the grade is *unknown* and the sentence says which checks could not run.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal

from bot.core.durations import format_duration
from bot.core.redact import mask_id
from bot.render import times
from bot.thingspace.models import ConnectionEvent, UsageRecord

__all__ = [
    "ACCOUNT_CHECK",
    "DAILY_ACTION_LIMIT",
    "GRADES",
    "MAX_SESSIONS_PER_HOUR",
    "QUIET_AFTER",
    "Evidence",
    "Facts",
    "Mismatch",
    "NextStep",
    "PendingRequest",
    "SessionStats",
    "UsageStats",
    "Verdict",
    "format_bytes",
    "judge",
    "plan_allowance",
    "quote_argument",
    "session_stats",
    "sparkline",
    "usage_stats",
]

Grade = Literal["healthy", "degraded", "down", "unknown"]
Level = Literal["ok", "info", "warn", "bad", "unknown"]

GRADES: Final[tuple[Grade, ...]] = ("healthy", "degraded", "down", "unknown")

#: Sessions that carry less than this on average, many an hour, are a reconnect loop.
LOOP_BYTES_PER_SESSION: Final = 64 * 1024
#: ThingSpace's provisioning rule: 5 activate/suspend/restore/deactivate per line per day.
DAILY_ACTION_LIMIT: Final = 5
#: Verizon's network usage guideline: at most 4 automated network access attempts per hour.
MAX_SESSIONS_PER_HOUR: Final = 4
#: An always-on device silent longer than this has a problem (hung or gone).
QUIET_AFTER: Final = timedelta(hours=6)
#: A device whose session starts are at least this far apart (median) sleeps between wake-ups.
SLEEPY_GAP: Final = timedelta(hours=2)
#: Seen within wake_every × this: asleep as designed; beyond MISSED_FACTOR: missed wake-ups.
LATE_FACTOR: Final = 1.5
MISSED_FACTOR: Final = 2.0
#: A spike: at least this many times the usual amount, and at least SPIKE_MIN_* bytes.
SPIKE_RATIO: Final = 10.0
SPIKE_MIN_HOUR: Final = 5 * 1024 * 1024
SPIKE_MIN_DAY: Final = 10 * 1024 * 1024
#: No traffic for this many days (today included) from a device that used to send data.
SILENT_DAYS: Final = 3
#: Days shown in the usage sparkline.
SPARK_DAYS: Final = 14
#: Share of the plan's allowance that earns a warning.
PLAN_WARN_SHARE: Final = 0.8
#: What the card calls the account-info check (the plan list the allowance comes from).
ACCOUNT_CHECK: Final = "account info"
SUSPEND_DAYS_YEAR: Final = 180
SUSPEND_DAYS_CONTINUOUS: Final = 90

_BARS: Final = "▁▂▃▄▅▆▇█"
_INACTIVE: Final = ("suspend", "deactive", "pre-active", "pending activation")
#: Pending requests that change the line (an SMS waiting for delivery does not).
_CHANGES: Final = ("suspend", "resume", "cancel-location")
_SEVERITY: Final[dict[str, int]] = {"healthy": 0, "degraded": 1, "down": 2}
_PLAN_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB)\b", re.IGNORECASE)
_UNIT: Final = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingRequest:
    """A request the bot sent for this line that ThingSpace has not answered yet."""

    request_id: str
    verb: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class Mismatch:
    """The SIM was seen with other hardware: ``before`` and ``after`` IMEIs, ``when`` if known.

    ``source`` says who saw it: ThingSpace's mismatch report, or the bot's directory (an IMEI
    change recorded at a sync, or one found against the IMEI of the last sync).
    """

    before: str
    after: str
    when: datetime | None = None
    source: str = "ThingSpace's IMEI–ICCID mismatch report"


@dataclass(frozen=True)
class Facts:
    """What the checks gathered. ``None`` in a field means that check could not run.

    ``failed`` maps a check's human name ("connection history") to why it could not run.
    ``target`` is the ``kind:id`` the next-step commands name.
    """

    now: datetime
    target: str
    failed: Mapping[str, str] = field(default_factory=dict)
    # line state (device list + extended diagnostics)
    state: str | None = None
    plan: str = ""
    #: the plan's allowance in bytes from the account's plan list (``servicePlans[].sizeKb``);
    #: ``None`` when the list lacks the plan or could not be read (then :data:`ACCOUNT_CHECK` is
    #: in ``failed``) and the plan's name is read for a size instead
    plan_allowance: int | None = None
    actions_today: int | None = None
    resume_date: datetime | None = None
    last_suspended: datetime | None = None
    suspended_days_year: int | None = None
    suspended_days_continuous: int | None = None
    pending: Sequence[PendingRequest] | None = ()
    # network
    #: the network sees the device (registered); ``None`` when ThingSpace does not say
    attached: bool | None = None
    #: what ``attached`` was read from ("ThingSpace reports it connected", ...), for the card
    attached_from: str = ""
    #: ThingSpace's ``connected`` flag as reported (not a data session: see rule 2)
    connected: bool | None = None
    last_connection: datetime | None = None
    #: the line's IP address (device list ``ipAddress``, else the newest session's
    #: ``FramedIpAddress``)
    ip_address: str = ""
    #: optional extras, only from proposed diagnostics keys when present (never on the real API)
    apn: str = ""
    rat: str = ""
    #: session starts in the last hour as proposed diagnostics count them (used when history fails)
    sessions_last_hour: int | None = None
    #: the latest reachability report the bot holds (monitor callbacks), if any
    reachable: bool | None = None
    reachable_since: datetime | None = None
    # history
    events: Sequence[ConnectionEvent] | None = None
    session_window: timedelta = timedelta(days=7)
    usage: Sequence[UsageRecord] | None = None
    cycle_start: datetime | None = None
    # hardware
    mismatches: Sequence[Mismatch] | None = None
    # watch configuration, if the line is watched
    watched: bool = False
    wake_every: timedelta | None = None
    #: the text the "Send reboot SMS" button sends (settings.reboot_sms_text)
    reboot_sms: str = "REBOOT"


# -- outputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """One line of the card: a topic, what was seen, and how it reads (ok / warn / bad...)."""

    topic: str
    text: str
    level: Level = "info"


@dataclass(frozen=True)
class NextStep:
    """A button: its label and the ``/ts`` command it runs for the clicker."""

    label: str
    command: str
    style: str | None = None


@dataclass(frozen=True)
class Verdict:
    grade: Grade
    summary: str
    evidence: tuple[Evidence, ...]
    steps: tuple[NextStep, ...]
    failed: tuple[str, ...] = ()
    sparkline: str = ""
    #: the other problems found, one sentence each, most serious first
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Finding:
    severity: Grade
    order: int
    sentence: str
    steps: tuple[NextStep, ...] = ()


# -- small pure helpers ---------------------------------------------------------------------------


def format_bytes(n: float) -> str:
    """``0 B``, ``812 KB``, ``1.2 MB``, ``40 MB``, ``1.5 GB`` (binary units, as carriers bill)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if n < 10 else f"{n:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def sparkline(values: Sequence[float]) -> str:
    """``▁▁▂▁▃█``: one bar per value, scaled to the largest; any non-zero value shows above ▁."""
    top = max(values, default=0)
    if top <= 0:
        return _BARS[0] * len(values)
    out = []
    for v in values:
        level = 0 if v <= 0 else max(1, math.ceil(v / top * (len(_BARS) - 1)))
        out.append(_BARS[level])
    return "".join(out)


def plan_allowance(plan: str) -> int | None:
    """Bytes included in a plan whose name says so (``IoT-1GB``, ``m2m 250 MB``), else ``None``."""
    match = _PLAN_SIZE.search(plan or "")
    if not match:
        return None
    return int(float(match.group(1)) * _UNIT[match.group(2).upper()])


def quote_argument(text: str) -> str:
    """``text`` as one argument of the slash grammar (shell-style double quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _span(delta: timedelta) -> str:
    """``4 min``, ``26 h``, ``3 d 4 h``: hours up to two days, as on-call people say it."""
    if timedelta(hours=1) <= delta < timedelta(hours=48):
        return f"{int(delta.total_seconds() // 3600)} h"
    return format_duration(delta)


def _ago(delta: timedelta) -> str:
    return f"{_span(delta)} ago"


def _at(moment: datetime, now: datetime) -> str:
    """A ``<!date^…>`` token: the reader's own zone in Slack, UTC (dated unless today) as fallback."""
    return times.at(moment, UTC, now=now)


def _day(moment: datetime) -> str:
    """A date token (the reader's zone), ``Sun 7 Mar 2027`` as its fallback."""
    return times.day(moment, UTC)


def _compact(delta: timedelta) -> str:
    """``12h``, ``90m``, ``2d``: a duration as the ``--wake-every`` option takes it."""
    minutes = max(1, round(delta.total_seconds() / 60))
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


# -- history analysis -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStats:
    """Connection history, summarised."""

    sessions: int
    last_start: datetime | None
    last_activity: datetime | None
    open_since: datetime | None
    starts_last_hour: int
    peak_per_hour: int
    peak_hour: datetime | None
    peak_bytes: int
    bytes_last_hour: int
    bytes_day_before: int
    wake_every: timedelta | None


def session_stats(events: Sequence[ConnectionEvent], now: datetime) -> SessionStats:
    """Sessions, their rate, the bytes they carried and the wake cycle they suggest."""
    timed = sorted((e for e in events if e.occurred_at is not None), key=lambda e: e.occurred_at or now)
    starts = [e.occurred_at for e in timed if e.event.lower() == "start" and e.occurred_at]
    last_activity = timed[-1].occurred_at if timed else None
    open_since = None
    if timed and timed[-1].event.lower() == "start":
        open_since = timed[-1].occurred_at
    hour_ago = now - timedelta(hours=1)
    day_ago = now - timedelta(hours=25)
    buckets: dict[datetime, int] = {}
    for start in starts:
        if start > now - timedelta(hours=24):
            slot = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            buckets[slot] = buckets.get(slot, 0) + 1
    peak_hour, peak = max(buckets.items(), key=lambda kv: kv[1], default=(None, 0))
    peak_bytes = 0
    if peak_hour is not None:
        peak_end = peak_hour + timedelta(hours=1)
        peak_bytes = sum(
            e.bytes_used or 0 for e in timed if e.occurred_at and peak_hour <= e.occurred_at < peak_end
        )
    bytes_last_hour = sum(e.bytes_used or 0 for e in timed if e.occurred_at and e.occurred_at > hour_ago)
    bytes_before = sum(
        e.bytes_used or 0 for e in timed if e.occurred_at and day_ago < e.occurred_at <= hour_ago
    )
    wake_every = None
    gaps = [b - a for a, b in itertools.pairwise(starts) if b > a]
    if len(gaps) >= 2:
        median = statistics.median(g.total_seconds() for g in gaps)
        if median >= SLEEPY_GAP.total_seconds():
            wake_every = timedelta(minutes=round(median / 900) * 15)
    return SessionStats(
        sessions=len(starts),
        last_start=starts[-1] if starts else None,
        last_activity=last_activity,
        open_since=open_since,
        starts_last_hour=sum(1 for s in starts if s > hour_ago),
        peak_per_hour=peak,
        peak_hour=peak_hour,
        peak_bytes=peak_bytes,
        bytes_last_hour=bytes_last_hour,
        bytes_day_before=bytes_before,
        wake_every=wake_every,
    )


@dataclass(frozen=True)
class UsageStats:
    """Usage history, summarised: per-day totals for the sparkline, the usual day, the cycle."""

    days: tuple[int, ...]
    today: int
    usual_daily: float
    silent_days: int
    cycle_bytes: int | None
    records: int


def usage_stats(records: Sequence[UsageRecord], now: datetime, cycle_start: datetime | None) -> UsageStats:
    """Daily totals over the last :data:`SPARK_DAYS` days (oldest first, today last) and more."""
    per_day: dict[date, int] = {}
    for record in records:
        if record.timestamp is None:
            continue
        day = record.timestamp.astimezone(UTC).date()
        per_day[day] = per_day.get(day, 0) + record.bytes_used
    today = now.astimezone(UTC).date()
    days = tuple(per_day.get(today - timedelta(days=i), 0) for i in range(SPARK_DAYS - 1, -1, -1))
    earlier = [d for d in days[:-1] if d > 0]
    usual = float(statistics.median(earlier)) if earlier else 0.0
    silent = 0
    for value in reversed(days):
        if value:
            break
        silent += 1
    cycle = None
    if cycle_start is not None:
        cycle = sum(r.bytes_used for r in records if r.timestamp and r.timestamp >= cycle_start)
    return UsageStats(
        days=days,
        today=days[-1],
        usual_daily=usual,
        silent_days=silent,
        cycle_bytes=cycle,
        records=len(records),
    )


# -- the judgement --------------------------------------------------------------------------------


class _Judge:
    """Builds evidence and findings topic by topic; :func:`judge` is the entry point."""

    def __init__(self, facts: Facts) -> None:
        self.f = facts
        self.evidence: list[Evidence] = []
        self.findings: list[_Finding] = []
        self.sessions = session_stats(facts.events, facts.now) if facts.events is not None else None
        self.usage = (
            usage_stats(facts.usage, facts.now, facts.cycle_start) if facts.usage is not None else None
        )
        self.wake_every = facts.wake_every or (self.sessions.wake_every if self.sessions else None)
        self.blocked_actions = False
        self.asleep = False
        self.online = False

    # -- steps ----------------------------------------------------------------------------------

    def step(self, verb: str) -> NextStep:
        t = self.f.target
        if verb == "cancel-location":
            return NextStep("Cancel location", f"cancel-location {t}", "danger")
        if verb == "sms":
            return NextStep("Send reboot SMS", f"sms {t} {quote_argument(self.f.reboot_sms)}")
        if verb == "watch":
            option = f" --wake-every {_compact(self.wake_every)}" if self.wake_every else ""
            return NextStep("Watch", f"watch {t}{option}")
        if verb == "resume":
            return NextStep("Resume", f"resume {t}", "primary")
        if verb == "suspend":
            return NextStep("Suspend…", f"suspend {t}", "danger")
        if verb == "reach":
            return NextStep("Ask the network", f"reach {t}")
        raise ValueError(f"no next step for {verb!r}")

    def add(self, topic: str, text: str, level: Level = "info") -> None:
        self.evidence.append(Evidence(topic, text, level))

    def find(self, severity: Grade, order: int, sentence: str, *steps: str) -> None:
        self.findings.append(_Finding(severity, order, sentence, tuple(self.step(s) for s in steps)))

    # -- context for sentences -------------------------------------------------------------------

    @property
    def since_last(self) -> timedelta | None:
        moments = [m for m in (self.f.last_connection, self.sessions and self.sessions.last_activity) if m]
        if not moments:
            return None
        return self.f.now - max(moments)

    def quiet_level(self, default: Level = "unknown") -> Level:
        """How the time since the line was last seen reads: ok, late (warn) or too long (bad)."""
        f = self.f
        if f.state in _INACTIVE:
            return "info"
        if self.sessions is not None and self.sessions.open_since is not None:
            return "ok"
        since = self.since_last
        if since is None:
            return default
        if self.wake_every is not None:
            if since <= self.wake_every * LATE_FACTOR:
                return "ok"
            return "warn" if since <= self.wake_every * MISSED_FACTOR else "bad"
        return "ok" if since <= QUIET_AFTER else "bad"

    def prefix(self) -> str:
        state = self.f.state
        line = f"line {state}" if state else "line state unknown"
        if self.f.attached is True:
            return f"{line}, attached"
        if self.f.attached is False:
            return f"{line}, not attached"
        if self.f.connected is False:
            return f"{line}, not connected"
        return line

    # -- topics, in the order on-call engineers check a line (see the module docstring) ------------

    def line(self) -> None:
        f = self.f
        if f.state is None:
            self.add("Line", "state unknown (the line checks could not run)", "unknown")
            return
        plan = f" · plan {f.plan}" if f.plan else ""
        if f.state == "active":
            self.add("Line", f"active{plan}", "ok")
        elif f.state == "suspend":
            self.suspended(plan)
        elif f.state == "deactive":
            self.add("Line", f"deactivated{plan}", "bad")
            self.find(
                "down",
                10,
                "line deactivated: it cannot attach; reactivating it (in ThingSpace) assigns a new MDN",
            )
        elif f.state in ("pre-active", "pending activation"):
            self.add("Line", f"{f.state}{plan}: not activated yet", "bad")
            self.find("down", 10, f"line {f.state}: it has never been activated, so it cannot attach")
        else:
            self.add("Line", f"state `{f.state}`{plan}", "warn")

    def suspended(self, plan: str) -> None:
        f = self.f
        since = f" since {_day(f.last_suspended)}" if f.last_suspended else ""
        self.add("Line", f"suspended{since}{plan}", "bad")
        counters = []
        if f.suspended_days_continuous is not None:
            counters.append(f"{f.suspended_days_continuous} of {SUSPEND_DAYS_CONTINUOUS} days in a row")
        if f.suspended_days_year is not None:
            counters.append(f"{f.suspended_days_year} of {SUSPEND_DAYS_YEAR} days in the last 12 months")
        resume = ""
        if f.resume_date is not None:
            left = f.resume_date - f.now
            when = f"in {_span(left)}" if left.total_seconds() > 0 else "any time now"
            resume = f"auto-resumes on {_day(f.resume_date)} ({when})"
            self.add("Auto-resume", resume + (f" · {', '.join(counters)}" if counters else ""), "info")
        elif counters:
            self.add("Suspension", ", ".join(counters), "info")
        sentence = "line suspended" + since
        sentence += f": {resume}" if resume else ": no auto-resume date known"
        sentence += "; resume it if the device should be online"
        self.find("down", 10, sentence, "resume")

    def pending(self) -> None:
        f = self.f
        if f.pending is None:
            return
        if not f.pending:
            self.add("Requests", "nothing pending from the bot", "ok")
            return
        parts = []
        for p in f.pending[:3]:
            who = f" by <@{p.actor}>" if p.actor else ""
            parts.append(f"{p.verb} `{p.request_id}`{who}, {_ago(f.now - p.created_at)}")
        more = f" (+{len(f.pending) - 3} more)" if len(f.pending) > 3 else ""
        changes = [p for p in f.pending if p.verb in _CHANGES]
        self.add("Requests", "pending: " + "; ".join(parts) + more, "warn" if changes else "info")
        if not changes:
            return
        first = changes[0]
        self.blocked_actions = True
        self.findings.append(
            _Finding(
                "degraded",
                11,
                f"{self.prefix()}, but a {first.verb} requested {_ago(f.now - first.created_at)} "
                "is still waiting for ThingSpace's result: wait for it before acting again",
                (NextStep("Request status", f"request {first.request_id}"),),
            )
        )

    def limits(self) -> None:
        used = self.f.actions_today
        if used is None:
            return
        left = max(DAILY_ACTION_LIMIT - used, 0)
        text = f"{used} of {DAILY_ACTION_LIMIT} provisioning actions used today"
        if left == 0:
            self.add("Limits", text + ": suspend and resume are refused until tomorrow", "bad")
            self.blocked_actions = True
            self.find(
                "degraded",
                12,
                f"{self.prefix()}, but all {DAILY_ACTION_LIMIT} provisioning actions of the day are "
                "used: ThingSpace refuses any suspend or resume on this line until tomorrow",
            )
        else:
            self.add("Limits", text, "warn" if left == 1 else "ok")

    def network(self) -> None:
        f = self.f
        parts = []
        if f.attached is not None:
            source = f" ({f.attached_from})" if f.attached_from else ""
            parts.append(("attached" if f.attached else "not attached") + source)
        elif f.state is not None:
            parts.append("attach state not reported by ThingSpace")
        if f.connected is not None and not (f.connected and f.attached):
            parts.append("connected" if f.connected else "not connected")
        s = self.sessions
        if s is not None:
            parts.append("data session open" if s.open_since is not None else "no data session open")
        if f.last_connection is not None:
            parts.append(
                f"last connection {_at(f.last_connection, self.f.now)} ({_ago(f.now - f.last_connection)})"
            )
        if f.ip_address:
            parts.append(f"IP {f.ip_address}")
        radio = " · ".join(x for x in (f.rat, f"APN `{f.apn}`" if f.apn else "") if x)
        if radio:
            parts.append(radio)
        if not parts:
            return
        self.add("Network", ", ".join(parts), self.quiet_level())

    def sessions_topic(self) -> None:
        s = self.sessions
        f = self.f
        if s is None:
            self.counted_sessions()
            return
        if s.sessions == 0 and s.last_activity is None:
            self.add(
                "Sessions", f"no sessions in the last {_span(f.session_window)}", self.quiet_level("warn")
            )
        else:
            text = f"{s.sessions} session(s) in the last {_span(f.session_window)}"
            if s.open_since is not None:
                text += f"; one open since {_at(s.open_since, self.f.now)} ({_ago(f.now - s.open_since)})"
            elif s.last_activity is not None:
                text += (
                    f"; last activity {_at(s.last_activity, self.f.now)} ({_ago(f.now - s.last_activity)})"
                )
            text += f"; {s.starts_last_hour} start(s) in the last hour"
            level = "bad" if s.starts_last_hour > MAX_SESSIONS_PER_HOUR else self.quiet_level()
            self.add("Sessions", text, level)
        if s.starts_last_hour > MAX_SESSIONS_PER_HOUR:
            self.many_sessions(s.starts_last_hour, s.bytes_last_hour, "in the last hour", 40)
        elif s.peak_per_hour > MAX_SESSIONS_PER_HOUR and s.peak_hour is not None:
            self.add(
                "Sessions",
                f"{s.peak_per_hour} sessions in the hour from {_at(s.peak_hour, self.f.now)}",
                "warn",
            )
            self.many_sessions(
                s.peak_per_hour, s.peak_bytes, f"in the hour from {_at(s.peak_hour, self.f.now)}", 41
            )

    def many_sessions(self, count: int, nbytes: int, when: str, order: int) -> None:
        """Too many sessions in an hour: a reconnect loop (little data each) or a chatty device."""
        guideline = f"Verizon's guideline: at most {MAX_SESSIONS_PER_HOUR} an hour"
        if nbytes / count < LOOP_BYTES_PER_SESSION:
            self.find(
                "degraded",
                order,
                f"{self.prefix()}, but in a reconnect loop: {count} sessions {when} ({guideline}), "
                f"{format_bytes(nbytes / count)} each; the device attaches but drops its data session: "
                "check its APN and firmware, or reboot it by SMS",
                "sms",
                "watch",
            )
        else:
            self.find(
                "degraded",
                order + 15,
                f"{self.prefix()}, but chatty: {count} sessions {when} ({guideline}); ask the device's owner "
                "to batch its traffic",
                "watch",
            )

    def counted_sessions(self) -> None:
        """Without the connection history, the diagnostics' own count of the last hour's sessions."""
        count = self.f.sessions_last_hour
        if count is None:
            return
        loop = count > MAX_SESSIONS_PER_HOUR
        self.add(
            "Sessions", f"{count} start(s) in the last hour (extended diagnostics)", "bad" if loop else "info"
        )
        if loop:
            self.find(
                "degraded",
                40,
                f"{self.prefix()}, but in a reconnect loop: {count} sessions in the last hour "
                f"(Verizon's guideline: at most {MAX_SESSIONS_PER_HOUR} an hour); the device attaches but "
                "drops its data session: check its APN and firmware, or reboot it by SMS",
                "sms",
                "watch",
            )

    def monitor(self) -> None:
        """What the reachability monitor (the bot's watch) last reported."""
        f = self.f
        if f.reachable is None:
            return
        since = (
            f" since {_at(f.reachable_since, self.f.now)} ({_ago(f.now - f.reachable_since)})"
            if f.reachable_since
            else ""
        )
        if f.reachable:
            self.add("Monitor", f"reachable{since}", "ok")
            return
        self.add("Monitor", f"unreachable{since}", "ok" if self.asleep else "warn")
        if self.asleep:
            return
        # the monitor that raised the alert and this card must not disagree: never healthy here
        self.evidence = [
            Evidence(e.topic, e.text, "warn")
            if e.topic == "Network" and e.level == "ok" and not f.connected
            else e
            for e in self.evidence
        ]
        self.find(
            "degraded",
            40,
            f"{self.prefix()}, but ThingSpace's reachability monitor reports it unreachable{since}: "
            "the device is off, out of coverage or hung; try cancel-location, then an SMS reboot",
            "cancel-location",
            "sms",
        )

    def liveness(self) -> None:
        """Online, asleep by design, hung, or gone."""
        f = self.f
        s = self.sessions
        since = self.since_last
        if s is not None and s.open_since is not None:
            self.online = True
            return
        if since is None:
            return
        wake = self.wake_every
        if wake is not None:
            self.sleep(wake, since)
            return
        if since <= QUIET_AFTER:
            self.online = True
            return
        quiet = _span(since)
        if f.attached is True:
            self.find(
                "down",
                30,
                f"{self.prefix()}, but no data session for {quiet}: device likely hung; "
                "try cancel-location, then an SMS reboot",
                "cancel-location",
                "sms",
                "watch",
            )
        elif f.attached is False or f.connected is False:
            self.find(
                "down",
                30,
                f"{self.prefix()}, no session for {quiet}: the device is off, out of coverage or dead; "
                "a reboot SMS waits up to 5 days for it, and Watch tells you when it is back",
                "sms",
                "watch",
                "reach",
            )
        else:
            self.find(
                "down",
                30,
                f"{self.prefix()}, but no session for {quiet}: the device is silent; ask the network "
                "whether it is reachable, or reboot it by SMS",
                "reach",
                "sms",
                "watch",
            )

    def sleep(self, wake: timedelta, since: timedelta) -> None:
        f = self.f
        s = self.sessions
        source = "its watch" if f.wake_every else "its session history"
        last_start = s.last_start if s and s.last_start else (f.last_connection or f.now - since)
        cycle = _span(wake)
        if since <= wake * LATE_FACTOR:
            self.asleep = True
            due = last_start + wake
            next_wake = (
                f"next wake expected around {_at(due, self.f.now)}" if due > f.now else "next wake due now"
            )
            self.add(
                "Reachability",
                f"asleep by design: wakes every ~{cycle} ({source}); last seen {_ago(since)}; {next_wake}",
                "ok",
            )
            seen = s.wake_every if s else None
            if f.wake_every and seen and abs(seen - wake) > wake / 4:
                self.add("Reachability", f"its session history suggests a wake every ~{_span(seen)}", "warn")
            self.find(
                "healthy",
                70,
                f"{self.prefix()}, asleep by design: it wakes every ~{cycle} and was last seen "
                f"{_ago(since)}; {next_wake}",
                *(() if f.watched else ("watch",)),
            )
            return
        missed = int(since / wake)
        if since <= wake * MISSED_FACTOR:
            self.add(
                "Reachability", f"wake-up overdue: wakes every ~{cycle}, last seen {_ago(since)}", "warn"
            )
            self.find(
                "degraded",
                70,
                f"{self.prefix()}, but its wake-up is overdue: it wakes every ~{cycle} and was last seen "
                f"{_ago(since)}; ask the network whether it is reachable",
                "reach",
                "watch",
            )
            return
        self.add(
            "Reachability",
            f"missed {missed} wake-up(s): wakes every ~{cycle}, last seen {_ago(since)}",
            "bad",
        )
        self.find(
            "down",
            30,
            f"{self.prefix()}, but it missed {missed} wake-ups (every ~{cycle}; last seen {_ago(since)}): "
            "not just asleep; a reboot SMS waits up to 5 days for it",
            "reach",
            "sms",
            "watch",
        )

    def usage_topic(self) -> None:
        u = self.usage
        if u is not None:
            self.cycle(u)
        self.spikes(u)
        if u is not None:
            self.silence(u)

    def allowance(self) -> tuple[int | None, str]:
        """The plan's allowance and where it came from (or why there is none)."""
        f = self.f
        if f.plan_allowance:
            return f.plan_allowance, "allowance from the account's plan list"
        from_name = plan_allowance(f.plan)
        if from_name:
            return from_name, f"allowance read from the plan name `{f.plan}`"
        if ACCOUNT_CHECK in f.failed:
            return None, "no allowance known: the account's plan list could not be read"
        if f.plan:
            return None, f"no allowance known for plan `{f.plan}`"
        return None, ""

    def cycle(self, u: UsageStats) -> None:
        allowance, source = self.allowance()
        parts = []
        level: Level = "ok"
        if u.cycle_bytes is not None:
            cycle = f"{format_bytes(u.cycle_bytes)} this cycle"
            if not allowance:
                cycle += f" ({source})" if source else ""
            else:
                cycle += f" of {format_bytes(allowance)} ({u.cycle_bytes / allowance:.0%}; {source})"
                if u.cycle_bytes >= allowance:
                    level = "bad"
                    self.find(
                        "degraded",
                        52,
                        f"{self.prefix()}, but over its plan: {format_bytes(u.cycle_bytes)} this cycle of "
                        f"{format_bytes(allowance)}; expect overage charges or throttling",
                        "watch",
                    )
                elif u.cycle_bytes >= allowance * PLAN_WARN_SHARE:
                    level = "warn"
            parts.append(cycle)
        parts.append(f"today {format_bytes(u.today)}, usual {format_bytes(u.usual_daily)}/day")
        self.add("Usage", " · ".join(parts), level)
        top = max(u.days, default=0)
        self.add("Last 14 days", f"`{sparkline(u.days)}` max {format_bytes(top)}/day", "info")

    def spikes(self, u: UsageStats | None) -> None:
        """The last hour (connection history) or today (usage history) far above the usual."""
        s = self.sessions
        hourly_usual = 0.0
        if s is not None and s.bytes_day_before:
            hourly_usual = s.bytes_day_before / 24
        elif u is not None and u.usual_daily:
            hourly_usual = u.usual_daily / 24
        if s is not None and s.bytes_last_hour >= max(SPIKE_MIN_HOUR, SPIKE_RATIO * hourly_usual):
            usual = format_bytes(hourly_usual)
            what = f"{format_bytes(s.bytes_last_hour)} in the last hour (usual: {usual} an hour)"
        elif u is not None and u.today >= max(SPIKE_MIN_DAY, SPIKE_RATIO * u.usual_daily):
            what = f"{format_bytes(u.today)} today (usual: {format_bytes(u.usual_daily)} a day)"
        else:
            return
        self.add("Usage", what, "bad")
        self.spike(what)

    def silence(self, u: UsageStats) -> None:
        """No bytes for days from a device that used to send some."""
        f = self.f
        s = self.sessions
        if not (u.usual_daily > 0 and u.silent_days >= SILENT_DAYS and not self.asleep):
            return
        days = u.silent_days
        usual = format_bytes(u.usual_daily)
        self.add("Usage", f"no traffic for {days} days", "bad")
        if s is not None and s.open_since is not None:
            self.find(
                "down",
                31,
                f"{self.prefix()}, data session open for {_span(f.now - s.open_since)} but no traffic for "
                f"{days} days (usual {usual} a day): the modem is connected but the application sends "
                "nothing; reboot it by SMS",
                "sms",
                "watch",
            )
            return
        recent = s is not None and s.last_activity is not None and f.now - s.last_activity < timedelta(days=1)
        if recent:
            self.find(
                "down",
                31,
                f"{self.prefix()}, connecting but no traffic for {days} days (usual {usual} a day): the "
                "application sends nothing; reboot it by SMS",
                "sms",
                "watch",
            )
            return
        steps: tuple[str, ...]
        if f.attached is True:
            advice, steps = "try cancel-location, then an SMS reboot", ("cancel-location", "sms", "watch")
        else:
            advice, steps = "reboot it by SMS (queued up to 5 days) and watch it", ("sms", "watch")
        self.find(
            "down",
            31,
            f"{self.prefix()}, but no traffic for {days} days (usual {usual} a day): silent failure; {advice}",
            *steps,
        )

    def spike(self, what: str) -> None:
        session = ""
        s = self.sessions
        if s is not None and s.open_since is not None:
            session = f", data session open for {_span(self.f.now - s.open_since)}"
        elif s is not None and s.last_activity is not None:
            session = f", last session {_ago(self.f.now - s.last_activity)}"
        self.find(
            "degraded",
            50,
            f"{self.prefix()}{session}, {what}: far above its own pattern; if the device may be "
            "stolen or misbehaving, suspend it",
            "suspend",
            "watch",
        )

    def hardware(self) -> None:
        mismatches = self.f.mismatches
        if mismatches is None:
            return
        if not mismatches:
            self.add("Hardware", "no IMEI–ICCID mismatch reported", "ok")
            return
        m = mismatches[0]
        when = f" on {_day(m.when)}" if m.when else ""
        change = f"IMEI changed from {mask_id(m.before)} to {mask_id(m.after)}{when}"
        self.add("Hardware", f"SIM in other hardware: {change} ({m.source})", "bad")
        self.find(
            "degraded",
            60,
            f"{self.prefix()}, but the SIM is in other hardware than expected ({change}); ThingSpace's "
            "history follows the IMEI: confirm the swap was intended, or suspend the line",
            "suspend",
            "watch",
        )

    def failures(self) -> None:
        for name, why in self.f.failed.items():
            self.add("Could not run", f"{name}: {why}", "unknown")

    # -- verdict ----------------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        self.line()
        self.pending()
        self.limits()
        self.network()
        self.sessions_topic()
        self.liveness()
        self.monitor()
        self.usage_topic()
        self.hardware()
        self.failures()
        if self.f.state in _INACTIVE:
            # a line that is not active is silent because of that: its state is the finding
            self.findings = [x for x in self.findings if not 30 <= x.order < 60 and x.order != 70]
        problems = [x for x in self.findings if x.severity != "healthy"]
        problems.sort(key=lambda x: (-_SEVERITY[x.severity], x.order))
        also = tuple(_sentence(self.clause(x.sentence)) for x in problems[1:])
        grade: Grade
        if problems:
            grade = problems[0].severity
            summary = problems[0].sentence
            if also:
                summary += f" (+{len(also)} more finding{'s' if len(also) > 1 else ''} below)"
        elif self.f.state == "active" and (self.online or self.asleep):
            grade = "healthy"
            summary = self.healthy_sentence()
        else:
            grade = "unknown"
            summary = self.unknown_sentence()
        steps = self.steps(problems or [x for x in self.findings if x.severity == "healthy"])
        return Verdict(
            grade=grade,
            summary=_sentence(summary),
            evidence=tuple(self.evidence),
            steps=steps,
            failed=tuple(self.f.failed),
            sparkline=sparkline(self.usage.days) if self.usage else "",
            also=also,
        )

    def clause(self, sentence: str) -> str:
        """A finding without the line prefix every sentence starts with (for the "Also" lines)."""
        prefix = self.prefix()
        for lead in (f"{prefix}, but ", f"{prefix}, "):
            if sentence.startswith(lead):
                return sentence[len(lead) :]
        return sentence

    def healthy_sentence(self) -> str:
        asleep = [x for x in self.findings if x.severity == "healthy"]
        if asleep:
            return asleep[0].sentence
        f = self.f
        s = self.sessions
        if s is not None and s.open_since is not None:
            activity = f"data session open for {_span(f.now - s.open_since)}"
        elif self.since_last is not None:
            activity = f"last session {_ago(self.since_last)}"
        else:
            activity = "connected"
        line = "line active" + (", attached" if f.attached else "")
        usage = ""
        if self.usage is not None and self.usage.usual_daily:
            usage = f", usage normal (~{format_bytes(self.usage.usual_daily)} a day)"
        caveat = ""
        if f.failed:
            caveat = f" ({', '.join(f.failed)} could not run)"
        return f"{line}, {activity}{usage}: nothing to do{caveat}"

    def unknown_sentence(self) -> str:
        f = self.f
        if f.failed:
            names = ", ".join(f.failed)
            known = f" ({self.prefix()})" if f.state else ""
            return f"not enough to go on{known}: {names} could not run; try again in a few minutes"
        return f"{self.prefix()}, but ThingSpace reports no connection at all for this line"

    def steps(self, findings: Sequence[_Finding]) -> tuple[NextStep, ...]:
        out: dict[str, NextStep] = {}
        for finding in findings:
            for step in finding.steps:
                verb = step.command.split(" ", 1)[0]
                if self.blocked_actions and verb in ("suspend", "resume"):
                    continue
                if verb == "watch" and self.f.watched:
                    continue
                if self.f.state in ("suspend", "deactive") and verb in ("sms", "cancel-location"):
                    continue
                out.setdefault(step.label, step)
        return tuple(out.values())


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def judge(facts: Facts) -> Verdict:
    """The verdict for one line: grade, one sentence, evidence, next steps."""
    return _Judge(facts).verdict()
