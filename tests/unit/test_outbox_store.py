"""storage.outbox: enqueueing, coalescing, claiming and finishing rows, on an in-memory SQLite database."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlite_utils import Database

from storage import outbox
from storage.db import write
from storage.schema import open_database


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.conn.close()


def _count(db: Database, where: str = "1", params: list[object] | None = None) -> int:
    return int(db.execute(f"SELECT count(*) FROM outbox WHERE {where}", params or []).fetchone()[0])


def _send(db: Database, key: str, ts: str = "1700000000.000100", channel: str = "C0OPS") -> None:
    row = outbox.get(db, key)
    assert row is not None
    claimed = outbox.claim(db, row.id, lease=30)
    assert claimed is not None
    outbox.mark_sent(db, row.id, slack_channel=channel, slack_ts=ts)


def test_same_key_twice_is_one_row(db: Database) -> None:
    """Enqueueing a post twice under one key stores one row and keeps the first content."""
    assert outbox.enqueue_post(db, key="k1", channel="C0OPS", text="first") == "k1"
    assert outbox.enqueue_post(db, key="k1", channel="C0OPS", text="second") == "k1"
    assert _count(db) == 1
    row = outbox.get(db, "k1")
    assert row is not None and row.payload["text"] == "first" and row.state == "pending"


def test_enqueue_commits_with_the_callers_transaction(db: Database) -> None:
    """A post enqueued inside a transaction that fails is rolled back with it."""
    with pytest.raises(RuntimeError), write(db):
        outbox.enqueue_post(db, key="k1", channel="C0OPS", text="hello")
        raise RuntimeError("the caller's state change failed")
    assert _count(db) == 0
    with write(db):
        outbox.enqueue_post(db, key="k1", channel="C0OPS", text="hello")
        outbox.enqueue_ephemeral(db, key="k2", channel="C0OPS", user="U0OPS1", text="only you")
    assert _count(db) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"key": "", "channel": "C0OPS", "text": "x"}, ValueError),
        ({"key": "k", "channel": "", "text": "x"}, ValueError),
        ({"key": "k", "channel": "C0OPS", "text": ""}, ValueError),
        ({"key": "k", "channel": "C0OPS", "text": "x", "blocks": "not a list"}, TypeError),
        ({"key": "k", "channel": "C0OPS", "text": "x", "thread_key": "a", "thread_ts": "1.2"}, ValueError),
        ({"key": "k", "channel": "C0OPS", "text": "x", "thread_key": "missing"}, outbox.UnknownMessage),
    ],
)
def test_bad_post_arguments_raise_and_store_nothing(
    db: Database, kwargs: dict[str, object], error: type
) -> None:
    """Malformed posts are refused with a specific error and leave the table empty."""
    with pytest.raises(error):
        outbox.enqueue_post(db, **kwargs)  # type: ignore[arg-type]
    assert _count(db) == 0


def test_thread_reply_must_share_its_parents_channel(db: Database) -> None:
    """A reply naming a parent in another channel is refused."""
    outbox.enqueue_post(db, key="root", channel="C0OPS", text="root")
    with pytest.raises(ValueError, match="parent's channel"):
        outbox.enqueue_post(db, key="reply", channel="C0NOC", text="reply", thread_key="root")
    outbox.enqueue_post(db, key="reply", channel="C0OPS", text="reply", thread_key="root")
    reply = outbox.get(db, "reply")
    assert reply is not None and reply.thread_key == "root" and reply.lane == "chan:C0OPS"


def test_respond_validates_url_and_response_type(db: Database) -> None:
    """A response_url must be http(s) and the response type one Slack knows."""
    with pytest.raises(ValueError, match="http"):
        outbox.enqueue_respond(db, key="r", response_url="file:///etc/passwd", text="x")
    with pytest.raises(ValueError, match="response_type"):
        outbox.enqueue_respond(
            db, key="r", response_url="https://hooks.slack.com/x", text="x", response_type="loud"
        )
    outbox.enqueue_respond(
        db, key="r", response_url="https://hooks.slack.com/x", text="x", delete_original=False
    )
    assert _count(db) == 1


def test_update_of_a_pending_post_folds_into_it(db: Database) -> None:
    """Updating a post that has not been sent replaces its content; no update row is made."""
    outbox.enqueue_post(db, key="p", channel="C0OPS", text="0%", reply_broadcast=False)
    assert outbox.enqueue_update(db, target_key="p", text="50%") == "p"
    assert outbox.enqueue_update(db, target_key="p", text="100%", blocks=[{"type": "divider"}]) == "p"
    assert _count(db) == 1
    row = outbox.get(db, "p")
    assert (
        row is not None and row.payload["text"] == "100%" and row.payload["blocks"] == [{"type": "divider"}]
    )


def test_updates_of_a_sent_post_coalesce_newest_wins(db: Database) -> None:
    """At most one update per message is pending; each enqueue replaces its payload."""
    outbox.enqueue_post(db, key="p", channel="C0OPS", text="0%")
    _send(db, "p")
    keys = {outbox.enqueue_update(db, target_key="p", text=f"{i}%") for i in range(20)}
    assert len(keys) == 1
    pending = db.execute("SELECT payload FROM outbox WHERE kind = 'update' AND state = 'pending'").fetchall()
    assert len(pending) == 1 and '"19%"' in pending[0][0]


def test_update_while_one_is_in_flight_queues_a_second(db: Database) -> None:
    """An update being sent is not overwritten; the newer one waits behind it, and if the first
    then fails it is superseded rather than sent after the newer one."""
    outbox.enqueue_post(db, key="p", channel="C0OPS", text="0%")
    _send(db, "p")
    first = outbox.enqueue_update(db, target_key="p", text="10%")
    first_row = outbox.get(db, first)
    assert first_row is not None
    assert outbox.claim(db, first_row.id, lease=30) is not None
    second = outbox.enqueue_update(db, target_key="p", text="20%")
    assert second != first
    state = outbox.mark_retry(db, first_row.id, error="HTTP 500", next_attempt_at=time.time())
    assert state == "superseded"
    assert [r.key for r in outbox.lane_heads(db)] == [second]


def test_update_of_unknown_or_non_post_target_is_refused(db: Database) -> None:
    """Updates must name an outbox post."""
    with pytest.raises(outbox.UnknownMessage):
        outbox.enqueue_update(db, target_key="nope", text="x")
    outbox.enqueue_ephemeral(db, key="e", channel="C0OPS", user="U0OPS1", text="x")
    with pytest.raises(outbox.UnknownMessage, match="ephemeral"):
        outbox.enqueue_update(db, target_key="e", text="y")
    assert _count(db, "kind = 'update'") == 0


def test_lane_heads_are_the_oldest_open_row_per_lane(db: Database) -> None:
    """Each channel, message and response_url is a lane served in order."""
    outbox.enqueue_post(db, key="a1", channel="C0OPS", text="a1")
    outbox.enqueue_post(db, key="b1", channel="C0NOC", text="b1")
    outbox.enqueue_post(db, key="a2", channel="C0OPS", text="a2")
    outbox.enqueue_ephemeral(db, key="a3", channel="C0OPS", user="U0OPS1", text="a3")
    outbox.enqueue_respond(db, key="r1", response_url="https://hooks.slack.com/1", text="r1")
    outbox.enqueue_respond(db, key="r2", response_url="https://hooks.slack.com/1", text="r2")
    assert [r.key for r in outbox.lane_heads(db)] == ["a1", "b1", "r1"]
    _send(db, "a1")
    assert [r.key for r in outbox.lane_heads(db)] == ["b1", "a2", "r1"]


def test_claim_takes_a_row_once_and_an_expired_lease_again_as_uncertain(db: Database) -> None:
    """A live lease keeps others away; an expired one means the holder died, so the row is
    taken again and flagged uncertain."""
    outbox.enqueue_post(db, key="p", channel="C0OPS", text="x")
    row = outbox.get(db, "p")
    assert row is not None
    now = time.time()
    first = outbox.claim(db, row.id, lease=30, now=now)
    assert first is not None and first.state == "sending" and first.attempts == 1 and not first.uncertain
    assert outbox.claim(db, row.id, lease=30, now=now + 1) is None
    again = outbox.claim(db, row.id, lease=30, now=now + 31)
    assert again is not None and again.uncertain and again.attempts == 2


def test_message_ref_only_for_sent_posts(db: Database) -> None:
    """message_ref gives (channel id, ts) once Slack accepted the post."""
    outbox.enqueue_post(db, key="p", channel="#ops", text="x")
    assert outbox.message_ref(db, "p") is None
    _send(db, "p", ts="1700000000.000200", channel="C0OPS")
    assert outbox.message_ref(db, "p") == ("C0OPS", "1700000000.000200")
    assert outbox.message_ref(db, "unknown") is None


def test_pending_count_dead_letters_and_requeue(db: Database) -> None:
    """Dead rows leave the pending count, are listed, and can be sent again."""
    outbox.enqueue_post(db, key="p1", channel="C0OPS", text="x")
    outbox.enqueue_post(db, key="p2", channel="C0GONE", text="y")
    assert outbox.pending_count(db) == 2
    row = outbox.get(db, "p2")
    assert row is not None
    outbox.claim(db, row.id, lease=30)
    outbox.mark_dead(db, row.id, error="channel_not_found")
    assert outbox.pending_count(db) == 1
    dead = outbox.dead_letters(db)
    assert [(d.key, d.last_error) for d in dead] == [("p2", "channel_not_found")]
    assert outbox.requeue(db, "p2") is True
    assert outbox.requeue(db, "p1") is False
    assert outbox.pending_count(db) == 2 and outbox.dead_letters(db) == []


def test_purge_keeps_posts_that_open_rows_refer_to(db: Database) -> None:
    """Old finished rows are deleted unless an open update or reply still needs them."""
    outbox.enqueue_post(db, key="old", channel="C0OPS", text="x")
    outbox.enqueue_post(db, key="busy", channel="C0OPS", text="y")
    _send(db, "old", ts="1.1")
    _send(db, "busy", ts="1.2")
    outbox.enqueue_update(db, target_key="busy", text="z")
    assert outbox.purge(db, before=time.time() + 1) == 1
    assert outbox.get(db, "old") is None and outbox.get(db, "busy") is not None
