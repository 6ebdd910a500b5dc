"""Benchmark: drawing the `/ts usage` chart (matplotlib, Agg backend).

Target: a 30-day chart (stacked domestic/international bars, plan line, usual range) in under
300 ms at p95; a 365-day one is printed too. The first draw pays matplotlib's import and is left out.
"""

from __future__ import annotations

import statistics
import time
from datetime import date, timedelta

import pytest

from bot.render.chart import ChartSpec, render_usage_chart

pytestmark = pytest.mark.perf

RUNS = 20


def _spec(days: int) -> ChartSpec:
    when = [date(2026, 1, 1) + timedelta(days=i) for i in range(days)]
    home = [(i * 7919) % 3_000_000 for i in range(days)]
    return ChartSpec("Usage", when, home, [h // 3 for h in home], 1_000_000.0, (5e5, 2e6), when[::9])


@pytest.mark.parametrize("days", [30, 365])
def test_chart_render_time(days: int) -> None:
    spec = _spec(days)
    render_usage_chart(spec)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        render_usage_chart(spec)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p50, p95 = statistics.median(times), times[int(0.95 * (RUNS - 1))]
    print(f"\nusage chart, {days} days: p50 {p50:.0f} ms, p95 {p95:.0f} ms over {RUNS} draws")
    assert p95 < 300
