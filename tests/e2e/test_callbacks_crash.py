"""kill -9 during a burst of callbacks: every callback that got a 2xx is reflected in Slack.

The bot runs as ``python -m bot serve`` in a child process, against a sandbox and the Slack
stand-in served here. A bulk suspend goes through the real command path; the sandbox has no
listener registered, so the test plays ThingSpace and sends the callbacks itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.console.standin import SlackStandIn
from tests.helpers.callbacks import BotProcess, callback, send_callbacks
from tests.helpers.stacks import served_sandbox, served_standin

FAULT = ("UnifiedWebService.REQUEST_FAILED.DeviceNotFound", "Device not found")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[BotProcess, SlackStandIn]]:
    with served_sandbox(devices=1000, seed=3) as (_sandbox, url), served_standin() as standin:
        bot = BotProcess(tmp_path, standin=standin, thingspace_url=url)
        try:
            yield bot, standin
        finally:
            bot.stop()


def _progress(standin: SlackStandIn, channel: str, ts: str) -> tuple[int, int]:
    """(answered, total) from the progress bar of the root message as Slack shows it now."""
    found = re.search(r"(\d[\d,]*) of (\d[\d,]*)", str(standin.message(channel, ts).blocks))
    assert found, "the root message has no progress bar"
    return int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))


@pytest.mark.slow
def test_sigkill_during_a_burst_loses_no_acknowledged_callback(
    world: tuple[BotProcess, SlackStandIn],
) -> None:
    """SIGKILL the bot while callbacks pour in; after a restart every callback answered 2xx shows
    in the progress message, and ThingSpace's retries of the rest complete the summary."""
    bot, standin = world
    bot.start()
    bot.wait_until("SELECT count(*) FROM devices", lambda n: n == 1000)
    with bot.driver() as driver:
        driver.command("suspend group:plant-7 --reason decommissioned", user="U012ADMIN", channel="C0OPS")
        driver.click("Confirm", user="U012ADMIN")
    root = standin.wait_for(
        lambda m: ("is suspending" in m.text or "> suspended " in m.text) and "decommissioned" in m.text,
        timeout=20,
    )
    ((request_id, total),) = bot.query(
        "SELECT request_id, device_count FROM ts_requests WHERE verb = 'suspend'"
    )
    devices = [
        r[0] for r in bot.query("SELECT device FROM ts_request_devices WHERE request_id = ?", [request_id])
    ]
    assert len(devices) == total > 100
    bodies = [callback(request_id, d, fault=FAULT if i % 25 == 0 else None) for i, d in enumerate(devices)]
    failures = len(range(0, total, 25))

    acked: set[int] = set()
    lock = threading.Lock()
    enough = threading.Event()

    def on_answer(index: int, status: int) -> None:
        if status == 200:
            with lock:
                acked.add(index)
                if len(acked) >= total * 0.4:
                    enough.set()

    sender = threading.Thread(
        target=send_callbacks,
        args=(bot.callback_url, bodies),
        kwargs={"concurrency": 8, "on_answer": on_answer},
    )
    sender.start()
    assert enough.wait(30), "the bot did not acknowledge callbacks"
    bot.kill()
    sender.join(60)
    with lock:
        acknowledged = set(acked)
    assert total * 0.4 <= len(acknowledged) < total, "the kill did not land during the burst"

    bot.start()
    bot.settled()
    answered = {
        r[0]
        for r in bot.query(
            "SELECT device FROM ts_request_devices WHERE request_id = ? AND status != 'pending'", [request_id]
        )
    }
    assert {devices[i] for i in acknowledged} <= answered
    done, shown_total = _progress(standin, root.channel, root.ts)
    assert shown_total == total
    assert done == len(answered) >= len(acknowledged)

    retries = [
        callback(request_id, devices[i], count=2, fault=FAULT if i % 25 == 0 else None)
        for i in range(total)
        if i not in acknowledged
    ]
    assert set(send_callbacks(bot.callback_url, retries, concurrency=8)) == {200}
    bot.settled()
    final = standin.message(root.channel, root.ts)
    assert f"done: {total - failures:,} of {total:,} suspended, {failures:,} failed" in final.text
    assert _progress(standin, root.channel, root.ts) == (total, total)
    posts = [c for c in standin.calls("chat.postMessage") if c.ok and c.params.get("channel") == root.channel]
    assert sum("is suspending" in str(c.params.get("text", "")) for c in posts) == 1
