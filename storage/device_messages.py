"""What devices sent: device-originated SMS and NIDD data, as ThingSpace delivered them.

One row per message, written by the inbox worker (or the MO inbox poller) in the transaction that
also posts it to Slack. ``dedupe`` is unique: a message delivered twice (a callback retried, the
same message read from the inbox again) is one row, so it is posted once. ``body`` is the text of
an SMS, or the data of a NIDD message as hex. ``thread_request`` names the bot's request (the
last SMS or NIDD it sent the device) in whose thread it was posted, if any.

What the bot sent is in ``ts_requests`` (:mod:`storage.requests`); ``sms-history`` reads both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = [
    "DeviceMessage",
    "SentMessage",
    "add",
    "last_sent",
    "migrations",
    "received",
    "sent",
]

migrations = Migrations("tsbot.device_messages")

#: where a message came by
SOURCES = ("sms", "nidd")


@migrations()
def create_device_messages(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE device_messages (
            id INTEGER PRIMARY KEY,
            dedupe TEXT NOT NULL UNIQUE,
            device TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('sms', 'nidd')),
            body TEXT NOT NULL,
            sent_at REAL,
            received_at REAL NOT NULL,
            thread_request TEXT,
            channel TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE INDEX device_messages_device ON device_messages (device, received_at)")


@dataclass(frozen=True)
class DeviceMessage:
    id: int
    device: str
    source: str
    body: str
    sent_at: float | None
    received_at: float
    thread_request: str | None
    channel: str


@dataclass(frozen=True)
class SentMessage:
    """An SMS or NIDD request of the bot to one device, with that device's outcome."""

    request_id: str
    verb: str
    actor: str
    channel: str
    thread_key: str | None
    text: str
    status: str
    created_at: float


def add(
    db: Database,
    *,
    dedupe: str,
    device: str,
    source: str,
    body: str,
    sent_at: float | None,
    thread_request: str | None,
    channel: str,
    now: float | None = None,
) -> int | None:
    """Record a message; returns its id, or None when the same message was recorded before."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    now = time.time() if now is None else now
    cursor = db.execute(
        """
        INSERT INTO device_messages (dedupe, device, source, body, sent_at, received_at, thread_request, channel)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (dedupe) DO NOTHING
        """,
        [dedupe, device, source, body, sent_at, now, thread_request, channel],
    )
    return int(cursor.lastrowid) if cursor.rowcount == 1 and cursor.lastrowid is not None else None


def received(db: Database, device: str, *, since: float, limit: int = 50) -> list[DeviceMessage]:
    """What *device* sent since *since*, newest first."""
    rows = db.execute(
        """
        SELECT id, device, source, body, sent_at, received_at, thread_request, channel
        FROM device_messages WHERE device = ? AND received_at >= ?
        ORDER BY received_at DESC, id DESC LIMIT ?
        """,
        [device, since, limit],
    ).fetchall()
    return [DeviceMessage(*r) for r in rows]


def sent(
    db: Database, device: str, verbs: Sequence[str], *, since: float, limit: int = 50
) -> list[SentMessage]:
    """The bot's *verbs* requests (``sms``, ``nidd``) to *device* since *since*, newest first."""
    marks = ",".join("?" * len(verbs))
    rows = db.execute(
        f"""
        SELECT r.request_id, r.verb, r.actor, r.channel, r.thread_key,
               coalesce(json_extract(r.detail, '$.text'), ''), d.status, r.created_at
        FROM ts_request_devices d JOIN ts_requests r USING (request_id)
        WHERE d.device = ? AND r.verb IN ({marks}) AND r.created_at >= ?
        ORDER BY r.created_at DESC LIMIT ?
        """,
        [device, *verbs, since, limit],
    ).fetchall()
    return [SentMessage(r[0], r[1], r[2], r[3], r[4], str(r[5]), r[6], r[7]) for r in rows]


def last_sent(db: Database, device: str, verbs: Sequence[str], *, since: float) -> SentMessage | None:
    """The newest of the bot's *verbs* requests to *device* made since *since*, if any."""
    found = sent(db, device, verbs, since=since, limit=1)
    return found[0] if found else None
