"""Guard rails checked before ThingSpace is called (thingspace-api.md §4.5, iot-anchors.md §6.2).

* A device already in the target state is skipped with "already suspended" — no API call.
* A line that has used its five provisioning actions today is refused with the reason.
* A suspend that would pass the suspension-day limits (90 days in a row, 180 per 12 months) is
  refused with the reason, when the numbers are known (from diagnostics).

What the bot cannot know locally (a device missing from the directory) is said, not guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from commands.targets import ResolvedDevice

__all__ = [
    "ACTIONS_PER_DAY",
    "SUSPEND_DAYS_CONTINUOUS",
    "SUSPEND_DAYS_YEAR",
    "GuardResult",
    "LineLimits",
    "check",
    "day_start",
]

ACTIONS_PER_DAY = 5
SUSPEND_DAYS_CONTINUOUS = 90
SUSPEND_DAYS_YEAR = 180

TARGET_STATE = {"suspend": "suspend", "resume": "active"}


@dataclass(frozen=True)
class LineLimits:
    """What diagnostics say about a line's limits (None: unknown)."""

    actions_today: int | None = None
    suspended_days_year: int | None = None


@dataclass
class GuardResult:
    ok: list[ResolvedDevice] = field(default_factory=list)
    skipped: list[tuple[ResolvedDevice, str]] = field(default_factory=list)
    refused: list[tuple[ResolvedDevice, str]] = field(default_factory=list)
    unknown: list[ResolvedDevice] = field(default_factory=list)


def day_start(now: float) -> float:
    """Midnight UTC of *now*: provisioning actions are counted per calendar day."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _resume_note(device: ResolvedDevice) -> str:
    if device.entry and device.entry.resume_date:
        return f" (auto-resume {device.entry.resume_date[:10]})"
    return ""


def check(
    verb: str,
    devices: Sequence[ResolvedDevice],
    *,
    bot_actions_today: Mapping[str, int],
    limits: Mapping[str, LineLimits] | None = None,
) -> GuardResult:
    result = GuardResult()
    limits = limits or {}
    for device in devices:
        entry = device.entry
        state = entry.state if entry else ""
        if entry is None:
            result.unknown.append(device)
        if verb == "sms" and state and state != "active":
            word = "suspended" if state == "suspend" else state
            result.refused.append((device, f"is {word}; an SMS needs an active line (resume it first)"))
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
            known = limits.get(device.key, LineLimits())
            used = max(bot_actions_today.get(device.key, 0), known.actions_today or 0)
            if used >= ACTIONS_PER_DAY:
                why = (
                    f"has used its {ACTIONS_PER_DAY} provisioning actions today "
                    "(ThingSpace allows 5 per line per day); try again after 00:00 UTC"
                )
                result.refused.append((device, why))
                continue
            year = known.suspended_days_year
            if verb == "suspend" and year is not None and year >= SUSPEND_DAYS_YEAR:
                why = f"has been suspended {year} days in the last 12 months; ThingSpace allows {SUSPEND_DAYS_YEAR}"
                result.refused.append((device, why))
                continue
        result.ok.append(device)
    return result
