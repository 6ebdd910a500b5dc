"""What a line does on the network over time: data sessions, attach state, reachability.

A device's behaviour is a *timeline*: a list of ``(start, Mode)`` segments, oldest first. A mode is
one of a few generators (always-on hourly sessions, a sleepy wake cycle, a reconnect loop, an open
session that moves no data, or silence, attached or not). Sessions are computed on demand from
the mode, the segment bounds and a deterministic hash of (device key, slot), never stored, so a
history query costs only the window it asks for and two sandboxes with the same seed agree.

Everything ThingSpace reports about connectivity is derived from the same timeline, which keeps
the connection history (Start/Stop events, ``BytesUsed`` in Stop), the daily usage history, the
device list's ``connected`` and ``lastConnectionDate``, the extended-diagnostics ``Connected``
value and the reachability monitors consistent with one another. Times are integer epoch seconds inside this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

__all__ = [
    "Mode",
    "Session",
    "Status",
    "Timeline",
    "always_on",
    "append_segment",
    "daily_bytes",
    "iter_sessions",
    "last_activity",
    "loop",
    "next_change",
    "open_idle",
    "silent",
    "sleepy",
    "status_at",
    "unit",
]

_MASK: Final = (1 << 64) - 1


def unit(*parts: int) -> float:
    """A deterministic pseudo-random number in [0, 1) from integers (splitmix64 mixing)."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & _MASK)) & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


@dataclass(frozen=True, slots=True)
class Mode:
    """How a device behaves during one segment of its timeline.

    ``periodic`` modes open a session every ``every`` seconds (grid offset ``phase``) lasting
    ``length`` seconds and moving about ``volume`` bytes. ``reach`` says when the device can be
    reached: ``always``, only during a session (``window``, sleepy PSM/eDRX devices), or if
    ``attached`` (``attached``: silent modes).
    """

    kind: Literal["periodic", "open", "silent"]
    every: int = 3600
    length: int = 3595
    volume: int = 0
    phase: int = 0
    attached: bool = True
    reach: Literal["always", "window", "attached"] = "always"
    label: str = ""


def always_on(bytes_per_hour: int, phase: int, every: int = 3600) -> Mode:
    """Data sessions back to back, ``every`` seconds long (the network closes long sessions hourly)."""
    return Mode(
        "periodic", every, every - 5, bytes_per_hour * every // 3600, phase % every, label="always-on"
    )


def sleepy(every: int, phase: int, volume: int = 20_000, length: int = 120) -> Mode:
    """Asleep between wakes (PSM): one short session per wake, reachable only then."""
    return Mode("periodic", every, length, volume, phase % every, reach="window", label="sleepy")


def loop(phase: int, every: int = 120, length: int = 40, volume: int = 1_500) -> Mode:
    """A reconnect loop: a short session every two minutes, almost no data."""
    return Mode("periodic", every, length, volume, phase % every, label="reconnect-loop")


def open_idle() -> Mode:
    """One data session that stays open and moves nothing (a stuck application)."""
    return Mode("open", label="open-idle")


def silent(*, attached: bool) -> Mode:
    """No data sessions; attached (hung modem) or not (dead, suspended, out of coverage)."""
    return Mode("silent", attached=attached, reach="attached", label="hung" if attached else "down")


class Session(NamedTuple):
    start: int
    stop: int | None  # None: still open at "now"
    volume: int


class Status(NamedTuple):
    attached: bool
    connected: bool
    reachable: bool
    available_until: int | None  # end of the current wake window / session, if reachable


Timeline = list[tuple[int, Mode]]


def append_segment(timeline: Timeline, start: int, mode: Mode) -> None:
    """Switch to ``mode`` at ``start``; later segments (if the clock was reset) are dropped."""
    while timeline and timeline[-1][0] >= start and len(timeline) > 1:
        timeline.pop()
    if timeline and timeline[-1][0] >= start:
        timeline[-1] = (timeline[-1][0], mode)
        return
    timeline.append((start, mode))


def _bounds(timeline: Timeline, index: int) -> tuple[int, int | None]:
    start = timeline[index][0]
    end = timeline[index + 1][0] if index + 1 < len(timeline) else None
    return start, end


def _periodic(
    mode: Mode, key: int, seg_start: int, seg_end: int | None, lo: int, hi: int, now: int
) -> Iterator[Session]:
    """Sessions of a periodic mode overlapping [lo, hi], started in (seg_start, min(seg_end, now)].

    Always-reachable modes re-attach right away when their segment begins (a partial first
    session up to the next grid point); sleepy modes wait for their next wake.
    """
    every, length = mode.every, mode.length
    first_k = (seg_start - mode.phase) // every + 1  # first grid point strictly after seg_start
    if mode.reach == "always":
        first_k -= 1
    k = max(first_k, (lo - length - mode.phase) // every)
    last_start = min(hi, now) if seg_end is None else min(hi, now, seg_end - 1)
    while True:
        grid = mode.phase + k * every
        start = max(grid, seg_start + 1)
        if start > last_start:
            return
        natural_end = grid + length
        k += 1
        if natural_end - start < 10:
            continue
        stop: int | None = natural_end if seg_end is None else min(natural_end, seg_end)
        if stop is not None and stop > now:
            stop = None
        if stop is None or stop >= lo:
            volume = 0
            if stop is not None:
                jitter = 0.7 + 0.6 * unit(key, k, every)
                volume = int(mode.volume * jitter * (stop - start) / length)
            yield Session(start, stop, volume)


def iter_sessions(timeline: Timeline, key: int, lo: int, hi: int, now: int) -> Iterator[Session]:
    """Sessions overlapping [lo, hi] (and started by ``now``), oldest first."""
    for index, (seg_start, mode) in enumerate(timeline):
        _, seg_end = _bounds(timeline, index)
        if seg_end is not None and seg_end <= lo:
            continue
        if seg_start > hi or seg_start > now:
            return
        if mode.kind == "periodic":
            yield from _periodic(mode, key, seg_start, seg_end, lo, hi, now)
        elif mode.kind == "open":
            start = seg_start + 1
            if start > min(hi, now):
                continue
            stop = seg_end if seg_end is not None and seg_end <= now else None
            if stop is None or stop >= lo:
                yield Session(start, stop, 0)


def _last_in_segment(timeline: Timeline, index: int, now: int) -> Session | None:
    seg_start, mode = timeline[index]
    _, seg_end = _bounds(timeline, index)
    horizon = now if seg_end is None else min(seg_end - 1, now)
    if horizon <= seg_start:
        return None
    if mode.kind == "open":
        stop = seg_end if seg_end is not None and seg_end <= now else None
        return Session(seg_start + 1, stop, 0)
    if mode.kind != "periodic":
        return None
    lo = max(seg_start, horizon - mode.every - mode.length)
    last: Session | None = None
    for last in _periodic(mode, 0, seg_start, seg_end, lo, horizon, now):  # noqa: B007
        pass
    return last


def last_activity(timeline: Timeline, now: int) -> int | None:
    """Time of the newest Start or Stop event at or before ``now`` (``lastConnectionDate``)."""
    for index in range(len(timeline) - 1, -1, -1):
        if timeline[index][0] > now:
            continue
        session = _last_in_segment(timeline, index, now)
        if session is not None:
            return session.stop if session.stop is not None else session.start
    return None


def daily_bytes(timeline: Timeline, key: int, day_start: int, day_end: int, now: int) -> int:
    """Bytes of the sessions that ended in [day_start, day_end) by ``now`` (usage is rated at stop)."""
    total = 0
    for session in iter_sessions(timeline, key, day_start, min(day_end - 1, now), now):
        if session.stop is not None and day_start <= session.stop < day_end:
            total += session.volume
    return total


def _current(timeline: Timeline, now: int) -> int:
    for index in range(len(timeline) - 1, -1, -1):
        if timeline[index][0] <= now:
            return index
    return 0


def status_at(timeline: Timeline, now: int) -> Status:
    """Attached / connected / reachable at ``now``."""
    index = _current(timeline, now)
    mode = timeline[index][1]
    if mode.kind == "silent":
        return Status(mode.attached, False, mode.attached, None)
    if mode.kind == "open":
        return Status(True, True, True, now + 3600)
    session = _last_in_segment(timeline, index, now)
    in_session = session is not None and session.stop is None
    if mode.reach == "window":
        until = session.start + mode.length if in_session and session is not None else None
        return Status(True, in_session, in_session, until)
    return Status(True, in_session or mode.every - mode.length <= 10, True, now + 3600)


def next_change(timeline: Timeline, now: int) -> int | None:
    """When reachability next changes by itself (sleepy wake or sleep), or None if it doesn't."""
    index = _current(timeline, now)
    seg_start, mode = timeline[index]
    if mode.kind != "periodic" or mode.reach != "window":
        return None
    k = (now - mode.phase) // mode.every
    start = mode.phase + k * mode.every
    if start > seg_start and start <= now < start + mode.length:
        return start + mode.length
    following = start + mode.every
    return (
        following
        if following > seg_start
        else mode.phase + ((seg_start - mode.phase) // mode.every + 1) * mode.every
    )
