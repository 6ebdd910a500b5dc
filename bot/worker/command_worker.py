"""The command worker: runs the jobs that commands queued after acknowledging Slack.

A few threads claim jobs from SQLite with a lease (so a crash hands them to the next start) and
run them; anything unexpected is logged with a short reference and the requester is told that
reference — never a traceback. A mutating job found half-submitted after a crash is not re-sent:
its requester is told to check the devices first.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from sqlite_utils import Database

from bot.audit.calls import acting_for, principal_for_job, record_calls
from bot.core.logs import request_context
from bot.render.wording import something_went_wrong
from commands.context import Deps, Runner
from storage import jobs, outbox, pending
from storage.db import write
from storage.jobs import Job

__all__ = ["CommandWorker"]

log = logging.getLogger(__name__)


def _start_ticks(pid: int) -> str | None:
    """When process *pid* started (clock ticks since boot, Linux ``/proc``), telling a reused pid
    from the original; None if there is no such process or no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_identity() -> str:
    """``host:pid:start`` of this process: what a job claimed here records as its owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or ''}"


def process_gone(owner: str) -> bool:
    """Whether the process that claimed a job (``owner`` from :func:`process_identity`) is surely
    gone: it ran on this host and no process with its pid and start time exists. A process on
    another host is never judged gone (its job waits for its lease)."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid, started = int(parts[1]), parts[2]
    current = _start_ticks(pid)
    if current is not None:
        return bool(started) and current != started  # the pid now belongs to another process
    if Path("/proc/self/stat").exists():
        return True  # /proc answers, and has no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class CommandWorker:
    """Runs queued jobs with the runner of their kind (``runners``: job kind -> runner, given by
    the composition root)."""

    def __init__(
        self, deps: Deps, runners: Mapping[str, Runner], *, threads: int = 4, poll: float = 0.5
    ) -> None:
        self.deps = deps
        self.runners = dict(runners)
        self.threads = threads
        self.poll = poll
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._owner = process_identity()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._recover()
        for i in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)

    def wake(self) -> None:
        with self._wake:
            self._pending_wakes += self.threads
            self._wake.notify_all()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def idle(self) -> bool:
        with self._lock:
            busy = self._busy
        return busy == 0 and jobs.count_open(self.deps.db()) == 0

    def _recover(self) -> None:
        db = self.deps.db()
        with write(db):
            for job in jobs.reclaim_orphans(db, process_gone):
                self._resuming(db, job)
            lost = jobs.reclaim_expired(db, now=self.deps.clock() + 10**9)
            for job in lost:
                action = pending.get(db, job.payload.get("pending", "")) if job.kind == "execute" else None
                if action is None:
                    continue
                text = (
                    f":warning: The bot restarted while sending your {action.verb} of {len(action.devices)} device(s) "
                    "to ThingSpace, so it may or may not have been accepted. It was not re-sent. Check with "
                    "`/ts status` before trying again."
                )
                outbox.enqueue_ephemeral(
                    db, key=f"lost:{job.id}", channel=action.channel, user=action.actor, text=text
                )
                log.warning("job %s (%s) was mid-submit at a crash; requester told", job.id, action.verb)

    def _resuming(self, db: Database, job: Job) -> None:
        """A confirmed action whose process died before it sent anything runs again now; its
        requester is told, rather than waiting in silence for the job's lease to run out."""
        action = pending.get(db, job.payload.get("pending", "")) if job.kind == "execute" else None
        if action is None:
            log.info("job %s (%s) was interrupted by a restart; running it again", job.id, job.kind)
            return
        text = (
            f":arrows_counterclockwise: The bot restarted while preparing your {action.verb} of "
            f"{len(action.devices)} device(s); nothing had been sent to ThingSpace yet. It is being resumed now."
        )
        outbox.enqueue_ephemeral(
            db, key=f"resumed:{job.id}:{job.attempts}", channel=action.channel, user=action.actor, text=text
        )
        log.warning(
            "job %s (%s) was interrupted by a restart before submitting; resumed", job.id, action.verb
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            db = self.deps.db()
            with write(db):
                job = jobs.claim(db, now=self.deps.clock(), owner=self._owner)
            if job is None:
                with self._wake:
                    if self._pending_wakes <= 0:
                        self._wake.wait(self.poll)
                    self._pending_wakes = max(0, self._pending_wakes - 1)
                continue
            with self._lock:
                self._busy += 1
            try:
                with (
                    request_context(f"job-{job.id}"),
                    acting_for(principal_for_job(self.deps.pool, job), self.deps.pool),
                ):
                    self._run(job)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run(self, job: Job) -> None:
        runner = self.runners.get(job.kind)
        db = self.deps.db()
        try:
            if runner is None:
                raise ValueError(f"no runner for job kind {job.kind!r}")
            runner(self.deps, job)
            with write(db):
                state = db.execute("SELECT state FROM jobs WHERE id = ?", [job.id]).fetchone()[0]
                if state in {"running", "submitting"}:
                    jobs.finish(db, job.id)
                record_calls(db)
        except Exception as exc:
            ref = secrets.token_hex(4)
            log.exception("job %s (%s) failed, ref %s", job.id, job.kind, ref)
            with write(db):
                jobs.finish(db, job.id, ok=False, error=f"{type(exc).__name__} (ref {ref})")
                record_calls(db)
                url = job.payload.get("response_url")
                if url:
                    outbox.enqueue_respond(
                        db,
                        key=f"job:{job.id}:error",
                        response_url=url,
                        text=something_went_wrong(ref, "Nothing more was done"),
                    )
        self.deps.wake()
