"""Benchmark: a bulk suspend of 10,000 devices answered by 10,000 callbacks at concurrency 16.

The real path end to end: ``python -m bot serve`` in its own process (as in production, so the
sender does not share its interpreter lock), the sandbox and the Slack stand-in served by this
test. The sandbox's fleet is sized so that ``group:plant-7`` holds exactly 10,000 lines; the
admin runs ``/ts suspend group:plant-7``, confirms, and the sandbox sends one CarrierService
callback per device to the bot with its own sender (16 in flight, keep-alive).

Printed (run with ``pytest tests/perf -s``), targets from issue 5:

* callbacks accepted per second — from the bot's inbox commit times (≥ 1,500/s);
* seconds from the last callback stored to the final summary shown in Slack (≤ 5 s);
* Slack Web API calls made for the request (≤ 40);
* callbacks lost — devices without an answer after everything settled (must be 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.console.standin import SlackStandIn
from bot.sandbox import create_sandbox
from bot.sandbox.fleet import build_fleet
from bot.serving import ServerThread
from tests.helpers.callbacks import BotProcess

DEVICES = 10_000
SEED = 1


def _fleet_size_for(group_size: int, seed: int) -> int:
    """The smallest fleet whose plant-7 group has exactly *group_size* lines (site assignment
    depends only on the seed and the line's index, so a larger fleet only adds lines)."""
    count = 0
    for device in build_fleet(int(group_size * 2.6), seed, datetime.now(UTC)):
        count += device.site == "plant-7"
        if count == group_size:
            return device.index + 1
    raise AssertionError("the fleet is too small to hold the group")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[BotProcess, SlackStandIn, int]]:
    fleet = _fleet_size_for(DEVICES, SEED)
    sandbox = create_sandbox(devices=fleet, seed=SEED, callback_concurrency=16)
    sandbox_server = ServerThread(sandbox.app).start()
    standin = SlackStandIn().start()
    bot = BotProcess(tmp_path, standin=standin, thingspace_url=sandbox_server.url, approval_size=DEVICES)
    try:
        yield bot, standin, fleet
    finally:
        bot.stop()
        standin.stop()
        sandbox_server.stop()
        sandbox.close()


@pytest.mark.perf
def test_bulk_suspend_of_10000_devices_answered_by_callbacks(
    world: tuple[BotProcess, SlackStandIn, int],
) -> None:
    """10,000 callbacks are accepted at ≥ 1,500/s, the summary follows within 5 s, with at most
    40 Slack calls and none lost."""
    bot, standin, fleet = world
    bot.start()
    bot.wait_until("SELECT count(*) FROM devices", lambda n: n == fleet, timeout=60)
    bot.register_callbacks()
    calls_before = len(standin.calls())
    with bot.driver() as driver:
        answer = driver.command(
            "suspend group:plant-7 --reason decommissioned", user="U012ADMIN", channel="C0OPS"
        )
        # more lines than the ack checks: it says so, and the worker's card replaces it
        assert f"Checking {DEVICES:,} lines for suspend" in answer.json()["text"]
        standin.wait_for(lambda m: m.ephemeral and f"Suspend {DEVICES:,} devices?" in m.text, timeout=120)
        # the card is redrawn once every line's limits are read: the line at its daily limit leaves it
        standin.wait_for(
            lambda m: m.ephemeral and m.updated and "provisioning actions today" in str(m.blocks), timeout=120
        )
        driver.click("Confirm", user="U012ADMIN")
    summary = standin.wait_for(lambda m: "suspended" in m.text and "done:" in m.text, timeout=120)
    bot.settled()
    ((request_id, total),) = bot.query(
        "SELECT request_id, device_count FROM ts_requests WHERE verb = 'suspend'"
    )
    sent = DEVICES - 1  # all but the line at its daily limit, refused before ThingSpace
    assert total == sent
    ((first, last, stored),) = bot.query(
        "SELECT min(received_at), max(received_at), count(*) FROM inbox WHERE request_id = ?", [request_id]
    )
    final = standin.message(summary.channel, summary.ts)
    shown_at = next(v.at for v in final.versions if "done:" in v.text)
    ((pending,),) = bot.query(
        "SELECT count(*) FROM ts_request_devices WHERE request_id = ? AND status = 'pending'", [request_id]
    )
    calls = standin.calls()[calls_before:]
    web_api = [c for c in calls if c.method != "response_url"]
    rate = stored / max(last - first, 1e-9)
    latency = shown_at - last
    print(
        f"\ncallbacks: {stored:,} stored in {last - first:.2f} s = {rate:,.0f} accepted/s (target ≥ 1,500/s)"
        f"\nlast callback → final summary in Slack: {latency:.2f} s (target ≤ 5 s)"
        f"\nSlack Web API calls: {len(web_api)} (target ≤ 40): {dict(Counter(c.method for c in web_api))}"
        f"\ncallbacks lost: {pending} (must be 0) · summary: {final.text}"
    )
    assert stored == sent and pending == 0
    assert f"of {sent:,} suspended" in final.text
    assert rate >= 1500
    assert latency <= 5.0
    assert len(web_api) <= 40
