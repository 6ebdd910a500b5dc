"""Benchmarks of the Slack outbox (run with ``pytest tests/perf/test_perf_outbox.py -s``).

Prints: enqueue rates (batched and one commit per row, synchronous=FULL), the dispatcher's lane
scan with a 10,000-row backlog, a paced fan-out over 200 channels with one of them rate-limited,
and a 10,000-update progress burst coalesced into a handful of ``chat.update`` calls.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.console.standin import SlackStandIn
from bot.outbox.relay import OutboxRelay
from storage import outbox
from storage.db import write
from storage.pool import ConnectionPool

pytestmark = pytest.mark.perf

TOKEN = "xoxb-perf"


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ConnectionPool]:
    connections = ConnectionPool(tmp_path / "tsbot.db")
    yield connections
    connections.close()


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(bot_token=TOKEN)
    stand_in.start()
    yield stand_in
    stand_in.stop()


def test_enqueue_rates_and_lane_scan(pool: ConnectionPool) -> None:
    """Enqueue 10,000 posts in batches of 100 and 1,000 one by one; time the lane scan."""
    db = pool.get()
    started = time.perf_counter()
    for batch in range(100):
        with write(db):
            for i in range(100):
                outbox.enqueue_post(db, key=f"b{batch}-{i}", channel="C0BULK", text=f"device {batch}-{i}")
    batched = 10_000 / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(1_000):
        outbox.enqueue_post(db, key=f"single-{i}", channel=f"C{i % 500:04d}", text="x")
    single = 1_000 / (time.perf_counter() - started)
    started = time.perf_counter()
    rounds = 50
    for _ in range(rounds):
        heads = outbox.lane_heads(db)
    scan_ms = (time.perf_counter() - started) / rounds * 1000
    print(
        f"\noutbox enqueue: {batched:,.0f} rows/s in transactions of 100, {single:,.0f} rows/s one commit each; "
        f"lane scan over {outbox.pending_count(db):,} open rows / {len(heads)} lanes: {scan_ms:.1f} ms"
    )
    assert len(heads) == 501 and outbox.pending_count(db) == 11_000


def test_fan_out_over_many_channels_with_one_rate_limited(
    standin: SlackStandIn, pool: ConnectionPool
) -> None:
    """1,000 posts over 200 channels at 1 msg/s/channel; one channel answers 429 Retry-After: 5."""
    channels = [f"C{i:04d}" for i in range(200)]
    for channel in channels:
        standin.add_channel(channel)
    standin.inject("chat.postMessage", status=429, retry_after=5, channel=channels[0])
    db = pool.get()
    with write(db):
        for round_, channel in itertools.product(range(5), channels):
            outbox.enqueue_post(db, key=f"{channel}-{round_}", channel=channel, text=f"{channel} #{round_}")
    relay = OutboxRelay(pool, slack_api_url=standin.api_url, bot_token=TOKEN, workers=8)
    started = time.perf_counter()
    relay.start()
    try:
        assert relay.drain(60)
    finally:
        relay.stop()
    elapsed = time.perf_counter() - started
    calls = [c for c in standin.calls("chat.postMessage") if c.ok]
    others_done = max(c.at for c in calls if c.channel != channels[0]) - min(c.at for c in calls)
    limited_done = max(c.at for c in calls if c.channel == channels[0]) - min(c.at for c in calls)
    gaps = [
        b.at - a.at
        for channel in channels
        for a, b in itertools.pairwise([c for c in calls if c.channel == channel])
    ]
    print(
        f"\noutbox fan-out: {len(calls):,} posts to {len(channels)} channels in {elapsed:.1f} s "
        f"({len(calls) / elapsed:,.0f} msg/s); other channels done after {others_done:.1f} s, "
        f"the rate-limited one after {limited_done:.1f} s; smallest gap within a channel {min(gaps):.3f} s"
    )
    assert len(calls) == 1_000 and min(gaps) >= 1.0


def test_bulk_progress_updates_coalesce(standin: SlackStandIn, pool: ConnectionPool) -> None:
    """10,000 progress updates of one message over ~5 s become a few chat.update calls."""
    standin.add_channel("C0BULK")
    db = pool.get()
    relay = OutboxRelay(pool, slack_api_url=standin.api_url, bot_token=TOKEN)
    relay.start()
    try:
        outbox.enqueue_post(db, key="bulk", channel="C0BULK", text="0 of 10,000")
        relay.wake()
        assert relay.drain(10)
        started = time.perf_counter()
        for done in range(1, 10_001, 10):
            with write(db):
                for n in range(done, done + 10):
                    outbox.enqueue_update(db, target_key="bulk", text=f"{n:,} of 10,000")
            relay.wake()
            time.sleep(0.004)
        last_enqueue = time.perf_counter()
        assert relay.drain(30)
        settled = time.perf_counter()
    finally:
        relay.stop()
    ref = outbox.message_ref(db, "bulk")
    assert ref is not None and standin.message("C0BULK", ref[1]).text == "10,000 of 10,000"
    updates = len(standin.calls("chat.update"))
    print(
        f"\noutbox bulk progress: 10,000 updates enqueued in {last_enqueue - started:.1f} s → {updates} "
        f"chat.update calls; final state visible {settled - last_enqueue:.1f} s after the last enqueue"
    )
    assert updates <= (last_enqueue - started) / 3.0 + 2
