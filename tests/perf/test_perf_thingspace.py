"""ThingSpace client benchmark: 2,000 extended-diagnostics calls to the sandbox over loopback.

Run with ``pytest tests/perf/test_perf_thingspace.py -s`` to see the figures. Target (issue 2):
at least 400 calls/s, sequential, one client reusing its connection. Timing is printed, not
asserted. A second figure splits a call's time, from a profile of the calling thread: the
client's own code, the HTTP libraries, and the rest (mostly the sandbox, which runs on a thread
of the same process and shares its GIL and the 2 cores).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time

import pytest

from bot.thingspace import parse_device_id
from tests.helpers.thingspace import LOGIN_PATH, client_for, running_sandbox

CALLS = 2_000
PROFILED = 300
TARGET = 400.0
DEVICE = parse_device_id("iccid:89148000000800139708")
DIAG_PATH = "/m2m/v1/devices/extendeddiagnostics/actions/list"
_HTTP_LIBS = ("/httpx/", "/httpcore/", "/h11/")


@pytest.mark.perf
def test_extended_diagnostics_throughput() -> None:
    """Prints calls/s and p50/p99 latency of 2,000 sequential diagnostics calls over one connection."""
    with running_sandbox(devices=200) as running, client_for(running.url) as client:
        for _ in range(20):  # warm-up: token, login, connection, code paths
            client.extended_diagnostics(DEVICE)
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(CALLS):
            t0 = time.perf_counter()
            diag = client.extended_diagnostics(DEVICE)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        assert diag.state == "active"
        assert running.count(LOGIN_PATH) == 1
        assert running.count(DIAG_PATH) == CALLS + 20

        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        for _ in range(PROFILED):
            client.extended_diagnostics(DEVICE)
        profile.disable()
        profiled_wall = time.perf_counter() - t0

    rate = CALLS / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    print()
    print(f"extended diagnostics over loopback: {CALLS} calls in {elapsed:.2f} s = {rate:,.0f} calls/s")
    print(
        f"  latency p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms"
    )
    print(f"  target {TARGET:.0f} calls/s: {'met' if rate >= TARGET else 'MISSED'}")
    rows = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # undocumented but stable
    ours = sum(row[2] for (filename, _, _), row in rows.items() if "bot/thingspace" in filename)
    http = sum(row[2] for (filename, _, _), row in rows.items() if any(m in filename for m in _HTTP_LIBS))
    per_call = 1e6 / PROFILED
    print(
        f"  where a call's time goes (under cProfile, {PROFILED} calls, {profiled_wall * per_call:.0f} µs each):"
    )
    print(f"    bot/thingspace (client + auth, own time)  {ours * per_call:6.0f} µs")
    print(f"    httpx / httpcore / h11 (own time)         {http * per_call:6.0f} µs")
    print(
        f"    the rest: socket waits, the sandbox (same process, shares the GIL), stdlib  "
        f"{(profiled_wall - ours - http) * per_call:6.0f} µs"
    )
