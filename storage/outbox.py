"""The Slack outbox: every message the bot posts, updates or answers is a row here first.

Callers enqueue inside the same :func:`storage.db.write` transaction as the state change that
caused the message, so either both commit or neither does; the relay (``bot.outbox``) sends the
rows later, paced and retried, and survives restarts.

Kinds of rows:

* ``post`` — ``chat.postMessage``; with ``thread_key`` it replies in the thread of another
  ``post`` row and is sent only after that one has a Slack ``ts``. A post whose payload has a
  ``file`` (:func:`enqueue_file`) is uploaded as a file instead, its text the fallback.
* ``update`` — ``chat.update`` of an earlier ``post`` row (``target_key``). At most one update per
  target is pending: a newer enqueue replaces the pending payload (newest state wins). An update
  of a post that has not been sent yet is folded into the post itself.
* ``ephemeral`` — ``chat.postEphemeral``.
* ``respond`` — a POST to a slash command's or a click's ``response_url``.

States: ``pending`` → ``sending`` (claimed, with a lease) → ``sent`` | ``dead`` (a permanent
error, or transient failures for longer than the relay's age limit) | ``superseded`` (an update
overtaken by a newer one). A ``sending`` row whose lease expired belongs to a relay that died; it is
claimed again and flagged ``uncertain`` (Slack may have accepted the first attempt), so the relay
can label the possible duplicate. A dead row can be sent again with :func:`requeue` (``tsbot outbox
requeue``) once its cause is fixed; its age then counts from the requeue (``requeued_at``).

Rows are grouped in *lanes* sent strictly in order, one at a time: a channel (posts and
ephemerals), a target message (its updates), a response_url. Times are wall-clock epoch seconds,
so they survive a restart or a reboot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import write

__all__ = [
    "KINDS",
    "OPEN_STATES",
    "STATES",
    "OutboxRow",
    "UnknownMessage",
    "claim",
    "dead_count",
    "dead_letters",
    "enqueue_ephemeral",
    "enqueue_file",
    "enqueue_post",
    "enqueue_respond",
    "enqueue_update",
    "get",
    "get_by_id",
    "lane_heads",
    "mark_dead",
    "mark_retry",
    "mark_sent",
    "message_ref",
    "migrations",
    "pending_count",
    "purge",
    "requeue",
    "requeue_all",
    "requeue_ids",
]

migrations = Migrations("tsbot.outbox")

KINDS = ("post", "update", "ephemeral", "respond")
STATES = ("pending", "sending", "sent", "dead", "superseded")
OPEN_STATES = ("pending", "sending")


@migrations()
def create_outbox(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('post', 'update', 'ephemeral', 'respond')),
            lane TEXT NOT NULL,
            channel TEXT NOT NULL DEFAULT '',
            thread_key TEXT,
            thread_ts TEXT,
            target_key TEXT,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sending', 'sent', 'dead', 'superseded')),
            attempts INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            uncertain INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            lease_until REAL,
            slack_channel TEXT,
            slack_ts TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL
        )
        """
    )
    # The head of each lane is its oldest open row.
    db.execute("CREATE INDEX outbox_open_lanes ON outbox (lane, id) WHERE state IN ('pending', 'sending')")
    # Coalescing: at most one pending update per target message.
    db.execute(
        "CREATE UNIQUE INDEX outbox_one_pending_update ON outbox (target_key) "
        "WHERE kind = 'update' AND state = 'pending'"
    )
    db.execute("CREATE INDEX outbox_dead ON outbox (id) WHERE state = 'dead'")


@migrations()
def add_requeued_at(db: Database) -> None:
    # When a dead row was last put back (tsbot outbox requeue): its retry age counts from then.
    db.execute("ALTER TABLE outbox ADD COLUMN requeued_at REAL")


class UnknownMessage(LookupError):
    """An update or thread reply names an outbox key that is not a ``post`` row."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    key: str
    kind: str
    lane: str
    channel: str
    thread_key: str | None
    thread_ts: str | None
    target_key: str | None
    payload_json: str = field(repr=False)
    state: str
    attempts: int
    failures: int
    uncertain: bool
    next_attempt_at: float
    lease_until: float | None
    slack_channel: str | None
    slack_ts: str | None
    last_error: str | None
    created_at: float
    sent_at: float | None
    requeued_at: float | None = None

    @property
    def age_from(self) -> float:
        """Where the relay's age limit counts from: the enqueue, or the last requeue."""
        return self.created_at if self.requeued_at is None else self.requeued_at

    @cached_property
    def payload(self) -> dict[str, Any]:
        """The message content (parsed on first use: the dispatcher looks at many rows' heads)."""
        parsed: dict[str, Any] = json.loads(self.payload_json)
        return parsed


_COLUMNS = (
    "id, key, kind, lane, channel, thread_key, thread_ts, target_key, payload, state, attempts, "
    "failures, uncertain, next_attempt_at, lease_until, slack_channel, slack_ts, last_error, "
    "created_at, sent_at, requeued_at"
)


def _row(values: Sequence[Any]) -> OutboxRow:
    (
        id_,
        key,
        kind,
        lane,
        channel,
        thread_key,
        thread_ts,
        target_key,
        payload,
        state,
        attempts,
        failures,
        uncertain,
        next_attempt_at,
        lease_until,
        slack_channel,
        slack_ts,
        last_error,
        created_at,
        sent_at,
        requeued_at,
    ) = values
    return OutboxRow(
        id=id_,
        key=key,
        kind=kind,
        lane=lane,
        channel=channel,
        thread_key=thread_key,
        thread_ts=thread_ts,
        target_key=target_key,
        payload_json=payload,
        state=state,
        attempts=attempts,
        failures=failures,
        uncertain=bool(uncertain),
        next_attempt_at=next_attempt_at,
        lease_until=lease_until,
        slack_channel=slack_channel,
        slack_ts=slack_ts,
        last_error=last_error,
        created_at=created_at,
        sent_at=sent_at,
        requeued_at=requeued_at,
    )


def _dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(dict(payload), separators=(",", ":"), ensure_ascii=False)


def _check_content(text: str, blocks: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    if blocks is None:
        if not text:
            raise ValueError("a message needs text or blocks")
        return None
    if isinstance(blocks, str | bytes) or not all(isinstance(b, Mapping) for b in blocks):
        raise TypeError("blocks must be a list of Block Kit objects (dicts)")
    if not text and not blocks:
        raise ValueError("a message needs text or blocks")
    return [dict(b) for b in blocks]


def _check_key(key: str, what: str = "key") -> None:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{what} must be a non-empty string")


def _insert(
    db: Database,
    *,
    key: str,
    kind: str,
    lane: str,
    channel: str,
    payload: Mapping[str, Any],
    thread_key: str | None = None,
    thread_ts: str | None = None,
    target_key: str | None = None,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    db.execute(
        """
        INSERT INTO outbox (key, kind, lane, channel, thread_key, thread_ts, target_key, payload,
                            next_attempt_at, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (key) DO NOTHING
        """,
        [key, kind, lane, channel, thread_key, thread_ts, target_key, _dumps(payload), now, now],
    )


def get(db: Database, key: str) -> OutboxRow | None:
    """The row with this key, or None."""
    found = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE key = ?", [key]).fetchone()
    return None if found is None else _row(found)


def get_by_id(db: Database, row_id: int) -> OutboxRow | None:
    """The row with this id, or None."""
    found = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", [row_id]).fetchone()
    return None if found is None else _row(found)


def _post_row(db: Database, key: str, role: str) -> OutboxRow:
    row = get(db, key)
    if row is None or row.kind != "post":
        what = "no outbox row" if row is None else f"a {row.kind!r} row, not a post"
        raise UnknownMessage(f"{role} {key!r} is {what}")
    return row


def enqueue_post(
    db: Database,
    *,
    key: str,
    channel: str,
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None = None,
    thread_key: str | None = None,
    thread_ts: str | None = None,
    reply_broadcast: bool = False,
) -> str:
    """Queue a ``chat.postMessage``; the same *key* twice is one row. Returns *key*.

    *thread_key* replies in the thread of the post enqueued under that key (same channel); the
    reply waits until that post has been sent. *thread_ts* replies to a message posted outside
    the outbox (a slash command's channel thread, say).
    """
    _check_key(key)
    _check_key(channel, "channel")
    checked = _check_content(text, blocks)
    if thread_key is not None and thread_ts is not None:
        raise ValueError("give thread_key (an outbox post) or thread_ts (a Slack ts), not both")
    with write(db):
        if thread_key is not None:
            parent = _post_row(db, thread_key, "thread_key")
            if parent.channel != channel:
                raise ValueError(
                    f"a thread reply goes to its parent's channel {parent.channel!r}, not {channel!r}"
                )
        payload = {"text": text, "blocks": checked, "reply_broadcast": bool(reply_broadcast)}
        _insert(
            db,
            key=key,
            kind="post",
            lane=f"chan:{channel}",
            channel=channel,
            payload=payload,
            thread_key=thread_key,
            thread_ts=thread_ts,
        )
    return key


def enqueue_file(
    db: Database,
    *,
    key: str,
    channel: str,
    thread_key: str,
    filename: str,
    title: str,
    data: bytes,
    fallback_text: str,
) -> str:
    """Queue a file (a chart) for the thread of the post enqueued under *thread_key*.

    The relay uploads it with ``files.getUploadURLExternal`` / ``files.completeUploadExternal``;
    where Slack will not take a file (no ``files:write``, a stand-in without files) it posts
    *fallback_text* in the thread instead. The row is a ``post`` whose payload carries the file
    (base64), so it is durable and paced like any post. Returns *key*.
    """
    _check_key(filename, "filename")
    if not data:
        raise ValueError("a file needs data")
    key = enqueue_post(db, key=key, channel=channel, text=fallback_text, thread_key=thread_key)
    with write(db):
        row = get(db, key)
        if row is not None and "file" not in row.payload:
            payload = {
                **row.payload,
                "file": {"name": filename, "title": title, "b64": base64.b64encode(data).decode("ascii")},
            }
            db.execute("UPDATE outbox SET payload = ? WHERE id = ?", [_dumps(payload), row.id])
    return key


#: where a message links to another post (``link_key``): replaced by that post's permalink when sent
LINK_SLOT = "{permalink}"


def enqueue_update(
    db: Database,
    *,
    target_key: str,
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None = None,
    link_key: str | None = None,
) -> str:
    """Queue a ``chat.update`` of the post enqueued under *target_key*; newest state wins.

    While the post itself is still pending, its content is replaced instead (no update call at
    all). Otherwise at most one update per target is pending: a newer enqueue replaces its
    payload. Returns the key of the row that now carries this content.

    *link_key*: the content links to the post queued under that key — the relay waits until it is
    sent and puts its permalink (``chat.getPermalink``) where the content says :data:`LINK_SLOT`.
    """
    _check_key(target_key, "target_key")
    checked = _check_content(text, blocks)
    content: dict[str, Any] = {"text": text, "blocks": checked}
    if link_key is not None:
        _check_key(link_key, "link_key")
        content["link_key"] = link_key
    with write(db):
        target = _post_row(db, target_key, "target_key")
        if target.state == "pending":
            folded = {**target.payload, **content}
            db.execute(
                "UPDATE outbox SET payload = ? WHERE id = ? AND state = 'pending'",
                [_dumps(folded), target.id],
            )
            db.execute(
                """
                UPDATE outbox SET state = 'superseded', last_error = 'superseded by a newer update'
                WHERE kind = 'update' AND target_key = ? AND state = 'pending'
                """,
                [target_key],
            )
            return target_key
        now = time.time()
        found = db.execute(
            """
            INSERT INTO outbox (key, kind, lane, channel, target_key, payload, next_attempt_at,
                                created_at)
            VALUES (?, 'update', ?, ?, ?, ?, ?, ?)
            ON CONFLICT (target_key) WHERE kind = 'update' AND state = 'pending'
            DO UPDATE SET payload = excluded.payload
            RETURNING key
            """,
            [
                f"{target_key}#update-{uuid.uuid4().hex[:12]}",
                f"msg:{target_key}",
                target.channel,
                target_key,
                _dumps(content),
                now,
                now,
            ],
        ).fetchone()
        return str(found[0])


def enqueue_ephemeral(
    db: Database,
    *,
    key: str,
    channel: str,
    user: str,
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None = None,
    thread_ts: str | None = None,
) -> str:
    """Queue a ``chat.postEphemeral`` to *user* in *channel*; paced with the channel's posts."""
    _check_key(key)
    _check_key(channel, "channel")
    _check_key(user, "user")
    checked = _check_content(text, blocks)
    with write(db):
        _insert(
            db,
            key=key,
            kind="ephemeral",
            lane=f"chan:{channel}",
            channel=channel,
            thread_ts=thread_ts,
            payload={"user": user, "text": text, "blocks": checked},
        )
    return key


RESPONSE_TYPES = ("ephemeral", "in_channel")


def enqueue_respond(
    db: Database,
    *,
    key: str,
    response_url: str,
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None = None,
    response_type: str = "ephemeral",
    replace_original: bool = False,
    delete_original: bool = False,
) -> str:
    """Queue a POST to a ``response_url``; rows for one URL go out in order."""
    _check_key(key)
    if not isinstance(response_url, str) or not response_url.startswith(("https://", "http://")):
        raise ValueError("response_url must be an http(s) URL")
    if response_type not in RESPONSE_TYPES:
        raise ValueError(f"response_type must be one of {', '.join(RESPONSE_TYPES)}, not {response_type!r}")
    checked = None if delete_original else _check_content(text, blocks)
    lane = "url:" + hashlib.sha256(response_url.encode()).hexdigest()[:16]
    payload = {
        "response_url": response_url,
        "text": text,
        "blocks": checked,
        "response_type": response_type,
        "replace_original": bool(replace_original),
        "delete_original": bool(delete_original),
    }
    with write(db):
        _insert(db, key=key, kind="respond", lane=lane, channel="", payload=payload)
    return key


def message_ref(db: Database, key: str) -> tuple[str, str] | None:
    """``(channel id, ts)`` of a sent post or ephemeral, else None (not sent yet, or failed)."""
    found = db.execute(
        "SELECT slack_channel, slack_ts FROM outbox WHERE key = ? AND state = 'sent' AND slack_ts IS NOT NULL",
        [key],
    ).fetchone()
    return None if found is None else (str(found[0]), str(found[1]))


def pending_count(db: Database) -> int:
    """Rows not yet sent, dead or superseded (``pending`` and ``sending``)."""
    return int(db.execute("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')").fetchone()[0])


def dead_letters(db: Database, *, limit: int = 100) -> list[OutboxRow]:
    """The newest dead rows, newest first."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE state = 'dead' ORDER BY id DESC LIMIT ?", [limit]
    ).fetchall()
    return [_row(r) for r in rows]


def lane_heads(db: Database) -> list[OutboxRow]:
    """The oldest open row of every lane, oldest lane first: the only rows a relay may send."""
    # A skip-scan over the open-lanes index: one seek per lane, however deep a lane's backlog.
    rows = db.execute(
        f"""
        WITH RECURSIVE lanes (lane) AS (
            SELECT min(lane) FROM outbox WHERE state IN ('pending', 'sending')
            UNION ALL
            SELECT (
                SELECT min(lane) FROM outbox
                WHERE state IN ('pending', 'sending') AND lane > lanes.lane
            ) FROM lanes WHERE lanes.lane IS NOT NULL
        )
        SELECT {_COLUMNS} FROM outbox WHERE id IN (
            SELECT (
                SELECT min(id) FROM outbox
                WHERE state IN ('pending', 'sending') AND lane = lanes.lane
            ) FROM lanes WHERE lanes.lane IS NOT NULL
        ) ORDER BY id
        """
    ).fetchall()
    return [_row(r) for r in rows]


def claim(db: Database, row_id: int, *, lease: float, now: float | None = None) -> OutboxRow | None:
    """Take a pending row (or a ``sending`` one whose lease expired) for one send attempt.

    A row taken back from an expired lease is marked ``uncertain``: the relay that held it may
    have reached Slack before it died. The claim is one conditional ``UPDATE … RETURNING``, so of
    two relays racing for a row exactly one gets it; and only the head of its lane (its oldest
    open row) can be claimed, so a lane stays in order even if a relay acts on a stale view.
    """
    now = time.time() if now is None else now
    with write(db):
        found = db.execute(
            f"""
            UPDATE outbox SET
                uncertain = CASE WHEN state = 'sending' THEN 1 ELSE uncertain END,
                state = 'sending', attempts = attempts + 1, lease_until = ?
            WHERE id = ? AND (state = 'pending' OR (state = 'sending' AND lease_until < ?))
              AND id = (
                SELECT min(head.id) FROM outbox AS head
                WHERE head.lane = outbox.lane AND head.state IN ('pending', 'sending')
              )
            RETURNING {_COLUMNS}
            """,
            [now + lease, row_id, now],
        ).fetchone()
    return None if found is None else _row(found)


def mark_sent(
    db: Database,
    row_id: int,
    *,
    slack_channel: str | None = None,
    slack_ts: str | None = None,
    thread_ts: str | None = None,
    now: float | None = None,
) -> None:
    """Slack accepted the row. *thread_ts* records the thread root a reply was posted in."""
    now = time.time() if now is None else now
    with write(db):
        db.execute(
            """
            UPDATE outbox SET state = 'sent', slack_channel = ?, slack_ts = ?,
                thread_ts = coalesce(?, thread_ts), lease_until = NULL, last_error = NULL, sent_at = ?
            WHERE id = ?
            """,
            [slack_channel, slack_ts, thread_ts, now, row_id],
        )


def mark_retry(
    db: Database,
    row_id: int,
    *,
    error: str,
    next_attempt_at: float,
    failed: bool = True,
    uncertain: bool = False,
) -> str:
    """Back to ``pending`` until *next_attempt_at*; returns the new state.

    *failed* counts the attempt towards the relay's limit (a rate-limit answer does not).
    *uncertain* records that Slack may have accepted it (a timeout after the request was sent).
    An update that a newer one has meanwhile replaced becomes ``superseded`` instead.
    """
    with write(db):
        found = db.execute(
            """
            UPDATE outbox SET
                state = CASE WHEN kind = 'update' AND EXISTS (
                    SELECT 1 FROM outbox AS newer
                    WHERE newer.kind = 'update' AND newer.target_key = outbox.target_key
                      AND newer.state = 'pending' AND newer.id != outbox.id
                ) THEN 'superseded' ELSE 'pending' END,
                failures = failures + ?, uncertain = max(uncertain, ?),
                last_error = ?, next_attempt_at = ?, lease_until = NULL
            WHERE id = ?
            RETURNING state
            """,
            [int(failed), int(uncertain), error, next_attempt_at, row_id],
        ).fetchone()
    return "" if found is None else str(found[0])


def mark_dead(db: Database, row_id: int, *, error: str) -> None:
    """Give up on the row: a permanent error, or too many failures."""
    with write(db):
        db.execute(
            "UPDATE outbox SET state = 'dead', last_error = ?, lease_until = NULL WHERE id = ?",
            [error, row_id],
        )


def dead_count(db: Database) -> int:
    """How many rows are dead (given up on)."""
    return int(db.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()[0])


def requeue(db: Database, key: str, *, now: float | None = None) -> bool:
    """Send a dead row again (after the cause was fixed); False if it is not dead.

    Its failures are forgotten and its age counts from now. A dead update is not revived while a
    newer update of the same message is pending. A dead post takes the content of the newest
    update that died waiting for it ("the message to update was never posted"), so the message
    is posted as it should read now, and those updates are marked ``superseded``.
    """
    now = time.time() if now is None else now
    with write(db):
        row = get(db, key)
        if row is None or row.state != "dead":
            return False
        if row.kind == "update":
            newer = db.execute(
                """
                SELECT 1 FROM outbox WHERE kind = 'update' AND target_key = ? AND state = 'pending'
                """,
                [row.target_key],
            ).fetchone()
            if newer is not None:
                return False
        payload = row.payload_json
        if row.kind == "post":
            updates = db.execute(
                """
                SELECT id, payload FROM outbox
                WHERE kind = 'update' AND target_key = ? AND state = 'dead' ORDER BY id DESC
                """,
                [key],
            ).fetchall()
            if updates:
                content = json.loads(updates[0][1])
                payload = _dumps(
                    {**row.payload, "text": content.get("text"), "blocks": content.get("blocks")}
                )
                db.conn.executemany(
                    "UPDATE outbox SET state = 'superseded', last_error = ? WHERE id = ?",
                    [("folded into the re-queued post", update_id) for update_id, _ in updates],
                )
        db.execute(
            """
            UPDATE outbox SET state = 'pending', payload = ?, failures = 0, next_attempt_at = ?,
                last_error = NULL, lease_until = NULL, requeued_at = ?
            WHERE id = ?
            """,
            [payload, now, now, row.id],
        )
    return True


def requeue_ids(db: Database, row_ids: Sequence[int], *, now: float | None = None) -> dict[int, str]:
    """:func:`requeue` by row id; for each id, ``requeued``, ``not dead`` or ``unknown``."""
    results: dict[int, str] = {}
    with write(db):
        for row_id in row_ids:
            found = db.execute("SELECT key, state FROM outbox WHERE id = ?", [row_id]).fetchone()
            if found is None:
                results[row_id] = "unknown"
            elif requeue(db, str(found[0]), now=now):
                results[row_id] = "requeued"
            elif found[1] == "dead":
                results[row_id] = "a newer update of its message is pending"
            else:
                results[row_id] = f"not dead ({found[1]})"
    return results


def requeue_all(db: Database, *, now: float | None = None) -> int:
    """Requeue every dead row, oldest first; returns how many went back to ``pending``."""
    with write(db):
        keys = [str(r[0]) for r in db.execute("SELECT key FROM outbox WHERE state = 'dead' ORDER BY id")]
        return sum(1 for key in keys if requeue(db, key, now=now))


def purge(db: Database, *, before: float) -> int:
    """Delete finished rows (sent, superseded, dead) created before *before*; returns the count.

    Their keys are forgotten: an enqueue with such a key afterwards sends again. A post that an
    open update or thread reply still refers to is kept.
    """
    with write(db):
        cursor = db.execute(
            """
            DELETE FROM outbox WHERE state IN ('sent', 'superseded', 'dead') AND created_at < ?
              AND NOT EXISTS (
                SELECT 1 FROM outbox AS child WHERE child.state IN ('pending', 'sending')
                  AND (child.thread_key = outbox.key OR child.target_key = outbox.key)
              )
            """,
            [before],
        )
    return cursor.rowcount
