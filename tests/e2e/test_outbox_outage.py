"""A Slack outage over loopback: the relay keeps every message through minutes of refused
connections and 5xx answers, and delivers each once, in order, when Slack is back."""

from __future__ import annotations

import itertools
import time
from typing import Any

from sqlite_utils import Database

from bot.console.standin import SlackStandIn
from bot.outbox.relay import OutboxRelay, reference
from storage import outbox
from storage.db import write
from storage.pool import ConnectionPool
from tests.helpers.outbox import (  # noqa: F401
    EventLog,
    RelayFactory,
    make_relay_fixture,
    pool_fixture,
    served_standin_fixture,
    standin_fixture,
)

#: The relay's old give-up point: 10 failures (2–4 min with the default backoff).
OLD_LIMIT = 10


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _wait_for_failures(db: Database, key: str, failures: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = outbox.get(db, key)
        if row is not None and row.failures >= failures:
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} did not fail {failures} times within {timeout} s")


def test_an_outage_longer_than_the_old_limit_loses_nothing(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """Slack refuses connections, then answers 503, for far more failures than the old limit of
    10; nothing is dead-lettered, an alert card's updates wait for it, and after recovery every
    message arrives once, in enqueue order per channel, with each card's newest content."""
    events = EventLog()
    db = pool.get()
    relay = make_relay(on_event=events, backoff_cap=0.1, update_budget_per_minute=6000)
    outbox.enqueue_post(db, key="card-a", channel="C0A", text="alert: 3 meters down")
    relay.wake()
    assert relay.drain(10)
    port = int(standin.api_url.split(":")[2].split("/")[0])

    standin.stop()  # Slack unreachable: connection refused
    with write(db):
        outbox.enqueue_update(db, target_key="card-a", text="alert: 5 meters down")
        outbox.enqueue_post(db, key="card-b", channel="C0B", text="alert: feeder 7 dark")
        for i in range(5):
            outbox.enqueue_post(db, key=f"a{i}", channel="C0A", text=f"alpha {i}")
            outbox.enqueue_post(db, key=f"b{i}", channel="C0B", text=f"bravo {i}")
    relay.wake()
    _wait_for_failures(db, "card-b", 1, 10)
    # card-b is not posted yet, so its update becomes its content; card-a's updates coalesce
    outbox.enqueue_update(db, target_key="card-b", text="alert: feeder 7 dark (12 meters)")
    outbox.enqueue_update(db, target_key="card-a", text="alert: 6 meters down")
    relay.wake()
    _wait_for_failures(db, "card-b", OLD_LIMIT + 5, 30)
    _wait_for_failures(db, "a0", OLD_LIMIT + 5, 30)
    assert outbox.dead_letters(db) == []

    standin.start(port=port)  # back, but overloaded for a while
    standin.inject("chat.postMessage", status=503, count=OLD_LIMIT + 5)
    standin.inject("chat.update", status=503, count=OLD_LIMIT + 5)
    assert relay.drain(60)

    assert outbox.dead_letters(db) == []
    assert "dead" not in events.kinds()
    posts = [c for c in standin.calls("chat.postMessage") if c.ok]
    for channel, first, prefix in (
        ("C0A", None, "alpha"),
        ("C0B", "alert: feeder 7 dark (12 meters)", "bravo"),
    ):
        texts = [str(c.params["text"]) for c in posts if c.channel == channel]
        expected = ([first] if first else []) + [f"{prefix} {i}" for i in range(5)]
        if channel == "C0A":
            expected = ["alert: 3 meters down", *expected]
        else:
            # card-b's update became its content, unless the relay was trying to post it at that
            # moment: then it was posted as first written and updated after (its final text is
            # checked below either way)
            assert texts[0] in (first, "alert: feeder 7 dark"), texts
            texts[0] = str(first)
        assert texts == expected, channel
    ref_a, ref_b = outbox.message_ref(db, "card-a"), outbox.message_ref(db, "card-b")
    assert ref_a is not None and ref_b is not None
    assert standin.message(*ref_a).text == "alert: 6 meters down"
    assert standin.message(*ref_b).text == "alert: feeder 7 dark (12 meters)"
    row = outbox.get(db, "a0")
    assert row is not None and row.state == "sent" and row.failures > OLD_LIMIT


def test_a_resent_fifty_block_message_stays_at_fifty_blocks(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A post with Slack's maximum of 50 blocks, taken back after a crash, is resent with 50
    blocks: the ref label joins its last context block, or (no context block at the end) the
    text; a 49-block post gets a context block of its own."""
    context_last = [_section(f"line {i}") for i in range(49)] + [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "…and 12 more (list truncated)"}]}
    ]
    section_last = [_section(f"line {i}") for i in range(50)]
    room = [_section(f"line {i}") for i in range(49)]
    db = pool.get()
    with write(db):
        outbox.enqueue_post(db, key="full-ctx", channel="C0A", text="progress", blocks=context_last)
        outbox.enqueue_post(db, key="full-sec", channel="C0A", text="diag", blocks=section_last)
        outbox.enqueue_post(db, key="room", channel="C0A", text="browse", blocks=room)
    for key in ("full-ctx", "full-sec", "room"):
        row = outbox.get(db, key)
        assert row is not None
        # a relay that died while sending: its lease expired long ago
        db.execute(
            "UPDATE outbox SET state = 'sending', lease_until = ? WHERE id = ?", [time.time() - 60, row.id]
        )
    relay = make_relay()
    assert relay.drain(10)
    assert outbox.dead_letters(db) == []
    by_text = {m.text.split("\n")[0]: m for m in standin.messages("C0A")}
    full_ctx, full_sec, roomy = by_text["progress"], by_text["diag"], by_text["browse"]
    assert len(full_ctx.blocks) == 50
    assert [e["text"] for e in full_ctx.blocks[-1]["elements"]] == [
        "…and 12 more (list truncated)",
        reference("full-ctx"),
    ]
    assert len(full_sec.blocks) == 50 and full_sec.text == f"diag\n_{reference('full-sec')}_"
    assert len(roomy.blocks) == 50 and roomy.blocks[-1]["elements"][0]["text"] == reference("room")


def test_a_requeued_post_takes_the_content_of_updates_that_died_waiting(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A card that died (channel_not_found) and the update that died with it: requeued after the
    fix, the card is posted once with the newest content, and its age counts from the requeue."""
    standin.inject("chat.postMessage", error="channel_not_found", channel="C0A")
    db = pool.get()
    relay = make_relay()
    outbox.enqueue_post(db, key="card", channel="C0A", text="3 down")
    relay.wake()
    assert relay.drain(10)
    outbox.enqueue_update(db, target_key="card", text="5 down")
    relay.wake()
    assert relay.drain(10)
    assert {d.kind for d in outbox.dead_letters(db)} == {"post", "update"}
    before = time.time()
    assert outbox.requeue_all(db) == 1
    relay.wake()
    assert relay.drain(10)
    assert [m.text for m in standin.messages("C0A")] == ["5 down"]
    assert standin.calls("chat.update") == []
    card = outbox.get(db, "card")
    assert card is not None and card.state == "sent" and card.requeued_at is not None
    assert card.age_from >= before and outbox.dead_count(db) == 0


def test_a_relay_without_the_lease_waits_and_takes_over_when_it_is_released(
    standin: SlackStandIn, pool: ConnectionPool
) -> None:
    """Two relays on one database: only the lease holder sends (pacing stays 1 per interval per
    channel); when it stops, the other takes over and sends the rest, each row once."""
    options: dict[str, Any] = {
        "slack_api_url": standin.api_url,
        "bot_token": "xoxb-outbox-test",
        "per_channel_interval": 0.3,
        "poll_interval": 0.05,
        "timeout": 2.0,
        "lease": 5.0,
        "lease_ttl": 3.0,
    }
    first = OutboxRelay(pool, **options).start()
    second = OutboxRelay(ConnectionPool(pool.path), **options)
    try:
        db = pool.get()
        deadline = time.monotonic() + 5
        while not first.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.active
        second.start()
        with write(db):
            for i in range(8):
                outbox.enqueue_post(db, key=f"p{i}", channel="C0A", text=f"message {i}")
        first.wake()
        second.wake()
        standin.wait_for_call(lambda c: len(standin.calls("chat.postMessage")) >= 3, timeout=10)
        assert not second.active
        first.stop()
        assert second.drain(20)
        assert second.active
    finally:
        first.stop()
        second.stop()
    calls = standin.calls("chat.postMessage")
    assert [c.params["text"] for c in calls] == [f"message {i}" for i in range(8)]
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.3
