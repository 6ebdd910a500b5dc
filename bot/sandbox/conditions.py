"""Diagnostic conditions: put a line into a state the bot's ``diag`` must recognise.

Each condition rebuilds the device's live state (line state, plan, provisioning actions,
suspensions, IMEI, and its activity timeline) as if it had come about by ``anchor``; histories and
diagnostics then follow from it. The demo devices (labels ``demo-<condition>``) use the canonical
timings below; random devices of the seeded fleet use spread-out variants of the same conditions.

================ =============================================================================
condition        what the line looks like at ``anchor``
================ =============================================================================
healthy          active, attached, data session open, usual traffic (meters: 12-hour wake cycle)
usage-spike      active, ~40 MB in the last hour against ~1 MB usual (device #0, the stolen tracker)
suspended        suspended 20 days ago, auto-resume date set (90-day cap), an older 30-day suspension
pending          active, but every provisioning request for it stays ``Pending`` (a stuck order)
action-limit     five provisioning actions already used today (restore/suspend ×5, ends active)
hung             attached but no data session for 26 h
reconnect-loop   a short session every 2 minutes for the last hour (≈30 sessions/h)
no-traffic       a data session open for 4 days that moved no data
imei-mismatch    the SIM moved to another device 3 days ago (new IMEI, in the mismatch report)
asleep           sleepy NB-IoT device that last woke 7 h ago; next wake in 5 h (12-hour cycle)
down             not attached and unreachable for 3 days
over-plan        on plan ``m2m4G`` (1 GB, a code with no size in it: only the account's plan list
                 says so) and steadily ~1.5× over it this billing cycle (no spike: it always used
                 that much); a cycle younger than ~3 h has not rated enough sessions to be over yet
wake-overdue     sleepy meter (12-hour cycle) last seen 19.5 h ago: its last wake never came
imei-changed     the SIM moves to other hardware (the spare IMEI) right after ThingSpace first lists
                 the line, so a bot that synced its directory knows the old IMEI; ThingSpace's
                 mismatch report does not list it. Set through the control route, the move is
                 immediate (see :func:`swap_imei`)
diag-unavailable every per-line read (single-device lookup, extended diagnostics, connection and
                 usage history) answers HTTP 500 ``UnexpectedError``; the account-wide device list
                 and the mismatch report still answer
nbiot            an NB-IoT meter on a short eDRX cycle: reachable, a little data every hour; it
                 takes NIDD and answers NIDD data with ``OK `` + the data a few seconds later
roaming          a tracker abroad for the last 5 days: about 70 % of its data since then is
                 international (usage history's domestic/international attributes)
================ =============================================================================
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from bot.sandbox.activity import always_on, append_segment, loop, open_idle, silent, sleepy
from bot.sandbox.fleet import PLANS, WAKE_EVERY, Device
from bot.sandbox.rules import resume_line, suspend_line

__all__ = [
    "CONDITIONS",
    "OVERDUE_FOR",
    "OVER_PLAN",
    "apply_condition",
    "billing_cycle_start",
    "epoch",
    "swap_imei",
]

#: The plan the over-plan line is moved to, and how far over it the line is this cycle.
OVER_PLAN: Final = "m2m4G"
OVER_PLAN_SHARE: Final = 1.5
#: How long ago the wake-overdue meter last woke (its cycle is WAKE_EVERY, 12 h): between 1.5 and 2
#: cycles, so its wake is overdue but not yet missed twice.
OVERDUE_FOR: Final = timedelta(hours=19, minutes=30)

CONDITIONS: Final[dict[str, str]] = {
    "healthy": "active, attached, usual traffic",
    "usage-spike": "about 40 MB in the last hour against about 1 MB usual",
    "suspended": "suspended 20 days ago with an auto-resume date",
    "pending": "provisioning requests for it stay Pending",
    "action-limit": "five provisioning actions already used today",
    "hung": "attached but no data session for 26 h",
    "reconnect-loop": "a new data session every 2 minutes for the last hour",
    "no-traffic": "a data session open for 4 days that moved no data",
    "imei-mismatch": "SIM moved to another device (IMEI changed) 3 days ago",
    "asleep": "sleepy device, asleep by design, next wake in about 5 h",
    "down": "not attached, unreachable for 3 days",
    "over-plan": "steadily over its plan's allowance this billing cycle (plan code without a size)",
    "wake-overdue": "sleepy device whose wake-up is overdue (last seen 19.5 h ago, wakes every 12 h)",
    "imei-changed": "SIM moved to another device (IMEI changed), not in the mismatch report",
    "diag-unavailable": "ThingSpace answers HTTP 500 to its diagnostics, history and lookup calls",
    "nbiot": "NB-IoT meter on a short eDRX cycle: reachable, takes NIDD and answers it",
    "roaming": "abroad for the last 5 days: most of its data since then is international",
}

#: the demo lines that answer: ``healthy`` an SMS, ``nbiot`` NIDD data (``OK `` + what it got)
REPLY_PREFIX: Final = "OK "
REPLY_DELAY: Final = 3.0
ROAMING_FOR: Final = timedelta(days=5)
ROAMING_SHARE: Final = 0.7


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def billing_cycle_start(moment: datetime) -> datetime:
    """Start of the billing cycle holding ``moment``: the sandbox's cycles start on the 9th at
    midnight UTC (:meth:`bot.sandbox.state.SandboxState.billing_cycle_end`)."""
    utc = moment.astimezone(UTC)
    start = utc.replace(day=9, hour=0, minute=0, second=0, microsecond=0)
    if start > utc:
        start = (start - timedelta(days=28)).replace(day=9)  # the 9th of the month before
    return start


def swap_imei(device: Device) -> bool:
    """Put the spare IMEI into an ``imei-changed`` line that still waits for it; True if it did.

    The caller re-indexes the device (its IMEI is an identifier)."""
    if not device.imei_swap_pending:
        return False
    device.imei_swap_pending = False
    device.imei = device.spare_imei
    return True


def apply_condition(device: Device, condition: str, anchor: datetime, *, spread: float | None = None) -> None:
    """Reset ``device``'s live state, then give it ``condition`` as of ``anchor``.

    ``spread`` (0..1) varies the timings for random fleet devices; ``None`` gives the canonical
    ones documented above. Raises ``ValueError`` for an unknown condition.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; use one of {', '.join(CONDITIONS)}")
    v = 0.5 if spread is None else spread
    device.condition = condition
    device.state = "active"
    device.plan = device.type.plan
    device.actions = []
    device.suspensions = []
    device.history = []
    device.resume_date = None
    device.imei = device.original_imei
    device.imei_change = None
    device.imei_swap_pending = False
    device.unavailable = False
    device.stuck = False
    device.roaming_from = None
    device.roaming_share = 0.0
    device.sms_reply = (REPLY_PREFIX, REPLY_DELAY) if condition == "healthy" and spread is None else None
    device.nidd_reply = None
    healthy = device.healthy_mode()
    device.timeline = [(epoch(device.created), healthy)]
    now = epoch(anchor)

    def since(canonical: timedelta, low: timedelta, high: timedelta) -> int:
        offset = canonical if spread is None else low + (high - low) * v
        return max(now - int(offset.total_seconds()), epoch(device.created) + 60)

    if condition == "usage-spike":
        spike = max(40_000_000, 10 * device.type.volume)
        append_segment(device.timeline, now - 3600, always_on(spike, device.phase, every=600))
    elif condition == "suspended":
        start = since(timedelta(days=20), timedelta(days=5), timedelta(days=80))
        older = start - 200 * 86400
        if older > epoch(device.created) + 60:
            suspend_line(device, _at(older, anchor))
            resume_line(device, _at(older + 30 * 86400, anchor))
        suspend_line(device, _at(start, anchor))
    elif condition == "pending":
        device.stuck = True
    elif condition == "action-limit":
        midnight = epoch(anchor.replace(hour=0, minute=0, second=0, microsecond=0))
        suspend_line(device, _at(midnight - 6 * 3600, anchor))
        span = max(now - midnight, 6)
        for i in range(5):
            moment = _at(midnight + span * (i + 1) // 6, anchor)
            if i % 2 == 0:
                resume_line(device, moment)
            else:
                suspend_line(device, moment)
    elif condition == "hung":
        append_segment(
            device.timeline,
            since(timedelta(hours=26), timedelta(hours=12), timedelta(hours=60)),
            silent(attached=True),
        )
    elif condition == "reconnect-loop":
        append_segment(device.timeline, now - 3600, loop(device.phase))
    elif condition == "no-traffic":
        append_segment(
            device.timeline, since(timedelta(days=4), timedelta(days=2), timedelta(days=8)), open_idle()
        )
    elif condition == "imei-mismatch":
        when = since(timedelta(days=3), timedelta(days=1), timedelta(days=21))
        device.imei = device.spare_imei
        device.imei_change = (
            device.original_imei,
            device.spare_imei,
            datetime.fromtimestamp(when, anchor.tzinfo),
        )
    elif condition == "asleep":
        phase = (now - 7 * 3600) % WAKE_EVERY
        device.timeline = [(epoch(device.created), sleepy(WAKE_EVERY, phase, device.type.volume))]
    elif condition == "down":
        append_segment(
            device.timeline,
            since(timedelta(days=3), timedelta(days=2), timedelta(days=10)),
            silent(attached=False),
        )
    elif condition == "over-plan":
        device.plan = OVER_PLAN
        allowance = PLANS[OVER_PLAN][1] * 1024
        # usage is rated when a session stops: the running hour has not counted yet
        rated = max(now - epoch(billing_cycle_start(anchor)) - 3600, 3 * 3600)
        per_hour = max(device.type.volume, int(OVER_PLAN_SHARE * allowance * 3600 / rated))
        device.timeline = [(epoch(device.created), always_on(per_hour, device.phase))]
    elif condition == "wake-overdue":  # any device type: it behaves as a 12-hour sleeper
        last_wake = now - int(OVERDUE_FOR.total_seconds())
        mode = sleepy(WAKE_EVERY, last_wake % WAKE_EVERY, device.type.volume)
        device.timeline = [(epoch(device.created), mode)]
        append_segment(device.timeline, last_wake + mode.length + 1, silent(attached=False))
    elif condition == "imei-changed":
        device.imei_swap_pending = True
    elif condition == "diag-unavailable":
        device.unavailable = True
    elif condition == "nbiot":
        device.timeline = [(epoch(device.created), always_on(max(1, device.type.volume // 10), device.phase))]
        device.nidd_reply = (REPLY_PREFIX, REPLY_DELAY)
    elif condition == "roaming":
        device.roaming_from = since(ROAMING_FOR, timedelta(days=2), timedelta(days=12))
        device.roaming_share = ROAMING_SHARE


def _at(seconds: int, anchor: datetime) -> datetime:
    return datetime.fromtimestamp(seconds, anchor.tzinfo)
