"""Benchmark: `/ts diag` with a slow ThingSpace (every call answered after 200 ms).

A diagnosis makes five ThingSpace calls. Run one after the other they would take ≥ 1 s; run in
parallel, about one call's latency. Target: p50 of the checks below 600 ms. Also printed: the
time from the slash command to the card in the stand-in (worker pick-up and outbox included).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.local_stack import LocalStack
from bot.thingspace.ids import DeviceId
from commands.diag import CHECKS, gather
from commands.verdict import judge

pytestmark = pytest.mark.perf

RUNS = 20
LATENCY = 0.2


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_diag_checks_run_in_parallel(tmp_path: Path) -> None:
    """Prints p50/p90 of the diag checks and of command-to-card with 200 ms per ThingSpace call."""
    with LocalStack(tmp_path, devices=40, scheduler=False) as stack:
        assert stack.runtime is not None
        deps = stack.runtime.deps
        # every demo line but the one whose diagnostics fail on purpose (its retries are not the figure)
        demo = {k: v for k, v in stack.sandbox.demo_devices().items() if k != "diag-unavailable"}
        targets = [DeviceId.from_wire({"kind": "iccid", "id": d["iccid"]}) for d in demo.values()]
        gather(deps, targets[0], str(targets[0]))  # warm up: token, session, connections
        stack.sandbox.set_latency(LATENCY)

        checks: list[float] = []
        grades: dict[str, int] = {}
        for i in range(RUNS):
            device = targets[i % len(targets)]
            started = time.perf_counter()
            facts, _ = gather(deps, device, str(device), now=datetime.now(UTC))
            checks.append(time.perf_counter() - started)
            assert not facts.failed, facts.failed
            grade = judge(facts).grade
            grades[grade] = grades.get(grade, 0) + 1

        end_to_end: list[float] = []
        for i in range(RUNS):
            device = targets[i % len(targets)]
            before = {m.ts for m in stack.standin.messages()}
            started = time.perf_counter()
            stack.command(f"diag {device}")
            stack.standin.wait_for(
                lambda m, seen=before: m.ts not in seen and "ThingSpace checks answered" in str(m.blocks),
                timeout=30,
            )
            end_to_end.append(time.perf_counter() - started)

    serial = len(CHECKS) * LATENCY
    p50 = statistics.median(checks)
    print(
        f"\ndiag, {len(CHECKS)} ThingSpace calls at {LATENCY * 1000:.0f} ms each (serial would be ≥ {serial * 1000:.0f} ms), "
        f"{RUNS} runs over {len(targets)} demo devices; grades {grades}\n"
        f"  checks:            p50 {p50 * 1000:.0f} ms · p90 {_p(checks, 0.9) * 1000:.0f} ms · "
        f"max {max(checks) * 1000:.0f} ms (target p50 < 600 ms)\n"
        f"  command to card:   p50 {statistics.median(end_to_end) * 1000:.0f} ms · "
        f"p90 {_p(end_to_end, 0.9) * 1000:.0f} ms"
    )
    assert p50 < 0.6, f"checks p50 {p50:.3f} s: the checks are not running in parallel"
