"""Alerts about watched devices, the grouped cards that collect them, and the daily digests sent.

An alert is one (device, condition) problem — ``unreachable`` (longer than the watch allows) or
``missed-wakes`` (a sleepy device missed more expected wakes than allowed). Its states:

``firing`` → ``acknowledged`` (someone owns it) / ``snoozed`` (quiet until ``snoozed_until``,
then ``firing`` again) → ``resolved`` (recovered, or unwatched).

The unique index ``alerts_open`` — one alert per (device, condition) that is not resolved — is the
dedupe key: a second raise is ``ON CONFLICT DO NOTHING``. A device that goes down again soon
after recovering gets its last alert *reopened* (same card, updated in place) rather than a new
one; see ``reopen``.

``card_key`` is the outbox key of the Slack message showing the alert: its own card, or the
card of the group (``alert_groups``) it belongs to when many devices of one channel went down
within a short window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import select_in

__all__ = [
    "CONDITIONS",
    "OPEN_STATES",
    "STATES",
    "Alert",
    "AlertGroup",
    "Outage",
    "acknowledge",
    "add_to_group",
    "claim_digest",
    "clear_recovering",
    "count_open",
    "create_group",
    "due_recoveries",
    "expire_snoozes",
    "get",
    "get_group",
    "group_members",
    "insert_alert",
    "last_alert",
    "longest_outage",
    "migrations",
    "open_alerts",
    "open_for_devices",
    "open_group",
    "raised_count",
    "recent_ungrouped",
    "reopen",
    "replace_card_key",
    "resolve",
    "resolved_count",
    "set_card",
    "set_recovering",
    "snooze",
]

migrations = Migrations("tsbot.alerts")

CONDITIONS = ("unreachable", "missed-wakes")
STATES = ("firing", "acknowledged", "snoozed", "resolved")
OPEN_STATES = ("firing", "acknowledged", "snoozed")


@migrations()
def create_alerts(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE alert_groups (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            card_key TEXT NOT NULL UNIQUE,
            opened_at REAL NOT NULL,
            last_added_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX alert_groups_channel ON alert_groups (channel, last_added_at)")
    db.execute(
        """
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            condition TEXT NOT NULL CHECK (condition IN ('unreachable', 'missed-wakes')),
            channel TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'firing'
                CHECK (state IN ('firing', 'acknowledged', 'snoozed', 'resolved')),
            down_since REAL NOT NULL,
            raised_at REAL NOT NULL,
            card_key TEXT,
            group_id INTEGER REFERENCES alert_groups (id),
            acked_by TEXT,
            acked_at REAL,
            snoozed_by TEXT,
            snoozed_until REAL,
            recovering_since REAL,
            resolved_at REAL,
            resolved_how TEXT,
            recovered_after REAL,
            reopened INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX alerts_open ON alerts (device, condition) WHERE state != 'resolved'")
    db.execute("CREATE INDEX alerts_device ON alerts (device, condition, id)")
    db.execute("CREATE INDEX alerts_channel_raised ON alerts (channel, raised_at)")
    db.execute("CREATE INDEX alerts_channel_resolved ON alerts (channel, resolved_at)")
    db.execute("CREATE INDEX alerts_group ON alerts (group_id)")
    db.execute("CREATE INDEX alerts_snoozed ON alerts (snoozed_until) WHERE state = 'snoozed'")
    db.execute(
        "CREATE INDEX alerts_recovering ON alerts (recovering_since) "
        "WHERE recovering_since IS NOT NULL AND state != 'resolved'"
    )
    db.execute(
        """
        CREATE TABLE alert_digests (
            channel TEXT NOT NULL,
            day TEXT NOT NULL,
            sent_at REAL NOT NULL,
            PRIMARY KEY (channel, day)
        )
        """
    )


@migrations()
def add_alert_events(db: Database) -> None:
    """What happened to an alert, in order (acknowledged, snoozed, snooze ended, recovered, down
    again), so its card can keep every step instead of only the latest state."""
    db.execute("ALTER TABLE alerts ADD COLUMN events TEXT NOT NULL DEFAULT '[]'")


@dataclass(frozen=True)
class Alert:
    id: int
    device: str
    condition: str
    channel: str
    state: str
    down_since: float
    raised_at: float
    card_key: str | None
    group_id: int | None
    acked_by: str | None
    acked_at: float | None
    snoozed_by: str | None
    snoozed_until: float | None
    recovering_since: float | None
    resolved_at: float | None
    resolved_how: str | None
    recovered_after: float | None
    reopened: int
    updated_at: float
    #: JSON list of ``{"kind", "at", "by"?, "hours"?}``: what happened, oldest first
    events_json: str = "[]"

    @property
    def events(self) -> list[dict[str, Any]]:
        try:
            found = json.loads(self.events_json)
        except ValueError:
            return []
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


@dataclass(frozen=True)
class AlertGroup:
    id: int
    channel: str
    card_key: str
    opened_at: float
    last_added_at: float


_COLUMNS = (
    "id, device, condition, channel, state, down_since, raised_at, card_key, group_id, acked_by, acked_at, "
    "snoozed_by, snoozed_until, recovering_since, resolved_at, resolved_how, recovered_after, reopened, "
    "updated_at, events"
)


def _event(kind: str, by: str | None = None, **extra: Any) -> str:
    """SQL appending one event to ``events`` (parameters: at)."""
    return json.dumps({"kind": kind, **({"by": by} if by else {}), **extra})


_APPEND = "events = json_insert(events, '$[#]', json_set(json(?), '$.at', ?))"
_GROUP_COLUMNS = "id, channel, card_key, opened_at, last_added_at"


def _alert(row: Sequence[Any]) -> Alert:
    return Alert(*row)


def _many(db: Database, sql: str, args: Sequence[Any] | dict[str, Any]) -> list[Alert]:
    return [_alert(r) for r in db.execute(sql, args).fetchall()]


def get(db: Database, alert_id: int) -> Alert | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", [alert_id]).fetchone()
    return None if row is None else _alert(row)


def open_alerts(db: Database, *, channel: str | None = None, limit: int = 1000) -> list[Alert]:
    """Alerts not resolved, oldest first (optionally of one channel)."""
    where = "state != 'resolved'" + (" AND channel = ?" if channel else "")
    args: list[Any] = [channel] if channel else []
    return _many(db, f"SELECT {_COLUMNS} FROM alerts WHERE {where} ORDER BY id LIMIT ?", [*args, limit])


def open_for_devices(db: Database, devices: Sequence[str]) -> dict[str, list[Alert]]:
    """Open alerts of *devices*, by device."""
    found: dict[str, list[Alert]] = {}
    sql = f"SELECT {_COLUMNS} FROM alerts WHERE state != 'resolved' AND device IN ({{marks}})"
    for row in select_in(db, sql, devices):
        alert = _alert(row)
        found.setdefault(alert.device, []).append(alert)
    return found


def count_open(db: Database, *, state: str | None = None, channel: str | None = None) -> int:
    """Alerts not resolved (or in one *state*), optionally of one channel."""
    where = ["state = ?" if state else "state != 'resolved'"]
    args: list[Any] = [state] if state else []
    if channel:
        where.append("channel = ?")
        args.append(channel)
    sql = f"SELECT count(*) FROM alerts WHERE {' AND '.join(where)}"
    return int(db.execute(sql, args).fetchone()[0])


def last_alert(db: Database, device: str, condition: str) -> Alert | None:
    """The newest alert of (device, condition), open or resolved."""
    row = db.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE device = ? AND condition = ? ORDER BY id DESC LIMIT 1",
        [device, condition],
    ).fetchone()
    return None if row is None else _alert(row)


def insert_alert(
    db: Database,
    *,
    device: str,
    condition: str,
    channel: str,
    down_since: float,
    now: float,
    group_id: int | None = None,
) -> Alert | None:
    """Raise an alert; None when (device, condition) already has an open one (the dedupe key)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown alert condition {condition!r}")
    row = db.execute(
        f"""
        INSERT INTO alerts (device, condition, channel, down_since, raised_at, group_id, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (device, condition) WHERE state != 'resolved' DO NOTHING
        RETURNING {_COLUMNS}
        """,
        [device, condition, channel, down_since, now, group_id, now],
    ).fetchone()
    return None if row is None else _alert(row)


def set_card(db: Database, alert_ids: Iterable[int], card_key: str, *, group_id: int | None = None) -> None:
    for alert_id in alert_ids:
        db.execute(
            "UPDATE alerts SET card_key = ?, group_id = coalesce(?, group_id) WHERE id = ?",
            [card_key, group_id, alert_id],
        )


def reopen(db: Database, alert_id: int, *, down_since: float, now: float) -> Alert | None:
    """Bring a resolved alert back to ``firing`` (the device went down again soon after)."""
    row = db.execute(
        f"""
        UPDATE alerts SET state = 'firing', down_since = ?, reopened = reopened + 1, resolved_at = NULL,
            resolved_how = NULL, recovered_after = NULL, recovering_since = NULL, acked_by = NULL,
            acked_at = NULL, snoozed_by = NULL, snoozed_until = NULL, updated_at = ?, {_APPEND}
        WHERE id = ? AND state = 'resolved'
          AND NOT EXISTS (
            SELECT 1 FROM alerts AS other WHERE other.device = alerts.device
              AND other.condition = alerts.condition AND other.state != 'resolved'
          )
        RETURNING {_COLUMNS}
        """,
        [down_since, now, _event("down-again"), down_since, alert_id],
    ).fetchone()
    return None if row is None else _alert(row)


def acknowledge(db: Database, alert_id: int, *, by: str, now: float) -> Alert | None:
    """Someone owns it: ``firing``/``snoozed`` → ``acknowledged``; None if it was not open or
    already acknowledged."""
    row = db.execute(
        f"""
        UPDATE alerts SET state = 'acknowledged', acked_by = ?, acked_at = ?, snoozed_by = NULL,
            snoozed_until = NULL, updated_at = ?, {_APPEND}
        WHERE id = ? AND state IN ('firing', 'snoozed')
        RETURNING {_COLUMNS}
        """,
        [by, now, now, _event("ack", by), now, alert_id],
    ).fetchone()
    return None if row is None else _alert(row)


def snooze(db: Database, alert_id: int, *, by: str, until: float, now: float) -> Alert | None:
    """Quiet until *until*; None if the alert is resolved."""
    if until <= now:
        raise ValueError("a snooze must end in the future")
    row = db.execute(
        f"""
        UPDATE alerts SET state = 'snoozed', snoozed_by = ?, snoozed_until = ?, updated_at = ?, {_APPEND}
        WHERE id = ? AND state != 'resolved'
        RETURNING {_COLUMNS}
        """,
        [by, until, now, _event("snooze", by, until=until), now, alert_id],
    ).fetchone()
    return None if row is None else _alert(row)


def expire_snoozes(db: Database, *, now: float) -> list[Alert]:
    """Snoozes that ended at or before *now* go back to ``firing``; returns those alerts."""
    return _many(
        db,
        f"""
        UPDATE alerts SET state = 'firing',
            updated_at = :now,
            events = json_insert(events, '$[#]', json_object('kind', 'snooze-end', 'at', :now))
        WHERE state = 'snoozed' AND snoozed_until <= :now
        RETURNING {_COLUMNS}
        """,
        {"now": now},
    )


def set_recovering(db: Database, device: str, *, since: float, now: float) -> list[Alert]:
    """The device is reachable again since *since*: its open alerts start counting towards
    recovery (unless they already are)."""
    return _many(
        db,
        f"""
        UPDATE alerts SET recovering_since = ?, updated_at = ?
        WHERE device = ? AND state != 'resolved' AND recovering_since IS NULL
        RETURNING {_COLUMNS}
        """,
        [since, now, device],
    )


def clear_recovering(db: Database, device: str, *, condition: str, now: float) -> list[Alert]:
    """The device went down again before counting as recovered (flapping)."""
    return _many(
        db,
        f"""
        UPDATE alerts SET recovering_since = NULL, updated_at = ?
        WHERE device = ? AND condition = ? AND state != 'resolved' AND recovering_since IS NOT NULL
        RETURNING {_COLUMNS}
        """,
        [now, device, condition],
    )


def due_recoveries(db: Database, *, reachable_since_before: float) -> list[Alert]:
    """Open alerts whose device has been reachable since before the given time."""
    return _many(
        db,
        f"""
        SELECT {_COLUMNS} FROM alerts
        WHERE recovering_since IS NOT NULL AND state != 'resolved' AND recovering_since <= ?
        ORDER BY recovering_since, id
        """,
        [reachable_since_before],
    )


def resolve(
    db: Database, alert_id: int, *, how: str, at: float, now: float, by: str | None = None
) -> Alert | None:
    """Close the alert: ``how`` is ``recovered`` (at the moment it came back) or ``unwatched``."""
    row = db.execute(
        f"""
        UPDATE alerts SET state = 'resolved', resolved_how = ?, resolved_at = ?,
            recovered_after = CASE WHEN ? = 'recovered' THEN max(? - down_since, 0) END,
            recovering_since = NULL, snoozed_until = NULL, updated_at = ?, {_APPEND}
        WHERE id = ? AND state != 'resolved'
        RETURNING {_COLUMNS}
        """,
        [how, at, how, at, now, _event(how, by), at, alert_id],
    ).fetchone()
    return None if row is None else _alert(row)


def replace_card_key(db: Database, old: str, new: str) -> None:
    """The card's message is gone from the outbox (purged): alerts and groups use *new*."""
    db.execute("UPDATE alerts SET card_key = ? WHERE card_key = ?", [new, old])
    db.execute("UPDATE alert_groups SET card_key = ? WHERE card_key = ?", [new, old])


# -- groups --------------------------------------------------------------------------------------


def create_group(db: Database, *, channel: str, now: float) -> AlertGroup:
    """A new group card for *channel*; its outbox key is ``alert-group:<id>``."""
    cursor = db.execute(
        "INSERT INTO alert_groups (channel, card_key, opened_at, last_added_at) VALUES (?, ?, ?, ?)",
        [channel, f"alert-group:new:{channel}:{now}", now, now],
    )
    group_id = int(cursor.lastrowid or 0)
    db.execute("UPDATE alert_groups SET card_key = ? WHERE id = ?", [f"alert-group:{group_id}", group_id])
    return AlertGroup(group_id, channel, f"alert-group:{group_id}", now, now)


def get_group(db: Database, group_id: int) -> AlertGroup | None:
    row = db.execute(f"SELECT {_GROUP_COLUMNS} FROM alert_groups WHERE id = ?", [group_id]).fetchone()
    return None if row is None else AlertGroup(*row)


def open_group(db: Database, *, channel: str, added_since: float) -> AlertGroup | None:
    """The channel's newest group that took a member at or after *added_since* and still has an
    open member: new alerts join it instead of opening cards of their own."""
    row = db.execute(
        f"""
        SELECT {_GROUP_COLUMNS} FROM alert_groups AS g
        WHERE channel = ? AND last_added_at >= ?
          AND EXISTS (SELECT 1 FROM alerts WHERE group_id = g.id AND state != 'resolved')
        ORDER BY id DESC LIMIT 1
        """,
        [channel, added_since],
    ).fetchone()
    return None if row is None else AlertGroup(*row)


def add_to_group(db: Database, group: AlertGroup, alert_ids: Iterable[int], *, now: float) -> None:
    for alert_id in alert_ids:
        db.execute(
            "UPDATE alerts SET group_id = ?, card_key = ?, updated_at = ? WHERE id = ?",
            [group.id, group.card_key, now, alert_id],
        )
    db.execute("UPDATE alert_groups SET last_added_at = ? WHERE id = ?", [now, group.id])


def group_members(db: Database, group_id: int) -> list[Alert]:
    return _many(db, f"SELECT {_COLUMNS} FROM alerts WHERE group_id = ? ORDER BY id", [group_id])


def recent_ungrouped(db: Database, *, channel: str, raised_since: float) -> list[Alert]:
    """Open alerts of the channel with a card of their own, raised at or after *raised_since*."""
    return _many(
        db,
        f"""
        SELECT {_COLUMNS} FROM alerts
        WHERE channel = ? AND raised_at >= ? AND group_id IS NULL AND state != 'resolved'
        ORDER BY id
        """,
        [channel, raised_since],
    )


# -- digest figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outage:
    device: str
    seconds: float
    ongoing: bool


def raised_count(db: Database, *, channel: str, start: float, end: float) -> int:
    return int(
        db.execute(
            "SELECT count(*) FROM alerts WHERE channel = ? AND raised_at >= ? AND raised_at < ?",
            [channel, start, end],
        ).fetchone()[0]
    )


def resolved_count(db: Database, *, channel: str, start: float, end: float) -> int:
    return int(
        db.execute(
            "SELECT count(*) FROM alerts WHERE channel = ? AND resolved_how = 'recovered' "
            "AND resolved_at >= ? AND resolved_at < ?",
            [channel, start, end],
        ).fetchone()[0]
    )


def longest_outage(db: Database, *, channel: str, start: float, end: float) -> Outage | None:
    """The longest outage behind an alert of the channel that was open at some time in
    [start, end): ongoing ones count up to *end*."""
    row = db.execute(
        """
        SELECT device, max(coalesce(resolved_at, :end) - down_since) AS span, resolved_at IS NULL
        FROM alerts
        WHERE channel = :channel AND raised_at < :end
          AND (resolved_at IS NULL OR resolved_at >= :start)
          AND coalesce(resolved_how, 'recovered') = 'recovered'
        """,
        {"channel": channel, "start": start, "end": end},
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return Outage(str(row[0]), float(row[1]), bool(row[2]))


def claim_digest(db: Database, *, channel: str, day: str, now: float) -> bool:
    """Record that the digest of *day* goes to *channel*; False if it already went."""
    cursor = db.execute(
        "INSERT INTO alert_digests (channel, day, sent_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [channel, day, now],
    )
    return cursor.rowcount == 1
