"""Verizon's provisioning rules for one line, on the sandbox's clock.

* State machine: ``active`` ⇄ ``suspend`` (restore only from ``suspend``; Verizon: "About Device
  States").
* At most :data:`DAILY_ACTIONS` successful provisioning actions per line per UTC day.
* A suspension lasts at most :data:`MAX_CONTINUOUS_DAYS` days and a line may be suspended at most
  :data:`MAX_DAYS_PER_YEAR` days in any 365; the line auto-resumes at ``resume_date``
  (``suspended at`` + the smaller allowance), and a ResumeTrackingNotification is due
  :data:`RESUME_NOTICE` before that.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from bot.sandbox.activity import append_segment, silent
from bot.sandbox.fleet import Device

__all__ = [
    "API_USER",
    "DAILY_ACTIONS",
    "MAX_CONTINUOUS_DAYS",
    "MAX_DAYS_PER_YEAR",
    "RESUME_NOTICE",
    "actions_today",
    "add_past_suspension",
    "record_event",
    "resume_line",
    "suspend_line",
    "suspended_days_continuous",
    "suspended_days_year",
    "suspension_allowance",
]

DAILY_ACTIONS: Final = 5
MAX_CONTINUOUS_DAYS: Final = 90
MAX_DAYS_PER_YEAR: Final = 180
RESUME_NOTICE: Final = timedelta(days=7)


def actions_today(device: Device, now: datetime) -> int:
    """Successful provisioning actions on ``now``'s UTC day."""
    today = now.date()
    return sum(1 for moment in device.actions if moment.date() == today and moment <= now)


def suspended_days_continuous(device: Device, now: datetime) -> int:
    """Whole days in the current suspension (0 when active)."""
    if device.state != "suspend" or not device.suspensions or device.suspensions[-1][1] is not None:
        return 0
    start = device.suspensions[-1][0]
    return max((now - start).days, 0) if start is not None else 0


def suspended_days_year(device: Device, now: datetime) -> int:
    """Days suspended within the last 365 days (partial days count)."""
    window_start = now - timedelta(days=365)
    total = timedelta()
    for start, end in device.suspensions:
        if start is None:
            continue
        lo = max(start, window_start)
        hi = min(end or now, now)
        if hi > lo:
            total += hi - lo
    return int(total.total_seconds() // 86400) + (1 if total.total_seconds() % 86400 else 0)


def suspension_allowance(device: Device, now: datetime) -> timedelta:
    """How long a suspension starting ``now`` may last before the line auto-resumes."""
    used_before = suspended_days_year(device, now) - suspended_days_continuous(device, now)
    remaining_year = MAX_DAYS_PER_YEAR - used_before
    return timedelta(days=max(min(MAX_CONTINUOUS_DAYS, remaining_year), 0))


def add_past_suspension(device: Device, start: datetime, end: datetime) -> None:
    """Record a suspension that began and ended before the current one (tests and demos use it to
    bring a line near its 180 days a year); it counts toward :func:`suspended_days_year`."""
    if not start < end:
        raise ValueError("a suspension ends after it starts")
    ongoing = bool(device.suspensions) and device.suspensions[-1][1] is None
    at = len(device.suspensions) - 1 if ongoing else len(device.suspensions)
    while at > 0 and (device.suspensions[at - 1][0] or start) > start:
        at -= 1
    device.suspensions.insert(at, [start, end])
    record_event(device, start, "Suspend", API_USER)
    record_event(device, end, "Restore", API_USER)


#: who the sandbox's provisioning history names for changes made through its API
API_USER = "sandbox-user"


def record_event(device: Device, at: datetime, event_type: str, by: str) -> None:
    """Add one provisioning-history event (``POST /devices/history/actions/list``)."""
    device.history.append((at, event_type, by))
    if len(device.history) > 1 and device.history[-2][0] > at:
        device.history.sort(key=lambda event: event[0])


def suspend_line(device: Device, at: datetime, *, count_action: bool = True, by: str = API_USER) -> datetime:
    """Suspend now; returns the auto-resume date. The caller has checked the rules."""
    allowance = suspension_allowance(device, at)
    device.suspensions.append([at, None])
    device.state = "suspend"
    device.resume_date = at + allowance
    append_segment(device.timeline, int(at.timestamp()), silent(attached=False))
    if count_action:
        device.actions.append(at)
    record_event(device, at, "Suspend", by)
    return device.resume_date


def resume_line(device: Device, at: datetime, *, count_action: bool = True, by: str = API_USER) -> None:
    """Back to ``active`` with the device's normal behaviour."""
    if device.suspensions and device.suspensions[-1][1] is None:
        device.suspensions[-1][1] = at
    device.state = "active"
    device.resume_date = None
    append_segment(device.timeline, int(at.timestamp()), device.healthy_mode())
    if count_action:
        device.actions.append(at)
    record_event(device, at, "Restore", by)
