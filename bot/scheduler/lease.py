"""The scheduler lease: only one process runs the scheduled tasks.

Two processes started on one database by mistake would otherwise both evaluate alerts, renew
monitors and send digests. A :class:`SchedulerLease` is this process's claim on a lease row in
SQLite (:mod:`storage.lease`) with an expiry, renewed by the ``scheduler-lease`` task. Every task is
wrapped (:meth:`SchedulerLease.guard`) so that its body runs only while the lease is held; a second
process keeps its scheduler idle and takes over once the holder stops (released at shutdown) or
stops renewing (after ``[scheduler] lease_ttl``, default :data:`LEASE_TTL`).
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
from typing import Any

from bot.core.logs import new_request_id, request_context
from storage import lease as lease_store
from storage.pool import ConnectionPool

__all__ = ["LEASE_NAME", "LEASE_TTL", "SchedulerLease"]

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
