"""ThingSpace requests the bot made for people, and the per-device outcome of each.

A row is written when ThingSpace accepts an asynchronous request (suspend, restore, SMS, cancel
location, reachability query): who asked, where the results must land (channel and the outbox
key of the in-channel message that is the results thread), why, and one row per device. Callbacks
settle the device rows; aggregation reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import select_in

__all__ = [
    "UNCERTAIN_PREFIX",
    "TrackedRequest",
    "actions_today",
    "add_request",
    "batch",
    "batch_total",
    "device_outcomes",
    "get_request",
    "migrations",
    "open_requests",
    "pending_for_device",
    "set_batch_total",
    "set_device_outcome",
    "set_request_state",
]

migrations = Migrations("tsbot.requests")

#: ``request_id`` prefix of a request whose changing call got no usable answer (a timeout, a 5xx):
#: ThingSpace gave no request id, and may or may not have carried it out
UNCERTAIN_PREFIX = "uncertain-"


@migrations()
def create_requests(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE ts_requests (
            request_id TEXT PRIMARY KEY,
            verb TEXT NOT NULL,
            actor TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread_key TEXT,
            response_url TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            device_count INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'accepted',
            detail TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            completed_at REAL
        )
        """
    )
    db.execute("CREATE INDEX ts_requests_open ON ts_requests (state, created_at)")
    db.execute(
        """
        CREATE TABLE ts_request_devices (
            request_id TEXT NOT NULL REFERENCES ts_requests (request_id),
            device TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            detail TEXT NOT NULL DEFAULT '{}',
            updated_at REAL NOT NULL,
            PRIMARY KEY (request_id, device)
        )
        """
    )
    db.execute("CREATE INDEX ts_request_devices_device ON ts_request_devices (device, updated_at)")


@migrations()
def index_requests_by_thread_and_time(db: Database) -> None:
    """The parts of a bulk action are found by their shared results thread (on every progress
    update of a batch), and today's actions by time: indexed, so a year of requests is not read
    for each."""
    db.execute("CREATE INDEX ts_requests_thread ON ts_requests (thread_key)")
    db.execute("CREATE INDEX ts_requests_created ON ts_requests (created_at)")


@dataclass(frozen=True)
class TrackedRequest:
    request_id: str
    verb: str
    actor: str
    channel: str
    thread_key: str | None
    response_url: str
    reason: str
    device_count: int
    state: str
    detail: dict[str, Any]
    created_at: float
    completed_at: float | None


_COLUMNS = (
    "request_id, verb, actor, channel, thread_key, response_url, reason, device_count, state, detail, "
    "created_at, completed_at"
)


def _row(r: Any) -> TrackedRequest:
    return TrackedRequest(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]), r[10], r[11]
    )


def add_request(
    db: Database,
    *,
    request_id: str,
    verb: str,
    actor: str,
    channel: str,
    devices: Sequence[str],
    thread_key: str | None,
    response_url: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    db.execute(
        f"""
        INSERT INTO ts_requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?, ?, NULL)
        ON CONFLICT (request_id) DO NOTHING
        """,
        [
            request_id,
            verb,
            actor,
            channel,
            thread_key,
            response_url,
            reason,
            len(devices),
            json.dumps(detail or {}),
            now,
        ],
    )
    db.conn.executemany(
        """
        INSERT INTO ts_request_devices (request_id, device, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (request_id, device) DO NOTHING
        """,
        [(request_id, device, now) for device in devices],
    )


def get_request(db: Database, request_id: str) -> TrackedRequest | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM ts_requests WHERE request_id = ?", [request_id]).fetchone()
    return _row(row) if row else None


def batch(db: Database, tracked: TrackedRequest) -> list[TrackedRequest]:
    """The requests one bulk action was split into (ThingSpace takes at most 10,000 lines per
    request): those sharing *tracked*'s results thread and ``batch`` detail, in the order sent;
    just ``[tracked]`` for a request on its own."""
    batch_id = tracked.detail.get("batch")
    if not batch_id or not tracked.thread_key:
        return [tracked]
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM ts_requests WHERE thread_key = ? ORDER BY created_at, rowid",
        [tracked.thread_key],
    ).fetchall()
    return [r for r in map(_row, rows) if r.detail.get("batch") == batch_id] or [tracked]


def batch_total(parts: Sequence[TrackedRequest]) -> int:
    """How many lines a batch's progress counts to: what its first request says the whole action
    sends (``batch_total``), else the lines of the requests recorded."""
    declared = parts[0].detail.get("batch_total") if parts else None
    return int(declared) if isinstance(declared, int) else sum(p.device_count for p in parts)


def set_batch_total(db: Database, thread_key: str, total: int) -> None:
    """A bulk action stopped early: its progress counts only the lines that were sent."""
    db.execute(
        "UPDATE ts_requests SET detail = json_set(detail, '$.batch_total', ?) "
        "WHERE thread_key = ? AND json_extract(detail, '$.batch') IS NOT NULL",
        [total, thread_key],
    )


def open_requests(db: Database, *, older_than: float | None = None) -> list[TrackedRequest]:
    sql = f"SELECT {_COLUMNS} FROM ts_requests WHERE state = 'accepted'"
    params: list[Any] = []
    if older_than is not None:
        sql += " AND created_at < ?"
        params.append(older_than)
    return [_row(r) for r in db.execute(sql + " ORDER BY created_at", params).fetchall()]


def set_request_state(db: Database, request_id: str, state: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    db.execute(
        "UPDATE ts_requests SET state = ?, completed_at = ? WHERE request_id = ?", [state, now, request_id]
    )


def set_device_outcome(
    db: Database,
    request_id: str,
    device: str,
    status: str,
    detail: dict[str, Any] | None = None,
    *,
    now: float | None = None,
) -> bool:
    """Record a device's outcome; returns False if the device is not part of the request."""
    now = time.time() if now is None else now
    cursor = db.execute(
        "UPDATE ts_request_devices SET status = ?, detail = ?, updated_at = ? WHERE request_id = ? AND device = ?",
        [status, json.dumps(detail or {}), now, request_id, device],
    )
    return cursor.rowcount == 1


def device_outcomes(db: Database, request_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = db.execute(
        "SELECT device, status, detail FROM ts_request_devices WHERE request_id = ? ORDER BY device",
        [request_id],
    ).fetchall()
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


def pending_for_device(
    db: Database, device: str, verbs: Sequence[str], *, limit: int = 10
) -> list[tuple[str, str, str, float]]:
    """(request id, verb, actor, created_at) of the device's requests still waiting for a result."""
    marks = ",".join("?" * len(verbs))
    rows = db.execute(
        f"""
        SELECT r.request_id, r.verb, r.actor, r.created_at
        FROM ts_request_devices d JOIN ts_requests r USING (request_id)
        WHERE d.device = ? AND d.status = 'pending' AND r.state = 'accepted' AND r.verb IN ({marks})
        ORDER BY r.created_at DESC LIMIT ?
        """,
        [device, *verbs, limit],
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


#: above this many devices :func:`actions_today` reads all of today's requests once
_IN_LIST_MAX = 2000


def actions_today(db: Database, devices: Sequence[str], *, day_start: float) -> dict[str, int]:
    """How many provisioning requests (suspend/resume) the bot sent per device since *day_start*.

    A long list (a ``group:`` target) is answered from one read of today's requests rather than
    hundreds of ``IN`` lists: the lines acted on today are few next to a whole group."""
    if len(devices) <= _IN_LIST_MAX:
        rows: Iterable[tuple[Any, ...]] = select_in(
            db,
            """
            SELECT d.device, count(*) FROM ts_request_devices d JOIN ts_requests r USING (request_id)
            WHERE d.device IN ({marks}) AND r.verb IN ('suspend', 'resume') AND r.created_at >= ?
              AND d.status != 'refused'
            GROUP BY d.device
            """,
            devices,
            after=[day_start],
        )
        return {r[0]: int(r[1]) for r in rows}
    wanted = set(devices)
    rows = db.execute(
        """
        SELECT d.device, count(*) FROM ts_requests r CROSS JOIN ts_request_devices d USING (request_id)
        WHERE r.verb IN ('suspend', 'resume') AND r.created_at >= ? AND d.status != 'refused'
        GROUP BY d.device
        """,  # CROSS JOIN: today's requests first (by time), then only their lines
        [day_start],
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows if r[0] in wanted}
