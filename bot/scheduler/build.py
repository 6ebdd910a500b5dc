"""The scheduler: APScheduler's ``BackgroundScheduler`` running the job functions of
:mod:`bot.jobs` with explicit ids, ``coalesce``, ``max_instances=1`` and a set misfire grace.

Only one process runs the jobs (reliability-anchors.md §3.7): a :class:`SchedulerLease` row in
SQLite (:mod:`storage.lease`) with an expiry, renewed by the ``scheduler-lease`` job. Every job is
wrapped so that its body runs only in the process that holds the lease; a second process started
by mistake on the same database keeps its scheduler idle, and takes over once the holder stops
(released at shutdown) or stops renewing (after ``[scheduler] lease_ttl``, default :data:`LEASE_TTL`).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
    JobExecutionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler

from bot.core.logs import new_request_id, request_context
from bot.scheduler import tasks as jobs
from storage import lease as lease_store
from storage.pool import ConnectionPool

if TYPE_CHECKING:
    from bot.app import Runtime

__all__ = ["LEASE_NAME", "LEASE_TTL", "SchedulerLease", "build_scheduler", "renew_lease_job"]

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
#: How long the lease lasts without renewal (default of ``[scheduler] lease_ttl``); it is renewed
#: every third of this (or more often).
LEASE_TTL = 60.0


class SchedulerLease:
    """This process's claim on the scheduler lease; :meth:`guard` makes a job run only while held."""

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        ttl: float = LEASE_TTL,
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
    ) -> None:
        self.pool = pool
        self.ttl = ttl
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held_until = 0.0
        #: job id -> bodies run / skipped here (another process held the lease)
        self.ran: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def renew(self) -> bool:
        """Take or extend the lease; True while this process holds it."""
        now = self.clock()
        held = lease_store.acquire(self.pool.get(), LEASE_NAME, self.holder, ttl=self.ttl, now=now)
        with self._lock:
            was = self.held_until > now
            self.held_until = held.expires_at if held else 0.0
        if held and not was:
            log.info("this process holds the scheduler lease and runs the scheduled jobs")
        elif not held and was:
            log.warning("the scheduler lease went to another process; scheduled jobs stop here")
        return held is not None

    def held(self) -> bool:
        """Held with a margin of a tenth of the ttl (no overlap with a successor)."""
        with self._lock:
            return self.clock() < self.held_until - self.ttl / 10

    def release(self) -> None:
        with self._lock:
            self.held_until = 0.0
        lease_store.release(self.pool.get(), LEASE_NAME, self.holder)

    def guard(self, job_id: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """*func* wrapped: skipped unless this process holds the lease; each run is recorded."""

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            if not self.held() and not self.renew():
                with self._lock:
                    self.skipped[job_id] = self.skipped.get(job_id, 0) + 1
                log.debug("job %s skipped: another process holds the scheduler lease", job_id)
                return None
            started = self.clock()
            status = "error"
            try:
                with request_context(f"sched-{job_id}-{new_request_id()[1:9]}"):
                    result = func(*args, **kwargs)
                status = "ok"
                return result
            finally:
                with self._lock:
                    self.ran[job_id] = self.ran.get(job_id, 0) + 1
                lease_store.record_job_run(
                    self.pool.get(),
                    job_id,
                    self.holder,
                    started_at=started,
                    finished_at=self.clock(),
                    status=status,
                )

        return run


def renew_lease_job(lease: SchedulerLease) -> None:
    lease.renew()


def build_scheduler(runtime: Runtime) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    settings = runtime.settings
    jobs.add_interval_job(
        scheduler, jobs.sync_directory_job, settings.directory_sync_every, "directory-sync", [runtime]
    )
    # at start too: until the first answer, grants naming user groups match nobody
    jobs.add_interval_job(
        scheduler,
        jobs.refresh_memberships_job,
        timedelta(minutes=10),
        "memberships-refresh",
        [runtime],
        at_start=True,
    )
    jobs.add_interval_job(scheduler, jobs.housekeeping_job, timedelta(minutes=10), "housekeeping", [runtime])
    jobs.add_interval_job(scheduler, jobs.audit_anchor_job, timedelta(minutes=1), "audit-anchor", [runtime])
    jobs.add_interval_job(
        scheduler, jobs.audit_retention_job, timedelta(days=1), "audit-retention", [runtime]
    )
    for extra in jobs.EXTRA_JOBS:
        extra(scheduler, runtime)
    # Only the lease holder runs job bodies (two processes on one database by mistake).
    lease = SchedulerLease(
        runtime.pool, ttl=settings.scheduler_lease_ttl.total_seconds(), clock=runtime.clock
    )
    for job in scheduler.get_jobs():
        job.modify(func=lease.guard(job.id, job.func))
    renew_every = min(timedelta(seconds=lease.ttl / 3), settings.alert_evaluate_every)
    jobs.add_interval_job(scheduler, renew_lease_job, renew_every, "scheduler-lease", [lease])
    scheduler.lease = lease
    lease.renew()

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            runtime.metrics.count_job_miss(event.job_id)
            log.warning("scheduled job %s missed its run time", event.job_id)
        else:
            runtime.metrics.count_job_run(event.job_id)
        if event.code == EVENT_JOB_ERROR:
            log.error("scheduled job %s failed: %s", event.job_id, type(event.exception).__name__)

    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def release(event: Any) -> None:
        try:
            lease.release()
        except Exception:  # noqa: BLE001 - shutting down: the lease then simply expires
            log.warning("could not release the scheduler lease; it expires in %d s", int(lease.ttl))

    scheduler.add_listener(release, EVENT_SCHEDULER_SHUTDOWN)
    return scheduler
