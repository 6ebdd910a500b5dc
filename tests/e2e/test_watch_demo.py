"""``tsbot demo``: with the demo's short thresholds, ``reach ID down`` brings an alert card within a
minute, driven by the real scheduler (the recovery path is covered with an injected clock in
tests/e2e/test_watch_e2e.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.cli.demo import Console
from bot.core.reachability import DEMO_SETTINGS
from bot.local_stack import LocalStack
from bot.sandbox import EXAMPLE_ICCID


@pytest.mark.slow
def test_reach_down_in_the_demo_raises_an_alert_within_a_minute(tmp_path: Path) -> None:
    """Console lines: watch, reach down → a card within a minute; Acknowledge updates it."""
    stack = LocalStack(tmp_path, devices=30, settings_overrides=dict(DEMO_SETTINGS))
    stack.start()
    try:
        out = io.StringIO()
        console = Console(stack, out)
        console.attach()
        console.run_lines([f"/ts watch iccid:{EXAMPLE_ICCID}", f"reach {EXAMPLE_ICCID} down"])
        card = stack.standin.wait_for(
            lambda m: m.thread_ts is None and "Unreachable" in str(m.blocks), timeout=60
        )
        console.run_lines(["click Acknowledge"])
        stack.standin.wait_for(lambda m: m.ts == card.ts and "Acknowledged" in str(m.blocks), timeout=10)
        assert console.errors == 0
        shown = out.getvalue()
        assert "*Unreachable* · *demo-usage-spike" in shown and "Acknowledged by @U012ADMIN" in shown
    finally:
        stack.stop()
