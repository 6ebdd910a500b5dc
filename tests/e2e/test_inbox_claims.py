"""Two bot processes started on one database by mistake: each callback is processed once, each
Slack message is sent once, and a channel is still paced at one message per second."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.console.standin import SlackStandIn
from bot.outbox.relay import RELAY_LEASE
from storage import inbox
from storage.db import write
from storage.inbox import InboxItem
from storage.schema import open_database
from tests.helpers.callbacks import BotProcess, callback, iccids, seed_request, send_callbacks
from tests.helpers.stacks import served_sandbox, served_standin

SINGLES = 12
BULK = 300


def test_claims_must_be_taken_inside_the_processing_transaction(tmp_path: Path) -> None:
    """claim_received outside a write transaction is refused (a plain read is what let two
    workers take the same rows); inside one it takes only rows still received."""
    db = open_database(tmp_path / "t.db")
    with write(db):
        inbox.insert_many(
            db, [InboxItem("r1", f"iccid:{i}", "ok", "CarrierService", "suspended", {}) for i in range(3)]
        )
    with pytest.raises(inbox.NotInTransaction):
        inbox.claim_received(db, holder="a")
    with write(db):
        first = inbox.claim_received(db, holder="a", limit=2)
        inbox.mark(db, [r.id for r in first], "processed")
    with write(db):
        second = inbox.claim_received(db, holder="b", limit=10)
        assert inbox.claim_received(db, holder="c", ids=[first[0].id]) == []
        inbox.mark(db, [r.id for r in second], "processed")
    assert [r.id for r in first] == [1, 2] and [r.id for r in second] == [3]
    holders = db.execute("SELECT id, claimed_by, state FROM inbox ORDER BY id").fetchall()
    assert [tuple(r) for r in holders] == [
        (1, "a", "processed"),
        (2, "a", "processed"),
        (3, "b", "processed"),
    ]
    db.conn.close()


@pytest.fixture
def two_bots(tmp_path: Path) -> Iterator[tuple[BotProcess, BotProcess, SlackStandIn]]:
    with served_sandbox(devices=10, seed=5) as (_sandbox, url), served_standin() as standin:
        standin.add_channel("C0BULK")
        for i in range(SINGLES):
            standin.add_channel(f"C0S{i:02d}")
        db_path = tmp_path / "shared.db"
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = BotProcess(tmp_path / "a", standin=standin, thingspace_url=url, db_path=db_path)
        second = BotProcess(tmp_path / "b", standin=standin, thingspace_url=url, db_path=db_path)
        try:
            yield first, second, standin
        finally:
            first.stop()
            second.stop()


@pytest.mark.slow
def test_two_processes_process_each_callback_once_and_send_each_message_once(
    two_bots: tuple[BotProcess, BotProcess, SlackStandIn],
) -> None:
    """Both processes take callbacks (every callback is sent to both, interleaved); after they
    settle every callback was processed by exactly one worker and audited once, every result
    reply and the bulk summary were posted once, and posts in a channel stayed ≥ 1 s apart."""
    first, second, standin = two_bots
    first.start()
    second.start()
    db = open_database(first.db_path)
    singles = [
        seed_request(db, verb="suspend", devices=[device], channel=f"C0S{i:02d}")
        for i, device in enumerate(iccids(SINGLES, start=500))
    ]
    bulk_devices = iccids(BULK)
    bulk = seed_request(db, verb="suspend", devices=bulk_devices, channel="C0BULK")
    bodies = [callback(r, d) for r, d in zip(singles, iccids(SINGLES, start=500), strict=True)]
    bodies += [callback(bulk, d) for d in bulk_devices]
    answers: dict[str, list[int]] = {}

    def send(name: str, url: str, order: list[dict[str, object]]) -> None:
        answers[name] = send_callbacks(url, order, concurrency=4)

    senders = [
        threading.Thread(target=send, args=("a", first.callback_url, bodies)),
        threading.Thread(target=send, args=("b", second.callback_url, list(reversed(bodies)))),
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    assert set(answers["a"]) == set(answers["b"]) == {200}
    first.settled(timeout=90)
    time.sleep(1.0)  # anything still to come would show now
    first.settled(timeout=30)

    rows = first.query("SELECT id, state, claimed_by FROM inbox ORDER BY id")
    assert len(rows) == SINGLES + BULK and {r[1] for r in rows} == {"processed"}
    holders = {r[2] for r in rows}
    assert len(holders) == 2, f"both workers should have taken callbacks: {holders}"
    audited = list(
        itertools.chain.from_iterable(
            json.loads(r[0])["inbox_ids"]
            for r in first.query("SELECT detail FROM audit_log WHERE verb = 'callback' ORDER BY id")
        )
    )
    assert sorted(audited) == [r[0] for r in rows], "each callback audited exactly once"
    assert first.query("SELECT count(*) FROM ts_request_devices WHERE status = 'pending'") == [(0,)]

    posts = [c for c in standin.calls("chat.postMessage") if c.ok]
    sent = first.query("SELECT count(*) FROM outbox WHERE kind = 'post' AND state = 'sent'")[0][0]
    assert len(posts) == sent == 2 * SINGLES + 2, (
        "each root and each reply once, the bulk root and its settle message once"
    )
    assert not any("ref " in str(c.params.get("text", "")) for c in posts)
    for i in range(SINGLES):
        texts = [str(c.params["text"]) for c in posts if c.channel == f"C0S{i:02d}"]
        assert len(texts) == 2 and "is suspended" in texts[1]
    for channel in {c.channel for c in posts}:
        times = [c.at for c in posts if c.channel == channel]
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), channel
    ((root_ts,),) = first.query("SELECT slack_ts FROM outbox WHERE key = ?", [f"req:{bulk}"])
    assert f"done: {BULK:,} of {BULK:,} suspended" in standin.message("C0BULK", root_ts).text
    ((holder,),) = first.query("SELECT holder FROM leases WHERE name = ?", [RELAY_LEASE])
    assert holder
    db.conn.close()
