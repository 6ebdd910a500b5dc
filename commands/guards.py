"""Guard rails checked before ThingSpace is called.

Verizon: "Service Provisioning Rules" (5 provisioning actions per line per day; at most 90 days
suspended in a row and 180 in a year) and "Suspend Devices" (a suspended line auto-resumes).

* A device already in the target state is skipped with "already suspended" — no API call.
* A line that has used its five provisioning actions today is refused with the reason.
* A suspend that would pass the suspension-day limits (90 days in a row, 180 in 12 months) is
  refused with the reason; for the others the card says how long ThingSpace lets the line stay
  suspended before it auto-resumes.

The numbers come from two places: the bot's own requests today (local, known before the ack)
and each line's provisioning history (``POST /devices/history/actions/list``, SDK
``ProvisioningHistory``; ``LineLimits``, read by the worker after the ack, for every device of the
set, over the last 365 days): the actions done today, and the suspensions — how long the current
one has lasted, and the days suspended in the last 12 months. The last event also says the line's
state, fresher than the directory's. What the bot cannot know (a device missing from the
directory, a history that could not be read) is said, not guessed; ThingSpace is then the judge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.models import ProvisioningEvent
from commands.nidd import is_nidd_plan
from commands.targets import ResolvedDevice
from storage import directory

__all__ = [
    "ACTIONS_PER_DAY",
    "FROM_HISTORY",
    "HISTORY_SPAN",
    "SUSPEND_DAYS_CONTINUOUS",
    "SUSPEND_DAYS_YEAR",
    "GuardResult",
    "LimitReads",
    "LineLimits",
    "check",
    "day_start",
    "limits_from_history",
    "read_limits",
    "suspend_allowance",
]

ACTIONS_PER_DAY = 5
SUSPEND_DAYS_CONTINUOUS = 90
SUSPEND_DAYS_YEAR = 180

TARGET_STATE = {"suspend": "suspend", "resume": "active"}

#: how many lines' diagnostics are read at once (the client allows 16 requests in flight)
READ_CONCURRENCY = 8
#: after this many failed reads the rest are left unknown rather than waited for
READ_FAILURES_MAX = 20
#: seconds one read of a set may take; lines not read by then are left to ThingSpace. It stays
#: under the worker's job lease (120 s, storage.jobs.claim), past which another worker thread
#: would take the same job — for an execute job, a second submission.
READ_BUDGET = 90.0
#: lines handed to the readers at a time; between batches the budget is checked, so a set of
#: 100,000 lines holds at most one batch of reads in flight and stops starting reads on time
READ_BATCH = 256


#: how far back a line's provisioning history is read (the 12-month suspension limit)
HISTORY_SPAN = timedelta(days=365)
#: what :attr:`LineLimits.source` says when the numbers came from the provisioning history
FROM_HISTORY = "provisioning history"
#: history actions that count against the daily limit (a "Device Move" does not)
_COUNTED_ACTIONS = frozenset({"activate", "suspend", "restore", "deactivate"})
#: the state a successful history event leaves the line in
_STATE_AFTER = {"activate": "active", "suspend": "suspend", "restore": "active", "deactivate": "deactive"}


@dataclass(frozen=True)
class LineLimits:
    """What a line's provisioning history says (None: not known)."""

    actions_today: int | None = None
    suspended_days_year: int | None = None
    suspended_days_continuous: int | None = None
    #: the line state ThingSpace reports now (``active``, ``suspend``…), fresher than the directory
    state: str | None = None
    #: where the numbers came from (:data:`FROM_HISTORY`)
    source: str = FROM_HISTORY


def limits_from_history(events: Sequence[ProvisioningEvent], now: datetime) -> LineLimits:
    """A line's limits from its provisioning events of the last 365 days (oldest first; failed
    events changed nothing and are left out):

    * actions today: the activate/suspend/restore/deactivate events of *now*'s UTC day;
    * suspensions: a suspend opens one, a restore, activate or deactivate closes it; a history
      that opens with a close was suspended since before the window began. Days in a row are the
      whole days of the suspension still open; days in the last 12 months count partial days;
    * state: what the last event left (None when there is none in the window).
    """
    window_start = now - HISTORY_SPAN
    day = now.astimezone(UTC).date()
    done = [e for e in events if not e.failed and e.occurred_at is not None and e.occurred_at <= now]
    done.sort(key=lambda e: e.occurred_at or now)
    today = sum(
        1
        for e in done
        if e.action in _COUNTED_ACTIONS and (e.occurred_at or now).astimezone(UTC).date() == day
    )
    spans: list[tuple[datetime, datetime | None]] = []
    started: datetime | None = None
    for event in done:
        at = event.occurred_at or now
        if event.action == "suspend":
            if started is None:
                started = at
        elif event.action in ("restore", "activate", "deactivate"):
            if started is None and not spans and event.action == "restore":
                spans.append((window_start, at))  # suspended since before the window
            elif started is not None:
                spans.append((started, at))
            started = None
    if started is not None:
        spans.append((started, None))
    suspended = timedelta()
    for begin, end in spans:
        lo, hi = max(begin, window_start), min(end or now, now)
        if hi > lo:
            suspended += hi - lo
    year = int(suspended.total_seconds() // 86400) + (1 if suspended.total_seconds() % 86400 else 0)
    in_a_row = max((now - started).days, 0) if started is not None else 0
    last = next((e for e in reversed(done) if e.action in _STATE_AFTER), None)
    return LineLimits(
        actions_today=today,
        suspended_days_year=year,
        suspended_days_continuous=in_a_row,
        state=_STATE_AFTER[last.action] if last is not None else None,
    )


class LimitReads(dict[str, LineLimits]):
    """What :func:`read_limits` read: line key -> limits, and why the other lines were not read.

    ``failed``: ThingSpace answered an error for the line's history (or the reads stopped after
    :data:`READ_FAILURES_MAX` errors: ThingSpace down), a count; ``late``: the keys of the lines
    not reached within the reads' time budget (``budget`` seconds)."""

    def __init__(self, read: Mapping[str, LineLimits] | None = None, *, budget: float = READ_BUDGET) -> None:
        super().__init__(read or {})
        self.failed = 0
        #: keys of the lines not reached within the budget
        self.late: set[str] = set()
        self.budget = budget
        self.seconds = 0.0


@dataclass
class GuardResult:
    ok: list[ResolvedDevice] = field(default_factory=list)
    skipped: list[tuple[ResolvedDevice, str]] = field(default_factory=list)
    refused: list[tuple[ResolvedDevice, str]] = field(default_factory=list)
    unknown: list[ResolvedDevice] = field(default_factory=list)
    #: suspend: key -> days ThingSpace lets the line stay suspended before it auto-resumes,
    #: for the devices in ``ok`` whose suspension days are known
    allowance: dict[str, int] = field(default_factory=dict)
    #: suspend/resume devices in ``ok`` whose limits were asked of ThingSpace and not read
    unread: list[ResolvedDevice] = field(default_factory=list)
    #: of the lines asked about, how many were not reached within the reads' time budget
    #: (the rest of ``unread`` failed), and that budget in seconds
    unread_late: int = 0
    read_budget: float = READ_BUDGET


def suspend_allowance(limits: LineLimits) -> int | None:
    """Days a suspension starting now may last: the smaller of what is left of the 90 days in a
    row and of the 180 days a year (None when diagnostics did not say)."""
    year, row = limits.suspended_days_year, limits.suspended_days_continuous
    if year is None and row is None:
        return None
    return min(SUSPEND_DAYS_CONTINUOUS - (row or 0), SUSPEND_DAYS_YEAR - (year or 0))


def _suspend_days_refusal(limits: LineLimits) -> str | None:
    year, row = limits.suspended_days_year, limits.suspended_days_continuous
    if year is not None and year >= SUSPEND_DAYS_YEAR:
        return (
            f"has been suspended {year} days in the last 12 months; ThingSpace allows {SUSPEND_DAYS_YEAR} "
            "a year, so it cannot be suspended again yet"
        )
    if row is not None and row >= SUSPEND_DAYS_CONTINUOUS:
        return (
            f"has been suspended {row} days in a row; ThingSpace allows {SUSPEND_DAYS_CONTINUOUS} "
            "before it must auto-resume"
        )
    return None


def read_limits(
    client: ThingSpaceClient,
    devices: Sequence[ResolvedDevice],
    *,
    budget: float = READ_BUDGET,
    now: datetime | None = None,
) -> LimitReads:
    """Each line's limits and state from its provisioning history of the last 365 days (worker
    side, never before the ack), :data:`READ_CONCURRENCY` at a time, in batches of
    :data:`READ_BATCH` so that no read starts after *budget* seconds. Only lines read are in the
    answer: one whose history fails, any after :data:`READ_FAILURES_MAX` failures (ThingSpace
    down) and any not reached within *budget* seconds are left out, and counted
    (:class:`LimitReads`, :attr:`GuardResult.unread`)."""
    failures = 0
    lock = threading.Lock()
    began = time.monotonic()
    deadline = began + budget
    moment = now or datetime.now(UTC)
    answer = LimitReads(budget=budget)

    def one(device: ResolvedDevice) -> tuple[str, LineLimits | None, str]:
        nonlocal failures
        with lock:
            if failures >= READ_FAILURES_MAX:
                return device.key, None, "failed"
            if time.monotonic() > deadline:
                return device.key, None, "late"
        try:
            events = list(client.provisioning_history(device.device_id, moment - HISTORY_SPAN, moment))
        except ThingSpaceError:
            with lock:
                failures += 1
            return device.key, None, "failed"
        return device.key, limits_from_history(events, moment), ""

    if not devices:
        return answer
    with ThreadPoolExecutor(max_workers=min(READ_CONCURRENCY, len(devices))) as pool:
        for start in range(0, len(devices), READ_BATCH):
            if failures >= READ_FAILURES_MAX or time.monotonic() > deadline:
                if failures >= READ_FAILURES_MAX:
                    answer.failed += len(devices) - start
                else:
                    answer.late.update(d.key for d in devices[start:])
                break
            for key, limits, why in pool.map(one, devices[start : start + READ_BATCH]):
                if limits is not None:
                    answer[key] = limits
                elif why == "late":
                    answer.late.add(key)
                else:
                    answer.failed += 1
    answer.seconds = time.monotonic() - began
    return answer


def day_start(now: float) -> float:
    """Midnight UTC of *now*: provisioning actions are counted per calendar day."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _resume_note(device: ResolvedDevice) -> str:
    resume = device.resume_date
    return f" (auto-resume {resume[:10]})" if resume else ""


#: what is known of a line whose limits were not read
_NOT_READ = LineLimits()


def _nidd_refusal(entry: directory.DirectoryDevice | None, state: str, plans: Sequence[str]) -> str:
    """Why a line cannot take NIDD data ("" when it can): only NB-IoT lines with a NIDD plan."""
    if entry is None:
        return (
            "is not in the device directory, so the bot cannot tell it is an NB-IoT line; "
            "`/ts status` it first"
        )
    if not is_nidd_plan(entry.plan, plans):
        plan = entry.plan or "no plan"
        return f"is not an NB-IoT line (plan {plan}); NIDD reaches only NB-IoT lines with a NIDD plan"
    if state and state != "active":
        word = "suspended" if state == "suspend" else state
        return f"is {word}; NIDD needs an active line (resume it first)"
    return ""


def check(
    verb: str,
    devices: Sequence[ResolvedDevice],
    *,
    bot_actions_today: Mapping[str, int],
    limits: Mapping[str, LineLimits] | None = None,
    nidd_plans: Sequence[str] = (),
) -> GuardResult:
    """Sort *devices* into ok, skipped and refused for *verb*. *limits* is what
    :func:`read_limits` answered (None: not asked, as before the ack)."""
    result = GuardResult()
    asked = limits is not None
    late: set[str] = set()
    if isinstance(limits, LimitReads):
        result.read_budget, late = limits.budget, limits.late
    limits = limits or {}
    for device in devices:
        known = limits.get(device.key, _NOT_READ)
        state = known.state or device.state
        if not known.state and not device.in_directory:
            result.unknown.append(device)
        if state == directory.GONE:
            result.refused.append(
                (device, "is no longer in the ThingSpace account (the last directory sync did not list it)")
            )
            continue
        if verb == "sms" and state and state != "active":
            word = "suspended" if state == "suspend" else state
            result.refused.append((device, f"is {word}; an SMS needs an active line (resume it first)"))
            continue
        if verb == "nidd":
            nidd_refusal = _nidd_refusal(device.entry, state, nidd_plans)
            if nidd_refusal:
                result.refused.append((device, nidd_refusal))
                continue
        if verb in TARGET_STATE:
            if state == TARGET_STATE[verb]:
                word = "suspended" if verb == "suspend" else "active"
                result.skipped.append(
                    (device, f"already {word}{_resume_note(device) if verb == 'suspend' else ''}")
                )
                continue
            if state.startswith("deactiv"):
                result.refused.append(
                    (device, "is deactivated; only active lines can be suspended or resumed")
                )
                continue
            if verb == "resume" and state and state != "suspend":
                result.refused.append(
                    (device, f"is {state}, not suspended; only suspended lines can be resumed")
                )
                continue
            used = max(bot_actions_today.get(device.key, 0), known.actions_today or 0)
            if used >= ACTIONS_PER_DAY:
                why = (
                    f"has used its {ACTIONS_PER_DAY} provisioning actions today "
                    f"(ThingSpace allows {ACTIONS_PER_DAY} per line per day); try again after 00:00 UTC"
                )
                result.refused.append((device, why))
                continue
            if verb == "suspend":
                why_not = _suspend_days_refusal(known)
                if why_not:
                    result.refused.append((device, why_not))
                    continue
                days = suspend_allowance(known)
                if days is not None:
                    result.allowance[device.key] = days
            if asked and device.key not in limits:
                result.unread.append(device)
        result.ok.append(device)
    result.unread_late = sum(device.key in late for device in result.unread)
    return result
