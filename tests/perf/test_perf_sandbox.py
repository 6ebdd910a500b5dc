"""Sandbox benchmarks: callback fan-out of a 10,000-line bulk suspend, and diagnostics answers.

Run with ``pytest tests/perf/test_perf_sandbox.py -s`` to see the figures (printed, not asserted).
The callback figure is the sandbox's own sending rate to a minimal listener in the same process;
the bot's intake benchmark (≥ 1,500 callbacks/s accepted) runs behind this sender.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.sandbox import EXAMPLE_ICCID
from bot.serving import ServerThread
from tests.helpers.sandbox import ACCOUNT, Api, running_sandbox, wait_until

pytestmark = pytest.mark.perf


def test_bulk_suspend_callback_throughput() -> None:
    """10,000 lines suspended in one request: time until every per-device callback reached a listener."""
    received = 0
    lock = threading.Lock()

    async def endpoint(request: Request) -> Response:
        nonlocal received
        await request.body()
        with lock:
            received += 1
        return Response(b"", status_code=200)

    listener = ServerThread(Starlette(routes=[Route("/cb", endpoint, methods=["POST"])])).start()
    try:
        with running_sandbox(devices=10_000) as (sandbox, url, _clock), Api(url) as api:
            api.register("CarrierService", listener.url + "/cb")
            ids = [("iccid", d.iccid) for d in sandbox.state.devices if not d.stuck]
            started = time.perf_counter()
            api.action("suspend", *ids)
            accepted = time.perf_counter() - started
            wait_until(lambda: received >= len(ids), timeout=60)
            elapsed = time.perf_counter() - started
            print(
                f"\nsandbox bulk suspend: {len(ids)} lines, request answered in {accepted * 1000:.0f} ms, "
                f"all callbacks delivered in {elapsed:.2f} s = {len(ids) / elapsed:,.0f} callbacks/s "
                "(16 in flight, listener in the same process)"
            )
    finally:
        listener.stop()


def test_extended_diagnostics_answers_per_second() -> None:
    """2,000 sequential extended-diagnostics calls over one keep-alive connection: rate and p50/p99."""
    with running_sandbox(devices=10_000) as (_sandbox, url, _clock), Api(url) as api:
        body = {"accountName": ACCOUNT, "deviceList": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]}
        path = "/m2m/v1/devices/extendeddiagnostics/actions/list"
        for _ in range(50):
            api.post(path, body)
        latencies = []
        started = time.perf_counter()
        for _ in range(2000):
            t0 = time.perf_counter()
            response = api.post(path, body)
            latencies.append(time.perf_counter() - t0)
            assert response.status_code == 200
        elapsed = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100)
        print(
            f"\nsandbox extended diagnostics: {2000 / elapsed:,.0f} calls/s sequential (plain httpx client), "
            f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms"
        )


def test_device_list_paging_time() -> None:
    """Reading a 10,000-line fleet in 2,000-device pages: time per page."""
    with running_sandbox(devices=10_000) as (_sandbox, url, _clock), Api(url) as api:
        pages, cursor = 0, 0
        started = time.perf_counter()
        while True:
            response = api.post(
                "/m2m/v1/devices/actions/list", {"accountName": ACCOUNT, "largestDeviceIdSeen": cursor}
            )
            page = response.json()
            pages += 1
            if not page["hasMoreData"]:
                break
            last = page["devices"][-1]["extendedAttributes"]
            cursor = int(next(a["value"] for a in last if a["key"] == "DeviceId"))
        elapsed = time.perf_counter() - started
        print(
            f"\nsandbox device list: 10,000 lines in {pages} pages, {elapsed / pages * 1000:.0f} ms per page"
        )
