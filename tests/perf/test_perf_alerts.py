"""Benchmark of reachability alerting (run with ``pytest tests/perf/test_perf_alerts.py -s``).

100,000 watched devices (``PERF_WATCHED``) in 100 channels (a fifth of them sleepy), on one SQLite file. Each tick is
one simulated minute: 1% of the devices (1,000) change reachability — DiagnosticsService callbacks
parsed and applied as the inbox worker applies them, in one transaction — then one evaluation
tick runs (snooze expiry, recoveries, due watches → alerts, grouped cards, audit rows, outbox).
Alerts fire 5 minutes after a device goes down and resolve 2 minutes after it comes back, so the
steady state raises, groups and resolves hundreds of alerts per tick.

Prints CPU seconds per evaluation tick (target < 1 s), CPU seconds to apply a tick's 1,000
callbacks, and the process's resident memory (target < 300 MB).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core import reachability
from bot.core.config import Settings
from bot.thingspace import shapes
from bot.thingspace.events import parse_callback
from storage import alerts, watches
from storage.db import write
from storage.pool import ConnectionPool
from storage.watches import WatchSpec

pytestmark = pytest.mark.perf

#: ``PERF_WATCHED=1000000`` runs it at a million watched lines (``PERF_TICKS`` to shorten it)
DEVICES = int(os.environ.get("PERF_WATCHED", "100000"))
CHANNELS = 100
CHANGES_PER_TICK = DEVICES // 100
TICKS = int(os.environ.get("PERF_TICKS", "30"))
T0 = 1_800_000_000.0


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB, from /proc."""
    values: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = float(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _payload(device: str, reachable: bool, at: float) -> dict[str, object]:
    ident = device.split(":", 1)[1]
    return {
        "username": "u",
        "password": "p",
        "requestId": f"note-{ident}-{int(at)}",
        "deviceIds": [{"id": ident, "kind": "iccid"}],
        shapes.DIAGNOSTICS: {
            "monitorId": f"mon-{ident}",
            "monitorType": "REACHABLE_FOR_DATA_AND_LOSS",
            "reachabilityStatus": shapes.REACHABLE if reachable else shapes.UNREACHABLE,
            "eventTime": datetime.fromtimestamp(at, UTC).isoformat(),
        },
        "status": "Success",
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
    }


def test_evaluation_tick_with_100k_watched_devices(tmp_path: Path) -> None:
    """100,000 watches, 1,000 state changes per tick: CPU per evaluation tick and resident memory."""
    settings = Settings(
        db_path=str(tmp_path / "bot.db"),
        alert_recover_after=timedelta(minutes=2),
        alert_group_window=timedelta(minutes=10),
        alert_group_threshold=5,
        alert_realert_after=timedelta(hours=1),
    )
    pool = ConnectionPool(settings.db_path, synchronous="NORMAL")
    db = pool.get()
    rng = random.Random(7)
    devices = [f"iccid:8914800000{i:010d}" for i in range(DEVICES)]
    started = time.perf_counter()
    with write(db):
        specs = [
            WatchSpec(
                device=d,
                kind="iccid",
                ident=d.split(":", 1)[1],
                channel=f"C{i % CHANNELS:04d}",
                alert_after=None if i % 5 == 0 else 300.0,
                wake_every=900.0 if i % 5 == 0 else None,
                missed_wakes=2,
                due_at=None,
            )
            for i, d in enumerate(devices)
        ]
        watches.upsert_watches(db, specs, by="U0PERF", now=T0)
        db.conn.executemany(
            "INSERT INTO reach_state (device, reachable, since, last_reachable_at, last_event_at, updated_at) "
            "VALUES (?, 1, ?, ?, ?, ?)",
            [(d, T0, T0, T0, T0) for d in devices],
        )
    setup = time.perf_counter() - started
    reachable = dict.fromkeys(devices, True)
    eval_cpu: list[float] = []
    apply_cpu: list[float] = []
    totals = {"raised": 0, "recovered": 0, "grouped": 0, "groups": 0, "reopened": 0}
    now = T0
    for _ in range(TICKS):
        now += 60
        changed = rng.sample(devices, CHANGES_PER_TICK)
        events = [parse_callback(_payload(d, not reachable[d], now - rng.random() * 50)) for d in changed]
        cpu = time.process_time()
        with write(db):
            for event in events:
                reachability.apply_event(db, event, now=now)
        apply_cpu.append(time.process_time() - cpu)
        for d in changed:
            reachable[d] = not reachable[d]
        cpu = time.process_time()
        tick = reachability.evaluate(db, settings, now=now)
        eval_cpu.append(time.process_time() - cpu)
        totals["raised"] += tick.raised
        totals["recovered"] += tick.recovered
        totals["grouped"] += tick.grouped
        totals["groups"] += tick.groups_opened
        totals["reopened"] += tick.reopened
    rss, peak = _rss_mb()
    open_now = alerts.count_open(db)
    cards = int(
        db.execute("SELECT count(*) FROM outbox WHERE kind = 'post' AND thread_key IS NULL").fetchone()[0]
    )
    steady = eval_cpu[10:]
    print(
        f"\n[alerts] {DEVICES:,} watched devices in {CHANNELS} channels ({DEVICES // 5:,} sleepy); setup {setup:.1f} s"
        f"\n[alerts] {TICKS} ticks × {CHANGES_PER_TICK:,} state changes: raised {totals['raised']:,} "
        f"({totals['grouped']:,} into {totals['groups']:,} grouped cards, {totals['reopened']:,} reopened), "
        f"recovered {totals['recovered']:,}; open now {open_now:,}; channel cards posted {cards:,}"
        f"\n[alerts] evaluation tick CPU: median {statistics.median(eval_cpu):.3f} s, "
        f"steady-state max {max(steady):.3f} s, max {max(eval_cpu):.3f} s (target < 1 s)"
        f"\n[alerts] applying 1,000 callbacks per tick CPU: median {statistics.median(apply_cpu):.3f} s"
        f"\n[alerts] resident memory {rss:.0f} MB, peak {peak:.0f} MB (target < 300 MB)"
    )
    assert totals["raised"] > 1000 and totals["recovered"] > 1000 and totals["groups"] > 0
    assert max(eval_cpu) < 1.0
    assert peak < 300
    pool.close()
