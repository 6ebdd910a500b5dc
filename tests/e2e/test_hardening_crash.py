"""kill -9 right after a Confirm: the confirmed action is resumed at the restart, not 120 s later
when its job lease runs out, and the requester is told (issue 14, finding 10)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.console.standin import SlackStandIn
from bot.sandbox import EXAMPLE_ICCID, Sandbox, create_sandbox
from bot.serving import ServerThread
from tests.helpers.callbacks import BotProcess


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[BotProcess, SlackStandIn, Sandbox]]:
    sandbox = create_sandbox(devices=30)
    sandbox_server = ServerThread(sandbox.app).start()
    standin = SlackStandIn().start()
    bot = BotProcess(tmp_path, standin=standin, thingspace_url=sandbox_server.url)
    try:
        yield bot, standin, sandbox
    finally:
        bot.stop()
        standin.stop()
        sandbox_server.stop()
        sandbox.close()


def test_a_confirmed_action_interrupted_by_kill_9_resumes_at_restart(
    world: tuple[BotProcess, SlackStandIn, Sandbox],
) -> None:
    bot, standin, sandbox = world
    bot.start()
    with bot.driver() as driver:
        driver.command(f"suspend iccid:{EXAMPLE_ICCID} --reason stolen", user="U012ADMIN", channel="C0OPS")
        bot.wait_until("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')", lambda n: n == 0)
        sandbox.set_latency(30)  # ThingSpace hangs: the confirmed action stays "running"
        driver.click("Confirm", user="U012ADMIN")
    bot.wait_until("SELECT count(*) FROM jobs WHERE kind = 'execute' AND state = 'running'", lambda n: n == 1)
    bot.kill()
    sandbox.set_latency(0)
    restarted = time.monotonic()
    bot.start()
    standin.wait_for(lambda m: "It is being resumed now" in m.text and m.ephemeral, timeout=20)
    bot.wait_until(
        "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running', 'submitting')", lambda n: n == 0, 30
    )
    standin.wait_for(lambda m: "stolen" in m.text and not m.ephemeral, timeout=20)
    assert time.monotonic() - restarted < 60  # the lease is 120 s
    suspends = [r for r in sandbox.requests_received() if r["path"].endswith("/devices/actions/suspend")]
    assert len(suspends) == 1
