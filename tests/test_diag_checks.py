"""The diag checks (commands/diag.py): parallel, bounded, each under its own timeout, against a real sandbox."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.console.blocks import validate_blocks
from bot.sandbox import Sandbox, create_sandbox
from bot.serving import ServerThread
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import DeviceNotFound, ThingSpaceTimeout
from bot.thingspace.ids import DeviceId
from commands.context import Deps
from commands.diag import CHECKS, card, gather, run_checks
from commands.verdict import Evidence, NextStep, Verdict, judge
from storage.db import ConnectionPool


def test_checks_really_run_at_the_same_time() -> None:
    """Five checks that each wait for the other four all finish: they ran in parallel."""
    barrier = threading.Barrier(5, timeout=5)

    def check(n: int) -> Callable[[], int]:
        def run() -> int:
            barrier.wait()
            return n

        return run

    results = run_checks({f"c{n}": check(n) for n in range(5)}, timeout=10)
    assert {name: r.value for name, r in results.items()} == {f"c{n}": n for n in range(5)}
    assert all(r.ok for r in results.values())


def test_parallelism_is_bounded() -> None:
    """No more than max_parallel checks run at once."""
    lock = threading.Lock()
    active = 0
    peak = 0

    def run() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    results = run_checks({f"c{n}": run for n in range(6)}, timeout=10, max_parallel=2)
    assert len(results) == 6 and all(r.ok for r in results.values())
    assert peak == 2


def test_a_check_past_its_timeout_is_reported_and_the_rest_answer() -> None:
    """A hung check is named with its timeout; the others still return their values."""
    release = threading.Event()
    try:
        results = run_checks(
            {"slow": lambda: release.wait(30), "fast": lambda: "ok"},
            timeout={"slow": 0.2, "fast": 5},
        )
    finally:
        release.set()
    assert results["fast"].value == "ok"
    assert not results["slow"].ok
    assert results["slow"].error == "no answer within 0.2 s"


def test_thingspace_errors_become_their_user_message() -> None:
    """A ThingSpace error is shown as its one-sentence user message."""

    def fail() -> Any:
        raise ThingSpaceTimeout("POST /m2m/v1/devices/usage/actions/list: ReadTimeout")

    results = run_checks({"usage": fail, "line": lambda: 1})
    assert results["usage"].error == "ThingSpace took too long to answer; try again in a few minutes."
    assert results["line"].ok


def test_a_bug_in_a_check_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception fails only its check, with a generic message and a log entry."""

    def broken() -> Any:
        raise KeyError("nope")

    with caplog.at_level(logging.ERROR, logger="commands.diag"):
        results = run_checks({"hardware": broken})
    assert results["hardware"].error == "failed unexpectedly (see the bot's log)"
    assert "diag check hardware failed unexpectedly" in caplog.text


def test_no_checks_no_threads() -> None:
    """An empty set of checks returns an empty result."""
    assert run_checks({}) == {}


@pytest.fixture
def sandbox_deps(tmp_path: Path) -> Iterator[tuple[Deps, Sandbox]]:
    """Real parts: a sandbox over loopback, the ThingSpace client, a SQLite pool."""
    sandbox = create_sandbox(devices=20)
    server = ServerThread(sandbox.app).start()
    client = ThingSpaceClient(
        server.url,
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        username="sandbox-user",
        password="sandbox-pass",
        account="0000123456-00001",
    )
    pool = ConnectionPool(tmp_path / "tsbot.db")
    try:
        yield Deps(settings=Settings(), pool=pool, thingspace=client), sandbox
    finally:
        client.close()
        pool.close()
        server.stop()
        sandbox.close()


def test_a_slow_thingspace_call_times_out_and_the_verdict_uses_the_rest(
    sandbox_deps: tuple[Deps, Sandbox],
) -> None:
    """Connection history held back past its timeout: named as failed; the line is still judged."""
    deps, sandbox = sandbox_deps
    device = DeviceId.from_wire({"kind": "iccid", "id": sandbox.demo_devices()["hung"]["iccid"]})
    sandbox.inject_fault("/m2m/v1/devices/connections/actions/listHistory", latency=1.5)
    timeouts = {name: 10.0 for name in CHECKS} | {"sessions": 0.3}
    facts, _ = gather(deps, device, str(device), timeout=timeouts)
    assert dict(facts.failed) == {"connection history": "no answer within 0.3 s"}
    assert facts.events is None
    verdict = judge(facts)
    assert verdict.grade == "down"
    assert "no data session for 26 h" in verdict.summary


def test_an_unknown_line_is_not_diagnosed(sandbox_deps: tuple[Deps, Sandbox]) -> None:
    """A line ThingSpace does not know raises DeviceNotFound instead of an empty verdict."""
    deps, _ = sandbox_deps
    device = DeviceId.from_wire({"kind": "iccid", "id": "89148000000000000003"})
    with pytest.raises(DeviceNotFound):
        gather(deps, device, str(device))


def test_card_stays_within_block_kit_limits() -> None:
    """A verdict with a huge evidence list still makes a card Slack accepts (≤ 50 blocks, ≤ 3000 chars)."""
    evidence = tuple(Evidence(f"Topic {i}", "x" * 900, "warn") for i in range(200))
    steps = tuple(NextStep(f"Step {i}", f"watch iccid:8914800000080013970{i % 10}") for i in range(4))
    verdict = Verdict(grade="degraded", summary="S" * 4000, evidence=evidence, steps=steps)
    body = card(verdict, "demo-hung (iccid …4504)", checks=5, seconds=0.2, now=datetime.now(UTC))
    assert validate_blocks(body) == []
    assert len(body) <= 50
    assert body[-1]["type"] == "context"
