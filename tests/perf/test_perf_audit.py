"""Audit log benchmark: 1,000,000 appends, device-history latency, full verification, retention.

Run with ``pytest tests/perf/test_perf_audit.py -s`` to see the figures. Targets (issue 4): history
for one device below 20 ms, full verification below 10 s. Timing is printed, not asserted.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.audit.log import AuditEvent, AuditLog, Outcome, Verb, apply_retention, verify
from storage.db import write
from storage.schema import open_database

EVENTS = 1_000_000
BATCH = 10_000
DEVICES = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)
VERBS = (Verb.SUSPEND, Verb.DIAG, Verb.CONFIRM, Verb.THINGSPACE_CALL, Verb.CALLBACK, Verb.ALERT_RAISE)


def iccid(n: int) -> str:
    return f"iccid:8914800000{n:010d}"


def events(first: int, count: int) -> Iterator[AuditEvent]:
    """Realistic rows: 50 users, 6 verbs, one device each (every 10th also names a group), small detail."""
    for i in range(first, first + count):
        targets = [iccid(i % DEVICES)]
        if i % 10 == 0:
            targets.append(f"group:site-{i % 40}")
        yield AuditEvent(
            at=START + timedelta(seconds=i),
            actor=f"U{i % 50:06d}",
            channel="C0OPS",
            verb=VERBS[i % len(VERBS)],
            targets=targets,
            reason="benchmark",
            outcome=Outcome.ACCEPTED,
            request_id=f"req-{i:08d}",
            detail={"latency_ms": 12.5, "n": i},
        )


@pytest.mark.perf
def test_audit_million_appends_history_and_verify(tmp_path: Path) -> None:
    """Prints appends per second, history latency, verification, single-record and retention times."""
    path = tmp_path / "tsbot.db"
    db = open_database(path)  # synchronous=FULL, as in production
    log = AuditLog(db)

    build_s = record_s = 0.0
    for first in range(0, EVENTS, BATCH):
        t0 = time.perf_counter()
        batch = list(events(first, BATCH))
        t1 = time.perf_counter()
        log.record_many(batch)
        t2 = time.perf_counter()
        build_s += t1 - t0
        record_s += t2 - t1
    assert log.count() == EVENTS

    rng = random.Random(4)
    latencies: list[float] = []
    for _ in range(300):
        device = iccid(rng.randrange(DEVICES))
        t0 = time.perf_counter()
        rows = log.query(target=device, limit=20)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert rows and all(device in r.targets for r in rows)
    bare: list[float] = []
    for _ in range(100):
        device = iccid(rng.randrange(DEVICES)).split(":")[1]
        t0 = time.perf_counter()
        log.query(target=device, limit=20)
        bare.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    page = log.query(target="group:site-10", actor="U000010", limit=20)
    combined_ms = (time.perf_counter() - t0) * 1000
    assert len(page) == 20 and all(r.actor == "U000010" for r in page)

    t0 = time.perf_counter()
    result = verify(db)
    verify_s = time.perf_counter() - t0
    assert (result.ok, result.rows) == (True, EVENTS), result.reason

    single: list[float] = []
    nested: list[float] = []
    for n, one in enumerate(events(EVENTS, 200)):
        t0 = time.perf_counter()
        if n % 2:
            with write(db):
                log.record(one)
            nested.append((time.perf_counter() - t0) * 1000)
        else:
            log.record(one)
            single.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    retained = apply_retention(
        db, older_than=START + timedelta(seconds=100_000), archive_path=tmp_path / "archive.jsonl"
    )
    retention_s = time.perf_counter() - t0
    assert retained.removed == 100_000

    latencies.sort()
    size_mb = path.stat().st_size / 1e6
    print(
        "\n--- audit log benchmark (storage.audit) ---\n"
        f"appends            : {EVENTS:,} events in batches of {BATCH:,} (record_many, synchronous=FULL)\n"
        f"  record_many      : {EVENTS / record_s:,.0f} appends/s ({record_s:.1f} s)\n"
        f"  incl. building   : {EVENTS / (record_s + build_s):,.0f} events/s end to end "
        f"(AuditEvent construction {build_s / EVENTS * 1e6:.1f} µs each)\n"
        f"history one device : median {statistics.median(latencies):.2f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.2f} ms, max {latencies[-1]:.2f} ms "
        f"(query(target=iccid:…, limit=20), {DEVICES:,} devices; target < 20 ms)\n"
        f"  bare id (9 kinds): median {statistics.median(bare):.2f} ms\n"
        f"  group + actor    : {combined_ms:.2f} ms\n"
        f"full verification  : {verify_s:.2f} s for {result.rows:,} rows "
        f"({result.rows / verify_s:,.0f} rows/s; target < 10 s)\n"
        f"one record()       : median {statistics.median(single):.2f} ms on its own (commit + head file written "
        f"and confirmed, fsync'd), {statistics.median(nested):.2f} ms inside a caller's write(db)\n"
        f"retention          : {retention_s:.2f} s to archive and remove 100,000 rows\n"
        f"database size      : {size_mb:,.0f} MB ({size_mb * 1e6 / EVENTS:,.0f} bytes per row with indexes)\n"
    )
