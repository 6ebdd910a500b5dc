"""Concurrent appends from several threads, each on its own connection, keep one valid chain."""

from __future__ import annotations

import threading
from pathlib import Path

from storage.audit.log import AuditEvent, AuditLog, Verb, VerifyResult, verify
from storage.db import write
from storage.pool import ConnectionPool

THREADS = 4
ROUNDS = 12


def test_four_threads_appending_keep_a_valid_chain(tmp_path: Path) -> None:
    """4 writers (record, record_many, transaction(), bare write) and a verifier: every verdict ok, one chain."""
    pool = ConnectionPool(tmp_path / "tsbot.db")
    pool.get().execute("CREATE TABLE state (thread INTEGER, round INTEGER)")
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    verdicts: list[VerifyResult] = []

    # An exception in a thread fails the test through pytest's unhandled-thread-exception warning.
    def writer(n: int) -> None:
        db = pool.get()
        log = AuditLog(db)
        start.wait()
        for r in range(ROUNDS):
            mine = AuditEvent(
                actor=f"U{n}", verb=Verb.SUSPEND, targets=[f"iccid:8914{n:016d}"], detail={"r": r}
            )
            log.record(mine)
            log.record_many([mine, mine])
            with log.transaction():
                db.execute("INSERT INTO state VALUES (?, ?)", (n, r))
                log.record(mine)
            with write(db):
                log.record(mine)

    def verifier() -> None:
        db = pool.get()
        start.wait()
        while not done.is_set():
            verdicts.append(verify(db))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    checker = threading.Thread(target=verifier)
    for t in [*threads, checker]:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    checker.join(timeout=60)
    assert verdicts and all(v.ok for v in verdicts), [v.reason for v in verdicts if not v.ok]

    db = pool.get()
    log = AuditLog(db)
    expected = THREADS * ROUNDS * 5
    assert log.count() == expected
    assert [r[0] for r in db.execute("SELECT id FROM audit_log ORDER BY id")] == list(range(1, expected + 1))
    assert db.execute("SELECT count(*) FROM state").fetchone() == (THREADS * ROUNDS,)
    for n in range(THREADS):
        assert len(log.query(target=f"iccid:8914{n:016d}", limit=1000)) == ROUNDS * 5
    log.anchor()
    final = verify(db)
    assert (final.ok, final.rows, final.anchored_id, final.note) == (True, expected, expected, "")
    pool.close()
