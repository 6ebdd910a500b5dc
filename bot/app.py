"""The composition root: settings in, a running bot out.

:class:`Runtime` is the one place that builds every part and hands each its collaborators:

* :class:`~commands.context.Deps` — settings, the SQLite pool, the clock, the ThingSpace client,
  the one Slack Web API client, the verb table and the metrics hooks — which every part takes;
* the :class:`~commands.router.Router` with the verb and button tables of :mod:`commands.registry`,
  and the Bolt app that answers through it (:mod:`bot.slack.bolt_app`);
* the command worker with its runners (job kind -> function);
* the callback intake's writer and the inbox worker with its reachability handler;
* the outbox relay, the audit head confirmer, Socket Mode when asked for;
* the scheduler with its task list and its lease;
* the Starlette app that serves Slack, the callback intake, ``/healthz``, ``/readyz`` and ``/metrics``.

Importing a module of the bot registers nothing: what runs is what is listed here. ``tsbot serve``,
``tsbot demo`` and the tests all build the bot through here, so they run the same code.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from slack_sdk import WebClient
from starlette.applications import Starlette

from bot.audit.calls import audit_call
from bot.audit.config_load import record_config_load
from bot.core import reachability
from bot.core.config import Settings
from bot.core.directory_sync import SyncProgress
from bot.core.logs import register_secrets
from bot.core.metrics import Metrics
from bot.inbox import unanswered
from bot.inbox.device_messages import DeviceMessages
from bot.inbox.worker import InboxWorker
from bot.intake.route import InboxWriter, callback_route
from bot.outbox.relay import OutboxRelay
from bot.parts import Part
from bot.scheduler import poll_tasks, reachability_tasks
from bot.scheduler.build import build_scheduler
from bot.scheduler.lease import SchedulerLease
from bot.scheduler.sync_process import DirectorySync, SyncFailed, SyncStopped, log_failure
from bot.scheduler.tasks import ScheduledTask, SyncRun, upkeep_tasks
from bot.slack.bolt_app import build_bolt_app
from bot.slack.home import publish_home
from bot.slack.socket_mode import SocketModeRunner
from bot.slack.web import create_web_app
from bot.slack.workspace import WorkspaceGuard
from bot.thingspace.client import ThingSpaceClient
from bot.worker.command_worker import CommandWorker
from commands import execute, lookup, prepare, registry
from commands.context import Deps, Runner
from commands.router import Router
from storage import alerts, directory, inbox, jobs, outbox
from storage.audit.anchor import HEAD_SUFFIX
from storage.audit.log import AnchorConfirmer, AuditLog
from storage.db import write
from storage.files import loose_permissions
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool

__all__ = ["Runtime", "job_runners", "scheduled_tasks"]

log = logging.getLogger(__name__)


def job_runners() -> dict[str, Runner]:
    """The command worker's runners: job kind (:mod:`storage.jobs`) -> what runs it."""
    return {
        "lookup": lookup.run,
        "execute": execute.run,
        prepare.JOB_KIND: prepare.run,
        "home": publish_home,
        "watch-monitors": reachability_tasks.run_monitor_job,
        "alert-diag": reachability_tasks.run_alert_diag,
    }


def scheduled_tasks(settings: Settings, *, sync_run: SyncRun | None = None) -> list[ScheduledTask]:
    """Everything the scheduler runs: upkeep (its directory sync run by *sync_run*), unanswered
    requests, reachability. When results are polled (no callback listener) reachability monitors
    give way to status queries, and the device-SMS inbox is read."""
    tasks = [
        *upkeep_tasks(settings, sync_run=sync_run),
        *unanswered.scheduled_tasks(),
        *reachability_tasks.scheduled_tasks(settings),
    ]
    if settings.poll_results:
        tasks = [t for t in tasks if t.id != reachability_tasks.MONITORS_TASK]
        tasks += poll_tasks.scheduled_tasks()
    return tasks


def warn_if_readable(db_path: str) -> None:
    """A WARNING for each of the database's files that others may read or write: the database holds
    live response_urls and full device ids (new files are created 0600; old ones are left as they
    are, for the operator to fix)."""
    if db_path == ":memory:":
        return
    for name in (db_path, db_path + "-wal", db_path + "-shm", db_path + HEAD_SUFFIX):
        mode = loose_permissions(Path(name))
        if mode is not None:
            log.warning(
                "%s is readable by others (mode %04o): run chmod 600 on it; it holds live Slack reply "
                "addresses and full device ids",
                name,
                mode,
            )


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        thingspace_transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sync_directory_at_start: bool = True,
        start_scheduler: bool = True,
        socket_mode: bool = False,
    ) -> None:
        self.settings = settings
        self.clock = clock
        register_secrets(settings)  # never logged, wherever they would appear
        warn_if_readable(settings.db_path)
        self.pool = ConnectionPool(settings.db_path, synchronous=settings.db_synchronous)
        self.metrics = Metrics(verbs=registry.VERBS)
        #: shared through the database with `tsbot check`, `tsbot callbacks` and the next restart
        self.login_gate = SqliteLoginGate(self.pool.get, clock=clock, program="the bot")
        self.thingspace = ThingSpaceClient(
            **settings.thingspace_login(),
            transport=thingspace_transport,
            observer=self._observe_thingspace,
            login_gate=self.login_gate,
        )
        #: the one Web API client for calls outside the outbox (Bolt, user groups, App Home)
        self.slack = WebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=[]
        )
        self.deps = Deps(
            settings=settings,
            pool=self.pool,
            thingspace=self.thingspace,
            wake=self.wake,
            clock=clock,
            hooks={
                "command": self.metrics.count_command,
                "ack": self.metrics.observe_ack,
                "thingspace_error": self.metrics.count_thingspace_error,
                "directory_sync": self._sync_progress,
            },
            verbs=registry.VERBS,
            slack=self.slack,
        )
        self.router = Router(registry.VERBS, registry.BUTTONS, registry.VIEWS)
        #: requests from the installed workspace only (SLACK_TEAM_ID, else auth.test at start)
        self.workspace = WorkspaceGuard(settings.slack_team_id)
        self.bolt = build_bolt_app(self.deps, self.router, workspace=self.workspace)

        # -- slash commands: the worker runs what the ack queued; the relay posts to Slack ---------
        self.worker = CommandWorker(self.deps, job_runners())
        self.relay = OutboxRelay(
            self.pool,
            slack_api_url=settings.slack_api_url,
            bot_token=settings.slack_bot_token,
            on_event=self._on_outbox_event,
        )

        # -- ThingSpace callbacks: intake -> inbox -> worker -> outbox -----------------------------
        self.inbox_writer = InboxWriter(self.pool, clock=clock)
        self.inbox_worker = InboxWorker(
            self.pool,
            settings=settings,
            wake_outbox=self.relay.wake,
            clock=clock,
            intake_busy=self.inbox_writer.busy,
            reachability_handlers=[reachability.on_callback],
            message_handlers=[DeviceMessages(settings).on_callback],
        )
        self.inbox_writer.on_commit = lambda n: self.inbox_worker.wake()
        intake = callback_route(
            writer=self.inbox_writer,
            username=settings.callback_username,
            password=settings.callback_password,
            previous_password=settings.callback_password_previous,
            allowed=settings.callback_networks(),
            count=self.metrics.count_callback,
            count_unrecognised=self.metrics.count_unrecognised_callback,
        )

        # -- gauges ----------------------------------------------------------------------------------
        pool = self.pool
        self.metrics.outbox_depth_from(lambda: float(outbox.pending_count(pool.get())))
        self.metrics.inbox_depth_from(lambda: float(inbox.depth(pool.get())))
        self.metrics.alerts_firing_from(lambda: float(alerts.count_open(pool.get(), state="firing")))
        self.metrics.directory_lines_from(lambda: float(directory.count(pool.get())))

        self.web: Starlette = create_web_app(
            bolt_app=self.bolt,
            pool=self.pool,
            signing_secret=settings.slack_signing_secret,
            ready=self.ready,
            metrics=self.metrics.render,
            extra_routes=[intake],
            clock=clock,
        )
        self.audit_confirmer = AnchorConfirmer(settings.db_path)
        #: started in this order, stopped in reverse
        self.parts: list[Part] = [
            self.audit_confirmer,
            self.relay,
            self.worker,
            self.inbox_writer,
            self.inbox_worker,
        ]
        if socket_mode:
            self.parts.append(SocketModeRunner(self.bolt, settings))
        self.scheduler_lease = SchedulerLease(
            self.pool, ttl=settings.scheduler_lease_ttl.total_seconds(), clock=clock
        )
        self.scheduler: BackgroundScheduler | None = None
        #: the directory sync, at start and scheduled: one at a time, in a process of its own so
        #: its CPU work stays off this process's GIL — unless ThingSpace is reached through a
        #: test transport or the database is in memory, which only this process can use
        self.directory_sync = DirectorySync(
            settings,
            pool=self.pool,
            thingspace=self.thingspace,
            on_progress=self._sync_progress,
            on_call=self._observe_thingspace,
            in_child=thingspace_transport is None and settings.db_path != ":memory:",
        )
        self._sync_at_start = sync_directory_at_start
        self._start_scheduler = start_scheduler
        self._started = False
        #: set when the start-up sync has ended (or at start, without one), whatever its outcome
        self.directory_synced = threading.Event()
        self._sync_thread: threading.Thread | None = None

    def build_scheduler(self) -> BackgroundScheduler:
        """The scheduler (not started) with every task of :func:`scheduled_tasks` and this
        process's lease, renewed every third of its ttl (or every evaluation, if more often)."""
        lease = self.scheduler_lease
        return build_scheduler(
            self.deps,
            scheduled_tasks(self.settings, sync_run=self.directory_sync.run),
            lease,
            renew_every=min(timedelta(seconds=lease.ttl / 3), self.settings.alert_evaluate_every),
            on_run=self.metrics.count_job_run,
            on_miss=self.metrics.count_job_miss,
        )

    def add_part(self, part: Part) -> None:
        """Another background part, started and stopped with the others (call before start)."""
        self.parts.append(part)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Runtime:
        record_config_load(self.pool.get(), self.settings)
        self.workspace.learn(self.slack)
        for part in self.parts:
            part.start()
        if self._sync_at_start:
            self._sync_thread = threading.Thread(
                target=self._initial_sync, name="directory-sync", daemon=True
            )
            self._sync_thread.start()
        else:
            self.directory_synced.set()
        if self._start_scheduler:
            self.scheduler = self.build_scheduler()
            self.scheduler.start()
        self._started = True
        return self

    def stop(self) -> None:
        self.directory_sync.stop()  # a running sync's process leaves now, and no other starts
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=10)
        self.workspace.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for part in reversed(self.parts):
            part.stop()
        try:  # the head file confirmed at rest, so deleting the newest rows is caught
            AuditLog(self.pool.get()).anchor()
        except sqlite3.Error:
            log.exception("could not confirm the audit head file at shutdown")
        self.thingspace.close()
        self.pool.close()

    def _sync_progress(self, progress: SyncProgress) -> None:
        self.metrics.observe_directory_sync(
            progress.lines, progress.seconds, done=progress.done, complete=progress.complete
        )

    def _initial_sync(self) -> None:
        try:
            self.directory_sync.run(complete=True)
        except SyncStopped:
            log.info("the start-up directory sync stopped with the bot; the next start syncs again")
        except SyncFailed as failure:
            log_failure(
                log, "initial directory sync failed; find and group targets use what is stored", failure
            )
        except Exception:
            log.exception("initial directory sync failed; find and group targets use what is stored")
        finally:
            self.directory_synced.set()

    def wake(self) -> None:
        for part in self.parts:
            part.wake()

    def ready(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        try:
            db = self.pool.get()
            with write(db):
                db.execute("CREATE TEMP TABLE IF NOT EXISTS _ready_probe (x)")
            checks["database"] = True
        except sqlite3.Error:
            checks["database"] = False
        names = {CommandWorker: "worker", OutboxRelay: "outbox_relay"}
        for part in self.parts:
            if isinstance(part, AnchorConfirmer):
                continue  # a stopped confirmer costs a later confirmation, not readiness
            checks[names.get(type(part), type(part).__name__)] = bool(part.alive())
        return checks

    def settled(self) -> bool:
        """No queued job and nothing left to send (used by ``tsbot demo --script``)."""
        return jobs.count_open(self.pool.get()) == 0 and all(part.idle() for part in self.parts)

    # -- metrics hooks ----------------------------------------------------------------------------
    def _observe_thingspace(self, operation: str, seconds: float, error: str | None) -> None:
        self.metrics.observe_thingspace_call(operation, seconds)
        audit_call(operation, seconds, error)
        if error:
            self.metrics.count_thingspace_error(operation, error)

    def _on_outbox_event(self, kind: str, info: Mapping[str, Any]) -> None:
        method = str(info.get("method", "unknown"))
        if kind == "sent":
            self.metrics.count_slack_call(method, "ok")
        elif kind == "rate_limited":
            self.metrics.count_slack_rate_limited(method)
        elif kind == "dead":
            self.metrics.count_dead_letter()
        elif kind == "retry":
            self.metrics.count_slack_call(method, "retry")
