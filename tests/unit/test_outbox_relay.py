"""The outbox relay against the local Slack stand-in over loopback HTTP."""

from __future__ import annotations

import itertools
import logging
import time

import pytest
from slack_sdk import WebClient

from bot.console.standin import SlackStandIn
from bot.outbox.relay import METADATA_EVENT, OutboxRelay, marker, reference
from storage import outbox
from storage.db import write
from storage.pool import ConnectionPool
from tests.helpers.outbox import (  # noqa: F401
    TOKEN,
    EventLog,
    RelayFactory,
    make_relay_fixture,
    pool_fixture,
    served_standin_fixture,
    standin_fixture,
)


def test_post_then_reply_in_its_thread_by_thread_key(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A reply enqueued with thread_key lands in the thread of the post it names."""
    db = pool.get()
    with write(db):
        outbox.enqueue_post(db, key="req-1", channel="C0A", text="Suspending 1 line…")
        outbox.enqueue_post(db, key="req-1:done", channel="C0A", text="Suspended.", thread_key="req-1")
    relay = make_relay()
    assert relay.drain(10)
    ref = outbox.message_ref(db, "req-1")
    assert ref is not None and ref[0] == "C0A"
    root = standin.message("C0A", ref[1])
    assert root.text == "Suspending 1 line…" and root.thread_ts is None
    replies = standin.messages("C0A", thread_ts=ref[1])
    assert [m.text for m in replies if m.ts != ref[1]] == ["Suspended."]
    reply_ref = outbox.message_ref(db, "req-1:done")
    assert reply_ref is not None
    # a reply to the reply still goes to the root of the thread
    with write(db):
        outbox.enqueue_post(
            db, key="req-1:more", channel="C0A", text="Auto-resume in 7 days.", thread_key="req-1:done"
        )
    relay.wake()
    assert relay.drain(10)
    more = outbox.message_ref(db, "req-1:more")
    assert more is not None and standin.message("C0A", more[1]).thread_ts == ref[1]


def test_twenty_quick_updates_make_at_most_two_calls_newest_wins(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """Updates to one message are coalesced: 20 enqueues give ≤ 2 chat.update calls, the last content."""
    db = pool.get()
    relay = make_relay(update_interval=1.0)
    outbox.enqueue_post(db, key="bulk", channel="C0A", text="0 of 20")
    relay.wake()
    assert relay.drain(10)
    for i in range(1, 21):
        with write(db):
            outbox.enqueue_update(db, target_key="bulk", text=f"{i} of 20")
        relay.wake()
    assert relay.drain(10)
    updates = standin.calls("chat.update")
    assert 1 <= len(updates) <= 2
    ref = outbox.message_ref(db, "bulk")
    assert ref is not None and standin.message("C0A", ref[1]).text == "20 of 20"


def test_updates_of_one_message_are_spaced_by_the_update_interval(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """Two updates of one message are at least update_interval apart (stand-in call times)."""
    db = pool.get()
    relay = make_relay(update_interval=0.5)
    outbox.enqueue_post(db, key="m", channel="C0A", text="v0")
    relay.wake()
    assert relay.drain(10)
    outbox.enqueue_update(db, target_key="m", text="v1")
    relay.wake()
    standin.wait_for_call(lambda c: c.method == "chat.update", timeout=5)
    outbox.enqueue_update(db, target_key="m", text="v2")
    relay.wake()
    assert relay.drain(10)
    times = [c.at for c in standin.calls("chat.update")]
    assert len(times) == 2 and times[1] - times[0] >= 0.5


def test_enqueue_is_idempotent_even_after_sending(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """The same key enqueued again (before or after it was sent) is posted once."""
    db = pool.get()
    relay = make_relay()
    outbox.enqueue_post(db, key="once", channel="C0A", text="hello")
    outbox.enqueue_post(db, key="once", channel="C0A", text="hello")
    relay.wake()
    assert relay.drain(10)
    outbox.enqueue_post(db, key="once", channel="C0A", text="hello")
    relay.wake()
    assert relay.drain(10)
    assert len(standin.calls("chat.postMessage")) == 1


def test_retry_after_is_honoured_for_that_channel_while_others_go_on(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A 429 with Retry-After: 2 on one channel delays only that channel by ≥ 2 s."""
    standin.inject("chat.postMessage", status=429, retry_after=2, channel="C0A")
    events = EventLog()
    db = pool.get()
    with write(db):
        outbox.enqueue_post(db, key="a", channel="C0A", text="to alpha")
        for i in range(3):
            outbox.enqueue_post(db, key=f"b{i}", channel="C0B", text=f"to bravo {i}")
    relay = make_relay(on_event=events)
    assert relay.drain(15)
    alpha = standin.calls("chat.postMessage")
    alpha = [c for c in alpha if c.channel == "C0A"]
    bravo = [c for c in standin.calls("chat.postMessage") if c.channel == "C0B"]
    assert [c.status for c in alpha] == [429, 200]
    assert alpha[1].at - alpha[0].at >= 2.0
    assert len(bravo) == 3 and all(c.ok for c in bravo)
    assert all(c.at < alpha[0].at + 2.0 for c in bravo)
    assert events.kinds("a") == ["rate_limited", "sent"]
    row = outbox.get(db, "a")
    assert row is not None and row.failures == 0 and row.state == "sent"


def test_rate_limited_update_waits_retry_after(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A 429 on chat.update delays the next update by Retry-After; the newest content still lands."""
    standin.inject("chat.update", status=429, retry_after=1)
    db = pool.get()
    relay = make_relay()
    outbox.enqueue_post(db, key="card", channel="C0A", text="down")
    relay.wake()
    assert relay.drain(10)
    outbox.enqueue_update(db, target_key="card", text="recovered")
    relay.wake()
    assert relay.drain(10)
    calls = standin.calls("chat.update")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0
    ref = outbox.message_ref(db, "card")
    assert ref is not None and standin.message("C0A", ref[1]).text == "recovered"


def test_posts_in_one_channel_are_paced_and_in_order(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """Posts to one channel go out in enqueue order, per_channel_interval apart."""
    db = pool.get()
    with write(db):
        for i in range(4):
            outbox.enqueue_post(db, key=f"p{i}", channel="C0A", text=f"message {i}")
        outbox.enqueue_ephemeral(db, key="e", channel="C0A", user="U0OPS1", text="just you")
    relay = make_relay(per_channel_interval=0.15)
    assert relay.drain(10)
    calls = [c for c in standin.calls() if c.method in ("chat.postMessage", "chat.postEphemeral")]
    assert [c.params["text"] for c in calls] == [f"message {i}" for i in range(4)] + ["just you"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.15
    ephemeral = [m for m in standin.messages("C0A") if m.ephemeral]
    assert len(ephemeral) == 1 and ephemeral[0].user == "U0OPS1"


def test_server_errors_are_retried_until_sent(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """HTTP 503 twice, then success: three calls, one message, two retry events."""
    standin.inject("chat.postMessage", status=503, count=2, channel="C0A")
    events = EventLog()
    db = pool.get()
    outbox.enqueue_post(db, key="k", channel="C0A", text="eventually")
    relay = make_relay(on_event=events)
    assert relay.drain(10)
    assert [c.status for c in standin.calls("chat.postMessage")] == [503, 503, 200]
    assert [m.text for m in standin.messages("C0A")] == ["eventually"]
    assert events.kinds("k") == ["retry", "retry", "sent"]


def test_a_500_may_have_posted_so_the_resend_carries_a_ref(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """After an answer that leaves the outcome unknown, the re-sent message is labelled with its ref."""
    standin.inject("chat.postMessage", status=500, channel="C0A")
    db = pool.get()
    outbox.enqueue_post(db, key="maybe-twice", channel="C0A", text="Line suspended")
    relay = make_relay()
    assert relay.drain(10)
    sent = standin.calls("chat.postMessage")[-1]
    assert sent.params["text"] == f"Line suspended\n_{reference('maybe-twice')}_"


def test_permanent_error_is_dead_after_one_attempt_without_retries(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """channel_not_found: one call, the row is dead, one masked WARNING, one dead event, no retries."""
    events = EventLog()
    db = pool.get()
    outbox.enqueue_post(db, key="alert:89148000000800139708", channel="C0GONE", text="hello")
    outbox.enqueue_post(db, key="fine", channel="C0A", text="still works")
    with caplog.at_level(logging.INFO, logger="bot.outbox.relay"):
        relay = make_relay(on_event=events)
        assert relay.drain(10)
        time.sleep(0.5)  # several poll intervals: a hot loop would show more calls
    calls = [c for c in standin.calls("chat.postMessage") if c.channel == "C0GONE"]
    assert len(calls) == 1 and calls[0].response["error"] == "channel_not_found"
    dead = outbox.dead_letters(db)
    assert [(d.key, d.last_error, d.attempts) for d in dead] == [
        ("alert:89148000000800139708", "channel_not_found", 1)
    ]
    assert events.kinds("alert:89148000000800139708") == ["dead"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "channel_not_found" in warnings[0].getMessage()
    assert "89148000000800139708" not in caplog.text and "…9708" in warnings[0].getMessage()
    assert outbox.message_ref(db, "fine") is not None


@pytest.mark.parametrize("error", ["not_in_channel", "is_archived", "invalid_blocks", "msg_too_long"])
def test_injected_permanent_errors_go_to_dead_letters(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory, error: str
) -> None:
    """Each permanent Slack error code dead-letters the row after one call."""
    standin.inject("chat.postMessage", error=error, channel="C0A")
    db = pool.get()
    outbox.enqueue_post(db, key="k", channel="C0A", text="x")
    relay = make_relay()
    assert relay.drain(10)
    assert len(standin.calls("chat.postMessage")) == 1
    assert [d.last_error for d in outbox.dead_letters(db)] == [error]


def test_wrong_token_is_dead_not_retried(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """invalid_auth is permanent: dead after one call."""
    db = pool.get()
    outbox.enqueue_post(db, key="k", channel="C0A", text="x")
    relay = make_relay(bot_token="xoxb-wrong")
    assert relay.drain(10)
    assert len(standin.calls("chat.postMessage")) == 1
    assert [d.last_error for d in outbox.dead_letters(db)] == ["invalid_auth"]


def test_update_of_a_dead_post_is_dead_without_a_call(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """An update whose message was never posted is dead-lettered, not sent."""
    db = pool.get()
    relay = make_relay()
    outbox.enqueue_post(db, key="p", channel="C0GONE", text="x")
    relay.wake()
    assert relay.drain(10)
    outbox.enqueue_update(db, target_key="p", text="y")
    relay.wake()
    assert relay.drain(10)
    assert standin.calls("chat.update") == []
    assert {d.kind: d.last_error for d in outbox.dead_letters(db)} == {
        "post": "channel_not_found",
        "update": "the message to update was never posted",
    }


def test_rows_enqueued_while_stopped_are_sent_by_the_next_relay(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A relay stopped before sending leaves rows pending; a new relay on the same file sends them."""
    db = pool.get()
    first = make_relay()
    first.stop()
    outbox.enqueue_post(db, key="k1", channel="C0A", text="after restart")
    assert not first.drain(0.3)
    second = OutboxRelay(
        ConnectionPool(pool.path), slack_api_url=standin.api_url, bot_token="xoxb-outbox-test"
    )
    try:
        second.start()
        assert second.drain(10)
    finally:
        second.stop()
    assert [m.text for m in standin.messages("C0A")] == ["after restart"]


def test_row_left_sending_by_a_crash_is_sent_with_a_ref_line(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """A row a dead relay left ``sending`` with an expired lease is sent, labelled as a possible duplicate."""
    db = pool.get()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Suspended* …9708"}}]
    outbox.enqueue_post(db, key="crashed", channel="C0A", text="Suspended", blocks=blocks)
    row = outbox.get(db, "crashed")
    assert row is not None
    assert outbox.claim(db, row.id, lease=1, now=time.time() - 60) is not None  # the dead relay's claim
    relay = make_relay()
    assert relay.drain(10)
    [message] = standin.messages("C0A")
    assert message.blocks[-1]["type"] == "context"
    assert message.blocks[-1]["elements"][0]["text"] == reference("crashed")
    sent = outbox.get(db, "crashed")
    assert sent is not None and sent.state == "sent" and sent.attempts == 2 and sent.uncertain


def test_respond_posts_to_the_response_url(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """enqueue_respond posts to the response_url: an ephemeral answer, then an in-channel one."""
    url = standin.new_response_url("C0A", "U0OPS1")
    db = pool.get()
    with write(db):
        outbox.enqueue_respond(db, key="r1", response_url=url, text="Accepted #42")
        outbox.enqueue_respond(db, key="r2", response_url=url, text="Done #42", response_type="in_channel")
    relay = make_relay()
    assert relay.drain(10)
    calls = standin.calls("response_url")
    assert [c.params["text"] for c in calls] == ["Accepted #42", "Done #42"]
    messages = standin.messages("C0A")
    assert [(m.text, m.user) for m in messages] == [("Accepted #42", "U0OPS1"), ("Done #42", None)]
    assert "Authorization" not in str(calls[0].params)


def test_used_up_response_url_is_dead(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """Slack's five uses per response_url: the sixth answer is dead-lettered (used_url), once."""
    url = standin.new_response_url("C0A", "U0OPS1")
    db = pool.get()
    with write(db):
        for i in range(6):
            outbox.enqueue_respond(db, key=f"r{i}", response_url=url, text=f"answer {i}")
    relay = make_relay()
    assert relay.drain(10)
    assert len(standin.calls("response_url")) == 6
    [dead] = outbox.dead_letters(db)
    assert dead.key == "r5" and dead.last_error == "HTTP 404 used_url"


def test_expired_response_url_is_dead(pool: ConnectionPool) -> None:
    """A response_url older than 30 minutes answers 404 expired_url: dead after one call."""
    now = [time.time()]
    stand_in = SlackStandIn(bot_token="xoxb-outbox-test", clock=lambda: now[0]).start()
    try:
        url = stand_in.new_response_url("C0OPS", "U0OPS1")
        now[0] += 31 * 60
        db = pool.get()
        outbox.enqueue_respond(db, key="late", response_url=url, text="too late")
        relay = OutboxRelay(
            pool, slack_api_url=stand_in.api_url, bot_token="xoxb-outbox-test", poll_interval=0.1
        )
        relay.start()
        try:
            assert relay.drain(10)
        finally:
            relay.stop()
        assert len(stand_in.calls("response_url")) == 1
        assert [d.last_error for d in outbox.dead_letters(db)] == ["HTTP 404 expired_url"]
    finally:
        stand_in.stop()


def test_unreachable_slack_is_retried_until_the_age_limit_then_dead(pool: ConnectionPool) -> None:
    """Connection refused is retried with backoff for as long as the row is younger than
    max_age, however many attempts that takes; then the row is dead, saying how long it tried."""
    events = EventLog()
    db = pool.get()
    outbox.enqueue_post(db, key="k", channel="C0A", text="x")
    relay = OutboxRelay(
        pool,
        slack_api_url="http://127.0.0.1:9/api/",
        bot_token="xoxb-outbox-test",
        max_age=1.5,
        per_channel_interval=0.02,
        backoff_base=0.05,
        backoff_cap=0.1,
        poll_interval=0.05,
        on_event=events,
    )
    relay.start()
    try:
        assert relay.drain(10)
    finally:
        relay.stop()
    kinds = events.kinds("k")
    assert kinds[-1] == "dead" and set(kinds[:-1]) == {"retry"} and len(kinds) > 10
    [dead] = outbox.dead_letters(db)
    assert dead.attempts == len(kinds) and not dead.uncertain
    assert dead.last_error is not None and dead.last_error.startswith(
        "gave up after 1 s: no answer from Slack"
    )


def test_reply_to_a_dead_post_goes_to_the_channel(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """If the thread's root was rejected, the reply is still posted, in the channel itself."""
    standin.inject("chat.postMessage", error="invalid_blocks", channel="C0A")
    db = pool.get()
    with write(db):
        outbox.enqueue_post(db, key="root", channel="C0A", text="root")
        outbox.enqueue_post(db, key="reply", channel="C0A", text="the result", thread_key="root")
    relay = make_relay()
    assert relay.drain(10)
    assert [(m.text, m.thread_ts) for m in standin.messages("C0A")] == [("the result", None)]
    assert [d.key for d in outbox.dead_letters(db)] == ["root"]


def test_a_post_slack_kept_before_a_crash_is_found_and_updated_not_posted_again(
    standin: SlackStandIn, pool: ConnectionPool, make_relay: RelayFactory
) -> None:
    """kill -9 while a post was in flight: Slack had accepted it, the relay never recorded it.
    After the restart the relay finds that copy by its metadata mark and updates it: one message
    in the channel, no ref label, and the row points at it (issue 14, finding 8)."""
    db = pool.get()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Suspended* …9708"}}]
    outbox.enqueue_post(db, key="in-flight", channel="C0A", text="Suspended", blocks=blocks)
    outbox.enqueue_post(db, key="in-flight-reply", channel="C0A", thread_key="in-flight", text="done")
    row = outbox.get(db, "in-flight")
    assert row is not None
    assert outbox.claim(db, row.id, lease=1, now=time.time() - 60) is not None  # the dead relay's claim
    WebClient(token=TOKEN, base_url=standin.api_url).chat_postMessage(  # what it had sent before dying
        channel="C0A",
        text="Suspended",
        blocks=blocks,
        metadata={"event_type": METADATA_EVENT, "event_payload": {"ref": marker("in-flight")}},
    )
    relay = make_relay()
    assert relay.drain(10)
    [message, reply] = standin.messages("C0A")
    assert message.text == "Suspended" and "ref " not in str(message.blocks)
    assert reply.thread_ts == message.ts
    sent = outbox.get(db, "in-flight")
    assert sent is not None and sent.state == "sent" and sent.slack_ts == message.ts
    assert [c.method for c in standin.calls() if c.method.startswith(("chat.", "conversations."))] == [
        "chat.postMessage",
        "conversations.history",
        "chat.update",
        "chat.postMessage",
    ]
