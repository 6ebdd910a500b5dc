"""One scheduler at a time: the SQLite lease and the job guard (two `tsbot serve` processes on one
database: tests/e2e/test_scheduler_lease_processes.py)."""

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
from bot.scheduler.lease import LEASE_NAME, SchedulerLease
from storage import alerts, lease
from storage.db import write
from storage.pool import ConnectionPool
from storage.schema import open_database


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
        public_url="https://tsbot.example.com",  # results by callback; poll mode is tested below
        db_path=str(tmp_path / "bot.db"),
        grants=DEMO_GRANTS,
    ).with_overrides(**overrides)


def test_polled_results_swap_monitors_for_status_queries(tmp_path: Path, standin: SlackStandIn) -> None:
    """With results polled there is no monitor upkeep (monitors only call back); the device-SMS
    inbox and the watched devices' status queries are polled every minute instead."""
    runtime = Runtime(
        _settings(tmp_path, standin, public_url=""), sync_directory_at_start=False, start_scheduler=False
    )
    ids = {job.id for job in runtime.build_scheduler().get_jobs()}
    assert "reachability-monitors" not in ids
    assert {"poll-device-sms", "poll-reachability", "callbacks-no-result"} <= ids
    runtime.pool.close()


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
