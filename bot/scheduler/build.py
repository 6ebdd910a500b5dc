"""The scheduler: APScheduler's ``BackgroundScheduler`` running the :class:`ScheduledTask` list it
is given, each with an explicit id, ``coalesce``, ``max_instances=1`` and a misfire grace of half
its interval (APScheduler's default of 1 s silently skips late runs), and each guarded by the
:class:`~bot.scheduler.lease.SchedulerLease` so only one process runs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
    JobExecutionEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler

from bot.scheduler.lease import SchedulerLease
from bot.scheduler.tasks import ScheduledTask
from commands.context import Deps

__all__ = ["LEASE_TASK", "add_interval", "build_scheduler", "renew_lease_task"]

log = logging.getLogger(__name__)

#: the id of the task that renews the lease (it runs in every process, lease or not)
LEASE_TASK = "scheduler-lease"


def add_interval(
    scheduler: BackgroundScheduler,
    func: Callable[..., Any],
    every: timedelta,
    task_id: str,
    args: list[Any],
    *,
    at_start: bool = False,
) -> None:
    """Register *func* every *every* with an explicit id, ``coalesce``, ``max_instances=1`` and a
    misfire grace of half the interval."""
    seconds = max(int(every.total_seconds()), 1)
    options: dict[str, Any] = {"next_run_time": datetime.now(UTC)} if at_start else {}
    scheduler.add_job(
        func,
        "interval",
        seconds=seconds,
        id=task_id,
        name=task_id,
        args=args,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(seconds // 2, 1),
        **options,
    )


def renew_lease_task(lease: SchedulerLease) -> None:
    lease.renew()


def build_scheduler(
    deps: Deps,
    tasks: Sequence[ScheduledTask],
    lease: SchedulerLease,
    *,
    renew_every: timedelta,
    on_run: Callable[[str], None] = lambda task_id: None,
    on_miss: Callable[[str], None] = lambda task_id: None,
) -> BackgroundScheduler:
    """A scheduler (not started) running *tasks* with *deps*, each only while *lease* is held;
    *on_run* and *on_miss* are told of every run and every missed run (metrics)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for task in tasks:
        add_interval(
            scheduler, lease.guard(task.id, task.func), task.every, task.id, [deps], at_start=task.at_start
        )
    add_interval(scheduler, renew_lease_task, renew_every, LEASE_TASK, [lease])
    lease.renew()

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            on_miss(event.job_id)
            log.warning("scheduled task %s missed its run time", event.job_id)
        else:
            on_run(event.job_id)
        if event.code == EVENT_JOB_ERROR:
            log.error("scheduled task %s failed: %s", event.job_id, type(event.exception).__name__)

    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def release(event: Any) -> None:
        try:
            lease.release()
        except Exception:  # noqa: BLE001 - shutting down: the lease then simply expires
            log.warning("could not release the scheduler lease; it expires in %d s", int(lease.ttl))

    scheduler.add_listener(release, EVENT_SCHEDULER_SHUTDOWN)
    return scheduler
