"""One scheduler at a time across processes: two `tsbot serve` processes started on one database
(one runs the jobs; SIGKILL it and the other takes over). The lease and the job guard themselves:
tests/unit/test_scheduler_lease.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.scheduler.lease import LEASE_NAME
from tests.helpers.callbacks import BotProcess
from tests.helpers.stacks import served_sandbox, served_standin

LEASE_TTL_S = 3.0
CONFIG = """
[grants]
admin = ["U012ADMIN"]

[alerts]
evaluate_every = "1s"

[scheduler]
lease_ttl = "3s"
"""


def _holder(bot: BotProcess) -> tuple[str, float, float] | None:
    rows = bot.query("SELECT holder, acquired_at, expires_at FROM leases WHERE name = ?", [LEASE_NAME])
    return (str(rows[0][0]), float(rows[0][1]), float(rows[0][2])) if rows else None


def _pid_of(holder: str) -> int:
    return int(holder.split(":")[-2])  # host:pid:nonce


@pytest.fixture
def two_bots(tmp_path: Path) -> Iterator[tuple[BotProcess, BotProcess]]:
    """Two `python -m bot serve` processes on one database (started twice by mistake)."""
    with served_sandbox(devices=20, seed=5) as (_sandbox, url), served_standin() as standin:
        config = tmp_path / "lease.toml"
        config.write_text(CONFIG, encoding="utf-8")
        bots = []
        for name in ("first", "second"):
            (tmp_path / name).mkdir()
            bot = BotProcess(tmp_path / name, standin=standin, thingspace_url=url)
            bot.db_path = tmp_path / "bot.db"
            bot.env.update(
                {"TSBOT_DB": str(bot.db_path), "TSBOT_CONFIG": str(config), "TSBOT_LOG_LEVEL": "INFO"}
            )
            bots.append(bot)
        try:
            yield bots[0], bots[1]
        finally:
            for bot in bots:
                bot.kill()


@pytest.mark.slow
def test_two_processes_on_one_database_run_the_jobs_once_and_take_over_after_sigkill(
    two_bots: tuple[BotProcess, BotProcess],
) -> None:
    """Two real processes: every job runs in the lease holder only; SIGKILL it (no release, no
    shutdown code) and the other takes the jobs over once the lease expires, within lease_ttl plus
    one renewal."""
    first, second = two_bots
    first.start()
    assert first.proc is not None and first.wait_until(
        f"SELECT count(*) FROM leases WHERE name = 'scheduler' AND holder LIKE '%:{first.proc.pid}:%'",
        lambda n: n == 1,
    )
    second.start()
    assert second.proc is not None

    # Both running for several lease periods: only the first ever runs a job.
    runs_before = first.wait_until(
        "SELECT coalesce((SELECT runs FROM scheduler_job_runs WHERE job_id = 'reachability-evaluate'), 0)",
        lambda n: n >= 1,
    )
    holders: set[int] = set()
    deadline = time.monotonic() + 2 * LEASE_TTL_S
    while time.monotonic() < deadline:
        holders |= {_pid_of(r[0]) for r in first.query("SELECT holder FROM scheduler_job_runs")}
        lease_row = _holder(first)
        assert lease_row is not None
        holders.add(_pid_of(lease_row[0]))
        time.sleep(0.05)
    assert holders == {first.proc.pid}
    runs_after = first.query("SELECT runs FROM scheduler_job_runs WHERE job_id = 'reachability-evaluate'")[0][
        0
    ]
    assert runs_after >= runs_before + 3, "the holder stopped running the evaluation job"
    assert "holds the scheduler lease" in first.log_tail(10**6)
    assert "holds the scheduler lease" not in second.log_tail(10**6)

    first.kill()
    killed_at = time.time()
    last = _holder(first)
    assert last is not None and _pid_of(last[0]) == first.proc.pid, "taken over before the lease expired"
    row = second.wait_until(
        "SELECT coalesce((SELECT acquired_at FROM leases WHERE name = 'scheduler' "
        f"AND holder LIKE '%:{second.proc.pid}:%'), 0)",
        lambda at: at > 0,
        timeout=30,
    )
    took = float(row) - killed_at
    renew_every = min(LEASE_TTL_S / 3, 1.0)
    print(f"\ntakeover after SIGKILL: {took:.2f} s (lease_ttl {LEASE_TTL_S:.0f} s)")
    assert float(row) >= last[2], "the second process ran jobs while the first's lease was still valid"
    assert took <= LEASE_TTL_S + renew_every + 2.0
    second.wait_until(
        f"SELECT count(*) FROM scheduler_job_runs WHERE job_id = 'reachability-evaluate' "
        f"AND holder LIKE '%:{second.proc.pid}:%'",
        lambda n: n == 1,
        timeout=10,
    )
    assert "holds the scheduler lease" in second.log_tail(10**6)
