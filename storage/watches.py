"""Watched devices, their reachability state and history, and the ThingSpace monitors behind them.

Tables:

* ``watches`` — one row per watched device (``device`` is the canonical key, e.g.
  ``iccid:8914…``; ``kind``/``ident`` the identifier given to ThingSpace): the channel its alerts
  go to and its rule — ``alert_after`` seconds unreachable, or for a sleepy device ``wake_every``
  seconds between expected wakes and ``missed_wakes`` tolerated. ``due_at`` is when the rule
  fires if nothing else is heard; it is NULL while the device is reachable or already alerted, so
  evaluation reads only the due rows through a partial index (100,000 watches cost nothing
  while they are quiet).
* ``reach_state`` — the latest known reachability of a device (watched or not): reachable or
  not, since when, when it was last seen reachable.
* ``reach_history`` — every observation, deduplicated on (device, event time, reachability).
* ``reach_monitors`` — every reachability monitor the bot asked ThingSpace for: ``requested``
  (the call is made or in flight) → ``active`` (a callback named its ``monitorId``) → ``stop``
  (unwatched, or replaced by a renewal) → ``stopped``; or ``failed``.

Times are epoch seconds given by the caller. Callers wrap calls in :func:`storage.db.write`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import select_in

__all__ = [
    "ChannelCounts",
    "Monitor",
    "Observation",
    "ReachState",
    "Watch",
    "WatchSpec",
    "attach_monitor_id",
    "channel_counts",
    "claim_monitor_starts",
    "claim_stops",
    "count_watches",
    "due_watches",
    "fail_monitors",
    "get_state",
    "get_watch",
    "history",
    "is_monitored",
    "list_watches",
    "mark_monitors_requested",
    "mark_stop",
    "migrations",
    "monitor_candidates",
    "monitors_of",
    "prune_history",
    "record_observation",
    "release_monitor_claims",
    "remove_watches",
    "set_due",
    "set_monitor_retry",
    "states",
    "unclaim_stops",
    "upsert_watches",
    "watched",
]

migrations = Migrations("tsbot.watches")

#: ``reach_monitors.state`` values.
MONITOR_STATES = ("requested", "active", "failed", "stop", "stopped")
#: A monitor that ThingSpace has not confirmed (no callback with its ``monitorId``) this long after
#: the request counts as lost: it is requested again and the old one stopped if it ever shows up.
CONFIRM_TIMEOUT = 3600.0


@migrations()
def create_watches(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE watches (
            device TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            ident TEXT NOT NULL,
            channel TEXT NOT NULL,
            alert_after REAL,
            wake_every REAL,
            missed_wakes INTEGER NOT NULL DEFAULT 0,
            created_by TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            due_at REAL,
            monitor_retry_at REAL,
            monitor_error TEXT,
            CHECK ((alert_after IS NULL) != (wake_every IS NULL))
        )
        """
    )
    db.execute("CREATE INDEX watches_due ON watches (due_at) WHERE due_at IS NOT NULL")
    db.execute("CREATE INDEX watches_channel ON watches (channel)")
    db.execute(
        """
        CREATE TABLE reach_state (
            device TEXT PRIMARY KEY,
            reachable INTEGER NOT NULL CHECK (reachable IN (0, 1)),
            since REAL NOT NULL,
            last_reachable_at REAL,
            reachable_until REAL,
            last_event_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE reach_history (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            reachable INTEGER NOT NULL CHECK (reachable IN (0, 1)),
            event_at REAL NOT NULL,
            received_at REAL NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX reach_history_dedupe ON reach_history (device, event_at, reachable)")
    db.execute("CREATE INDEX reach_history_received ON reach_history (received_at)")
    db.execute(
        """
        CREATE TABLE reach_monitors (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            kind TEXT NOT NULL,
            ident TEXT NOT NULL,
            request_id TEXT,
            monitor_id TEXT,
            state TEXT NOT NULL
                CHECK (state IN ('requested', 'active', 'failed', 'stop', 'stopped')),
            expires_at REAL NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX reach_monitors_device ON reach_monitors (device, state)")
    db.execute("CREATE INDEX reach_monitors_request ON reach_monitors (request_id)")
    db.execute("CREATE INDEX reach_monitors_monitor ON reach_monitors (monitor_id)")
    db.execute("CREATE INDEX reach_monitors_stop ON reach_monitors (id) WHERE state = 'stop'")


# -- watches -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchSpec:
    """What a ``watch`` command asks for one device; ``due_at`` is computed by the caller."""

    device: str
    kind: str
    ident: str
    channel: str
    alert_after: float | None
    wake_every: float | None
    missed_wakes: int
    due_at: float | None


@dataclass(frozen=True)
class Watch:
    device: str
    kind: str
    ident: str
    channel: str
    alert_after: float | None
    wake_every: float | None
    missed_wakes: int
    created_by: str
    created_at: float
    updated_at: float
    due_at: float | None
    monitor_retry_at: float | None
    monitor_error: str | None

    @property
    def condition(self) -> str:
        """The alert condition this watch raises: ``missed-wakes`` for sleepy devices."""
        return "missed-wakes" if self.wake_every is not None else "unreachable"


_WATCH_COLUMNS = (
    "device, kind, ident, channel, alert_after, wake_every, missed_wakes, created_by, created_at, "
    "updated_at, due_at, monitor_retry_at, monitor_error"
)


def _watch(row: Sequence[Any]) -> Watch:
    return Watch(*row)


def upsert_watches(db: Database, specs: Iterable[WatchSpec], *, by: str, now: float) -> tuple[int, int]:
    """Add watches or change the rule/channel of existing ones; returns (added, changed)."""
    added = changed = 0
    for spec in specs:
        cursor = db.execute(
            """
            INSERT INTO watches (device, kind, ident, channel, alert_after, wake_every, missed_wakes,
                                 created_by, created_at, updated_at, due_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (device) DO NOTHING
            """,
            [
                spec.device,
                spec.kind,
                spec.ident,
                spec.channel,
                spec.alert_after,
                spec.wake_every,
                spec.missed_wakes,
                by,
                now,
                now,
                spec.due_at,
            ],
        )
        if cursor.rowcount == 1:
            added += 1
            continue
        db.execute(
            """
            UPDATE watches SET channel = ?, alert_after = ?, wake_every = ?, missed_wakes = ?,
                updated_at = ?, due_at = ?
            WHERE device = ?
            """,
            [
                spec.channel,
                spec.alert_after,
                spec.wake_every,
                spec.missed_wakes,
                now,
                spec.due_at,
                spec.device,
            ],
        )
        changed += 1
    return added, changed


def remove_watches(db: Database, devices: Iterable[str]) -> list[str]:
    """Delete the watches of *devices*; returns the ones that were watched."""
    removed: list[str] = []
    for device in devices:
        if db.execute("DELETE FROM watches WHERE device = ?", [device]).rowcount == 1:
            removed.append(device)
    return removed


def get_watch(db: Database, device: str) -> Watch | None:
    row = db.execute(f"SELECT {_WATCH_COLUMNS} FROM watches WHERE device = ?", [device]).fetchone()
    return None if row is None else _watch(row)


def watched(db: Database, devices: Sequence[str]) -> dict[str, Watch]:
    """The watches of those of *devices* that are watched."""
    rows = select_in(db, f"SELECT {_WATCH_COLUMNS} FROM watches WHERE device IN ({{marks}})", devices)
    return {row[0]: _watch(row) for row in rows}


def list_watches(db: Database, *, channel: str | None = None, limit: int = 100) -> list[Watch]:
    where, args = ("WHERE channel = ?", [channel]) if channel else ("", [])
    rows = db.execute(
        f"SELECT {_WATCH_COLUMNS} FROM watches {where} ORDER BY channel, device LIMIT ?", [*args, limit]
    ).fetchall()
    return [_watch(r) for r in rows]


def watches_by(db: Database, user: str, *, limit: int = 100) -> list[Watch]:
    """Watches a person set up, newest first (the App Home lists them)."""
    rows = db.execute(
        f"SELECT {_WATCH_COLUMNS} FROM watches WHERE created_by = ? ORDER BY created_at DESC LIMIT ?",
        [user, limit],
    ).fetchall()
    return [_watch(r) for r in rows]


def count_watches(db: Database, *, channel: str | None = None) -> int:
    if channel:
        return int(db.execute("SELECT count(*) FROM watches WHERE channel = ?", [channel]).fetchone()[0])
    return int(db.execute("SELECT count(*) FROM watches").fetchone()[0])


def due_watches(db: Database, *, now: float, limit: int = 100_000) -> list[Watch]:
    """Watches whose rule fires at or before *now*, earliest first."""
    rows = db.execute(
        f"SELECT {_WATCH_COLUMNS} FROM watches WHERE due_at IS NOT NULL AND due_at <= ? "
        "ORDER BY due_at, device LIMIT ?",
        [now, limit],
    ).fetchall()
    return [_watch(r) for r in rows]


def set_due(db: Database, device: str, due_at: float | None) -> None:
    db.execute("UPDATE watches SET due_at = ? WHERE device = ?", [due_at, device])


@dataclass(frozen=True)
class ChannelCounts:
    channel: str
    watched: int
    unreachable: int
    sleepy: int


def channel_counts(db: Database) -> list[ChannelCounts]:
    """Per alert channel: devices watched, how many are unreachable now, how many are sleepy."""
    rows = db.execute(
        """
        SELECT w.channel, count(*), coalesce(sum(s.reachable = 0), 0), count(w.wake_every)
        FROM watches AS w LEFT JOIN reach_state AS s ON s.device = w.device
        GROUP BY w.channel ORDER BY w.channel
        """
    ).fetchall()
    return [ChannelCounts(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


# -- reachability state and history --------------------------------------------------------------


@dataclass(frozen=True)
class ReachState:
    device: str
    reachable: bool
    since: float
    last_reachable_at: float | None
    reachable_until: float | None
    last_event_at: float
    updated_at: float


@dataclass(frozen=True)
class Observation:
    """What :func:`record_observation` did: the state before and after, and whether it changed."""

    before: ReachState | None
    after: ReachState
    changed: bool
    stale: bool


_STATE_COLUMNS = "device, reachable, since, last_reachable_at, reachable_until, last_event_at, updated_at"


def _state(row: Sequence[Any]) -> ReachState:
    return ReachState(row[0], bool(row[1]), row[2], row[3], row[4], row[5], row[6])


def get_state(db: Database, device: str) -> ReachState | None:
    row = db.execute(f"SELECT {_STATE_COLUMNS} FROM reach_state WHERE device = ?", [device]).fetchone()
    return None if row is None else _state(row)


def states(db: Database, devices: Sequence[str]) -> dict[str, ReachState]:
    rows = select_in(db, f"SELECT {_STATE_COLUMNS} FROM reach_state WHERE device IN ({{marks}})", devices)
    return {row[0]: _state(row) for row in rows}


def record_observation(
    db: Database,
    device: str,
    *,
    reachable: bool,
    at: float,
    received_at: float,
    reachable_until: float | None = None,
    source: str = "",
) -> Observation:
    """Add one observation to the history and move the state forward.

    An observation older than the newest one already applied (callbacks can arrive out of
    order, and ThingSpace retries) goes into the history only: ``stale`` is True and the state
    is unchanged.
    """
    db.execute(
        """
        INSERT INTO reach_history (device, reachable, event_at, received_at, source)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (device, event_at, reachable) DO NOTHING
        """,
        [device, int(reachable), at, received_at, source],
    )
    before = get_state(db, device)
    if before is not None and at < before.last_event_at:
        return Observation(before, before, changed=False, stale=True)
    changed = before is None or before.reachable != reachable
    since = at if changed or before is None else before.since
    last_reachable = before.last_reachable_at if before else None
    if reachable or (before is not None and before.reachable):
        # reachable now, or it was reachable until this moment
        last_reachable = at
    until = reachable_until if reachable else None
    db.execute(
        f"""
        INSERT INTO reach_state ({_STATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (device) DO UPDATE SET reachable = excluded.reachable, since = excluded.since,
            last_reachable_at = excluded.last_reachable_at, reachable_until = excluded.reachable_until,
            last_event_at = excluded.last_event_at, updated_at = excluded.updated_at
        """,
        [device, int(reachable), since, last_reachable, until, at, received_at],
    )
    after = ReachState(device, reachable, since, last_reachable, until, at, received_at)
    return Observation(before, after, changed=changed, stale=False)


def history(db: Database, device: str, *, limit: int = 20) -> list[tuple[float, bool]]:
    """The newest observations of *device*: (event time, reachable), newest first."""
    rows = db.execute(
        "SELECT event_at, reachable FROM reach_history WHERE device = ? ORDER BY event_at DESC, id DESC LIMIT ?",
        [device, limit],
    ).fetchall()
    return [(float(r[0]), bool(r[1])) for r in rows]


def prune_history(db: Database, *, before: float) -> int:
    """Forget observations received before *before*; returns how many."""
    return db.execute("DELETE FROM reach_history WHERE received_at < ?", [before]).rowcount


# -- monitors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Monitor:
    id: int
    device: str
    kind: str
    ident: str
    request_id: str | None
    monitor_id: str | None
    state: str
    expires_at: float
    created_at: float
    updated_at: float
    error: str | None


_MONITOR_COLUMNS = (
    "id, device, kind, ident, request_id, monitor_id, state, expires_at, created_at, updated_at, error"
)


def monitors_of(db: Database, device: str) -> list[Monitor]:
    rows = db.execute(
        f"SELECT {_MONITOR_COLUMNS} FROM reach_monitors WHERE device = ? ORDER BY id", [device]
    ).fetchall()
    return [Monitor(*r) for r in rows]


def is_monitored(db: Database, device: str) -> bool:
    """Whether ThingSpace accepted a monitor for *device* that has not failed or been stopped."""
    row = db.execute(
        "SELECT 1 FROM reach_monitors WHERE device = ? AND request_id IS NOT NULL "
        "AND state IN ('requested', 'active') LIMIT 1",
        [device],
    ).fetchone()
    return row is not None


def monitor_candidates(db: Database, *, now: float, renew_before: float, limit: int) -> list[Watch]:
    """Watches that need a monitor started: none live, or the live one expires within
    *renew_before* seconds; skipping those waiting to retry after a failure."""
    rows = db.execute(
        f"""
        SELECT {_WATCH_COLUMNS} FROM watches AS w
        WHERE (w.monitor_retry_at IS NULL OR w.monitor_retry_at <= :now)
          AND NOT EXISTS (
            SELECT 1 FROM reach_monitors AS m
            WHERE m.device = w.device AND m.expires_at > :horizon
              AND (m.state = 'active' OR (m.state = 'requested' AND m.created_at > :unconfirmed))
          )
        ORDER BY w.kind, w.device LIMIT :limit
        """,
        {"now": now, "horizon": now + renew_before, "unconfirmed": now - CONFIRM_TIMEOUT, "limit": limit},
    ).fetchall()
    return [_watch(r) for r in rows]


def claim_monitor_starts(
    db: Database, watches: Sequence[Watch], *, expires_at: float, now: float
) -> list[int]:
    """Record monitors about to be requested (``requested``, no request id yet) so that a second
    runner does not request them too; returns the new row ids, in the order of *watches*."""
    ids: list[int] = []
    for w in watches:
        row = db.execute(
            """
            INSERT INTO reach_monitors (device, kind, ident, state, expires_at, created_at, updated_at)
            VALUES (?, ?, ?, 'requested', ?, ?, ?) RETURNING id
            """,
            [w.device, w.kind, w.ident, expires_at, now, now],
        ).fetchone()
        ids.append(int(row[0]))
    return ids


def release_monitor_claims(db: Database, row_ids: Sequence[int]) -> None:
    """The start call failed: forget the claimed rows."""
    for row_id in row_ids:
        db.execute("DELETE FROM reach_monitors WHERE id = ? AND request_id IS NULL", [row_id])


def mark_monitors_requested(db: Database, row_ids: Sequence[int], *, request_id: str, now: float) -> int:
    """ThingSpace accepted the start: store its request id, and mark the devices' older monitors
    (replaced by these) to be stopped. Returns how many older monitors are to stop."""
    replaced = 0
    for row_id in row_ids:
        found = db.execute(
            "UPDATE reach_monitors SET request_id = ?, updated_at = ? WHERE id = ? RETURNING device",
            [request_id, now, row_id],
        ).fetchone()
        if found is None:
            continue
        replaced += db.execute(
            """
            UPDATE reach_monitors SET state = 'stop', updated_at = ?
            WHERE device = ? AND id != ? AND state IN ('requested', 'active', 'failed')
            """,
            [now, found[0], row_id],
        ).rowcount
    return replaced


def set_monitor_retry(
    db: Database, devices: Iterable[str], *, retry_at: float | None, error: str | None
) -> None:
    for device in devices:
        db.execute(
            "UPDATE watches SET monitor_retry_at = ?, monitor_error = ? WHERE device = ?",
            [retry_at, error, device],
        )


def attach_monitor_id(
    db: Database, device: str, *, request_id: str, monitor_id: str, now: float
) -> Monitor | None:
    """A callback named the monitor watching *device*: confirm the row it belongs to.

    The row is found by the request that started it, else by the monitor id, else it is the
    device's newest row still waiting for an id (notifications carry their own request ids).
    """
    row = db.execute(
        f"SELECT {_MONITOR_COLUMNS} FROM reach_monitors WHERE device = ? AND request_id = ? "
        "ORDER BY id DESC LIMIT 1",
        [device, request_id],
    ).fetchone()
    if row is None and monitor_id:
        row = db.execute(
            f"SELECT {_MONITOR_COLUMNS} FROM reach_monitors WHERE device = ? AND monitor_id = ? "
            "ORDER BY id DESC LIMIT 1",
            [device, monitor_id],
        ).fetchone()
    if row is None and monitor_id:
        row = db.execute(
            f"SELECT {_MONITOR_COLUMNS} FROM reach_monitors WHERE device = ? AND monitor_id IS NULL "
            "AND state IN ('requested', 'stop') ORDER BY id DESC LIMIT 1",
            [device],
        ).fetchone()
    if row is None:
        return None
    monitor = Monitor(*row)
    state = "active" if monitor.state == "requested" else monitor.state
    if monitor.state == "stopped" and monitor.monitor_id is None:
        state = "stop"  # it turned up after we gave up on it: stop it now
    new_id = monitor_id or monitor.monitor_id
    db.execute(
        "UPDATE reach_monitors SET monitor_id = ?, state = ?, updated_at = ? WHERE id = ?",
        [new_id, state, now, monitor.id],
    )
    return Monitor(**{**monitor.__dict__, "monitor_id": new_id, "state": state, "updated_at": now})


def is_monitor_request(db: Database, request_id: str) -> bool:
    """Whether *request_id* answered one of our reachability monitor starts."""
    row = db.execute("SELECT 1 FROM reach_monitors WHERE request_id = ? LIMIT 1", [request_id]).fetchone()
    return row is not None


def fail_monitors(db: Database, device: str, *, request_id: str, error: str, now: float) -> int:
    """ThingSpace refused to monitor *device* (a failed DiagnosticsService callback)."""
    return db.execute(
        """
        UPDATE reach_monitors SET state = 'failed', error = ?, updated_at = ?
        WHERE device = ? AND request_id = ? AND state IN ('requested', 'active')
        """,
        [error, now, device, request_id],
    ).rowcount


def mark_stop(db: Database, devices: Iterable[str], *, now: float) -> int:
    """Unwatched: every live monitor of *devices* is to be stopped."""
    n = 0
    for device in devices:
        n += db.execute(
            """
            UPDATE reach_monitors SET state = 'stop', updated_at = ?
            WHERE device = ? AND state IN ('requested', 'active', 'failed')
            """,
            [now, device],
        ).rowcount
    return n


def devices_of_monitor_rows(db: Database, row_ids: Sequence[int]) -> list[str]:
    """The devices of the given monitor rows, sorted, each once."""
    rows = select_in(db, "SELECT DISTINCT device FROM reach_monitors WHERE id IN ({marks})", list(row_ids))
    return sorted({str(r[0]) for r in rows})


def claim_stops(db: Database, *, now: float, limit: int = 100) -> list[tuple[int, str]]:
    """Monitors to stop now, as (row id, monitor id), marked ``stopped`` at once so that a second
    runner does not stop them too (:func:`unclaim_stops` puts them back if the call fails).

    A monitor id still serving a live row (ThingSpace may give one id to every device of a
    request) is not stopped; rows waiting to stop (with or without an id) are given up once
    their expiry has passed: ThingSpace has ended them by then.
    """
    db.execute(
        """
        UPDATE reach_monitors SET state = 'stopped', error = 'expired at ThingSpace', updated_at = ?
        WHERE state IN ('stop', 'failed') AND expires_at <= ?
        """,
        [now, now],
    )
    rows = db.execute(
        """
        SELECT id, monitor_id FROM reach_monitors AS m
        WHERE state = 'stop' AND monitor_id IS NOT NULL
          AND NOT EXISTS (
            SELECT 1 FROM reach_monitors AS live
            WHERE live.monitor_id = m.monitor_id AND live.state IN ('requested', 'active')
          )
        ORDER BY id LIMIT ?
        """,
        [limit],
    ).fetchall()
    claimed = [(int(r[0]), str(r[1])) for r in rows]
    for row_id, _monitor in claimed:
        db.execute(
            "UPDATE reach_monitors SET state = 'stopped', error = NULL, updated_at = ? WHERE id = ?",
            [now, row_id],
        )
    return claimed


def unclaim_stops(db: Database, row_ids: Sequence[int], *, error: str, now: float) -> None:
    """The stop call failed: the rows wait to be stopped again."""
    for row_id in row_ids:
        db.execute(
            "UPDATE reach_monitors SET state = 'stop', error = ?, updated_at = ? WHERE id = ?",
            [error, now, row_id],
        )
