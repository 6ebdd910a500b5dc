"""One scheduler at a time: the SQLite lease, the job guard, and two `tsbot serve` processes started
on one database (one runs the jobs; SIGKILL it and the other takes over)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import Runtime
from bot.console.standin import SlackStandIn
from bot.core.config import Settings
from bot.local_stack import DEMO_GRANTS
from bot.sandbox import create_sandbox
from bot.scheduler.lease import LEASE_NAME, SchedulerLease
from bot.serving import ServerThread
from storage import alerts, lease
from storage.db import write
from storage.pool import ConnectionPool
from storage.schema import open_database
from tests.helpers.callbacks import BotProcess


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_lease_has_one_holder_until_it_expires_or_is_released(tmp_path: Path) -> None:
    """A takes it; B is refused while A renews; B gets it after expiry; a release hands it over at once."""
    db = open_database(tmp_path / "lease.db")
    assert lease.acquire(db, "scheduler", "A", ttl=60, now=1000) is not None
    assert lease.acquire(db, "scheduler", "B", ttl=60, now=1010) is None
    renewed = lease.acquire(db, "scheduler", "A", ttl=60, now=1050)
    assert renewed is not None and renewed.expires_at == 1110 and renewed.acquired_at == 1000
    assert lease.acquire(db, "scheduler", "B", ttl=60, now=1109) is None
    taken = lease.acquire(db, "scheduler", "B", ttl=60, now=1110)
    assert taken is not None and taken.holder == "B" and taken.acquired_at == 1110
    assert lease.acquire(db, "scheduler", "A", ttl=60, now=1111) is None
    assert lease.release(db, "scheduler", "A") is False
    assert lease.release(db, "scheduler", "B") is True
    assert lease.acquire(db, "scheduler", "A", ttl=60, now=1112) is not None


def test_bad_lease_arguments_are_refused(tmp_path: Path) -> None:
    """A lease needs a name, a holder and a positive ttl."""
    db = open_database(tmp_path / "lease.db")
    for name, holder, ttl in (("", "A", 60.0), ("s", "", 60.0), ("s", "A", 0.0)):
        with pytest.raises(ValueError):
            lease.acquire(db, name, holder, ttl=ttl, now=1.0)
    assert lease.current(db, "s") is None


def test_the_guard_runs_a_job_only_while_the_lease_is_held(tmp_path: Path) -> None:
    """Job bodies run in the holder only; each run is recorded with its holder; the other skips."""
    pool = ConnectionPool(tmp_path / "bot.db")
    clock = [5000.0]
    first = SchedulerLease(pool, ttl=60, clock=lambda: clock[0], holder="first")
    second = SchedulerLease(pool, ttl=60, clock=lambda: clock[0], holder="second")
    calls: list[str] = []
    job_a = first.guard("job", lambda: calls.append("first"))
    job_b = second.guard("job", lambda: calls.append("second"))
    job_a()
    job_b()
    assert calls == ["first"]
    assert first.ran == {"job": 1} and second.skipped == {"job": 1}
    [run] = lease.job_runs(pool.get())
    assert (run.job_id, run.holder, run.runs, run.last_status) == ("job", "first", 1, "ok")
    clock[0] += 61  # first stopped renewing: second takes over at its next run
    job_b()
    assert calls == ["first", "second"]
    current = lease.current(pool.get(), LEASE_NAME)
    assert current is not None and current.holder == "second"
    job_a()
    assert calls == ["first", "second"] and first.skipped == {"job": 1}
    pool.close()


def test_a_failing_job_is_recorded_as_an_error(tmp_path: Path) -> None:
    """The guard records 'error' and lets the exception reach the scheduler's listener."""
    pool = ConnectionPool(tmp_path / "bot.db")
    guard = SchedulerLease(pool, ttl=60, clock=lambda: 1.0, holder="only")

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        guard.guard("broken", broken)()
    [run] = lease.job_runs(pool.get())
    assert run.last_status == "error"
    pool.close()


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    s = SlackStandIn().start()
    try:
        yield s
    finally:
        s.stop()


def _settings(tmp_path: Path, standin: SlackStandIn, **overrides: object) -> Settings:
    return Settings(
        slack_bot_token=standin.bot_token,
        slack_signing_secret="s",
        slack_api_url=standin.api_url,
        thingspace_base_url="http://127.0.0.1:9",
        thingspace_client_id="c",
        thingspace_client_secret="s",
        thingspace_username="u",
        thingspace_password="p",
        thingspace_account="0000123456-00001",
        db_path=str(tmp_path / "bot.db"),
        grants=DEMO_GRANTS,
    ).with_overrides(**overrides)


def test_reachability_jobs_have_explicit_ids_coalesce_one_instance_and_a_grace(
    tmp_path: Path, standin: SlackStandIn
) -> None:
    """Every job is registered with an id, coalesce, max_instances=1 and half its interval as grace;
    a run that is late (here 5 s) still runs within that grace; the firing-alerts gauge is wired."""
    runtime = Runtime(_settings(tmp_path, standin), sync_directory_at_start=False, start_scheduler=False)
    scheduler = runtime.build_scheduler()
    jobs = {job.id: job for job in scheduler.get_jobs()}
    for job_id, seconds in (
        ("reachability-evaluate", 60),
        ("reachability-monitors", 600),
        ("alerts-digest", 60),
        ("reachability-prune", 6 * 3600),
        ("scheduler-lease", 20),
    ):
        job = jobs[job_id]
        assert job.coalesce is True and job.max_instances == 1, job_id
        assert job.trigger.interval == timedelta(seconds=seconds), job_id
        assert job.misfire_grace_time == seconds // 2, job_id
    db = runtime.pool.get()
    with write(db):
        alerts.insert_alert(
            db, device="iccid:1", condition="unreachable", channel="C0OPS", down_since=1.0, now=2.0
        )
    assert runtime.metrics.value("alerts_firing") == 1  # read from the database at every scrape
    scheduler.modify_job("reachability-evaluate", next_run_time=datetime.now(UTC) - timedelta(seconds=5))
    runtime.scheduler = scheduler
    runtime.start()
    scheduler.start()
    try:
        assert _wait(lambda: runtime.scheduler_lease.ran.get("reachability-evaluate", 0) >= 1)
    finally:
        runtime.stop()


def test_the_lease_time_comes_from_the_settings(tmp_path: Path, standin: SlackStandIn) -> None:
    """[scheduler] lease_ttl sets the lease; it is renewed every third of it (or every evaluation)."""
    settings = _settings(tmp_path, standin, scheduler_lease_ttl=timedelta(seconds=9))
    runtime = Runtime(settings, sync_directory_at_start=False, start_scheduler=False)
    try:
        scheduler = runtime.build_scheduler()
        assert runtime.scheduler_lease.ttl == 9
        assert scheduler.get_job("scheduler-lease").trigger.interval == timedelta(seconds=3)
        held = lease.current(runtime.pool.get(), LEASE_NAME)
        assert held is not None and held.expires_at - held.renewed_at == 9
    finally:
        runtime.stop()


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
def two_bots(tmp_path: Path, standin: SlackStandIn) -> Iterator[tuple[BotProcess, BotProcess]]:
    """Two `python -m bot serve` processes on one database (started twice by mistake)."""
    sandbox = create_sandbox(devices=20, seed=5)
    sandbox_server = ServerThread(sandbox.app).start()
    config = tmp_path / "lease.toml"
    config.write_text(CONFIG, encoding="utf-8")
    bots = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        bot = BotProcess(tmp_path / name, standin=standin, thingspace_url=sandbox_server.url)
        bot.db_path = tmp_path / "bot.db"
        bot.env.update({"TSBOT_DB": str(bot.db_path), "TSBOT_CONFIG": str(config), "TSBOT_LOG_LEVEL": "INFO"})
        bots.append(bot)
    try:
        yield bots[0], bots[1]
    finally:
        for bot in bots:
            bot.kill()
        sandbox_server.stop()
        sandbox.close()


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
