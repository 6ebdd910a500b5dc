"""The scheduler: APScheduler's ``BackgroundScheduler`` running the job functions of
:mod:`bot.jobs` with explicit ids, ``coalesce``, ``max_instances=1`` and a set misfire grace.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from bot import jobs

if TYPE_CHECKING:
    from bot.app import Runtime

__all__ = ["build_scheduler"]

log = logging.getLogger(__name__)


def _every(scheduler: BackgroundScheduler, func: Any, every: timedelta, job_id: str, args: list[Any]) -> None:
    seconds = max(int(every.total_seconds()), 1)
    scheduler.add_job(
        func,
        "interval",
        seconds=seconds,
        id=job_id,
        name=job_id,
        args=args,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(seconds // 2, 1),
    )


def build_scheduler(runtime: Runtime) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    settings = runtime.settings
    _every(scheduler, jobs.sync_directory_job, settings.directory_sync_every, "directory-sync", [runtime])
    _every(scheduler, jobs.refresh_memberships_job, timedelta(minutes=10), "memberships-refresh", [runtime])
    _every(scheduler, jobs.housekeeping_job, timedelta(minutes=10), "housekeeping", [runtime])
    for extra in jobs.EXTRA_JOBS:
        extra(scheduler, runtime)

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            runtime.metrics.count_job_miss(event.job_id)
            log.warning("scheduled job %s missed its run time", event.job_id)
        else:
            runtime.metrics.count_job_run(event.job_id)
        if event.code == EVENT_JOB_ERROR:
            log.error("scheduled job %s failed: %s", event.job_id, type(event.exception).__name__)

    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler
