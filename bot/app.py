"""The composition root: settings in, a running bot out.

:class:`Runtime` builds every part from :class:`~bot.config.Settings` — the SQLite pool, the
ThingSpace client, the Bolt app, the command worker, the outbox relay, the callback intake and
inbox worker, the scheduler — and the Starlette app that serves them. ``tsbot serve``,
``tsbot demo`` and the tests all build the bot through here, so they run the same code.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from slack_sdk import WebClient
from starlette.applications import Starlette

from bot.audit.calls import audit_call
from bot.audit.config_load import record_config_load
from bot.core.config import Settings
from bot.core.directory_sync import sync_directory
from bot.core.logs import register_secrets
from bot.core.metrics import Metrics
from bot.outbox.relay import OutboxRelay
from bot.slack.bolt_app import build_bolt_app
from bot.slack.web import create_web_app
from bot.thingspace.client import ThingSpaceClient
from bot.worker.command_worker import CommandWorker
from commands.context import Deps
from commands.policy import VERBS
from storage import jobs, outbox
from storage.audit.log import AnchorConfirmer, AuditLog
from storage.db import write
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        thingspace_transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sync_directory_at_start: bool = True,
        start_scheduler: bool = True,
    ) -> None:
        self.settings = settings
        self.clock = clock
        register_secrets(settings)  # never logged, wherever they would appear
        self.pool = ConnectionPool(settings.db_path, synchronous=settings.db_synchronous)
        self.metrics = Metrics(verbs=VERBS)
        #: shared through the database with `tsbot check`, `tsbot callbacks` and the next restart
        self.login_gate = SqliteLoginGate(self.pool.get, clock=clock, program="the bot")
        self.thingspace = ThingSpaceClient(
            settings.thingspace_base_url,
            client_id=settings.thingspace_client_id,
            client_secret=settings.thingspace_client_secret,
            username=settings.thingspace_username,
            password=settings.thingspace_password,
            account=settings.thingspace_account,
            transport=thingspace_transport,
            observer=self._observe_thingspace,
            login_gate=self.login_gate,
        )
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
            },
        )
        self.bolt = build_bolt_app(self.deps)
        self.worker = CommandWorker(self.deps)
        self.relay = OutboxRelay(
            self.pool,
            slack_api_url=settings.slack_api_url,
            bot_token=settings.slack_bot_token,
            on_event=self._on_outbox_event,
        )
        self.metrics.outbox_depth_from(lambda: float(outbox.pending_count(self.pool.get())))
        self._sync_at_start = sync_directory_at_start
        self._start_scheduler = start_scheduler
        self._extra_parts: list[Any] = []
        #: set by bot.callbacks.install: the callback intake's writer and the inbox worker
        self.inbox_writer: Any = None
        self.inbox_worker: Any = None
        routes: list[Any] = []
        self._wakers: list[Callable[[], None]] = []
        self._install_extensions(routes)
        self.web: Starlette = create_web_app(
            bolt_app=self.bolt,
            pool=self.pool,
            signing_secret=settings.slack_signing_secret,
            ready=self.ready,
            metrics=self.metrics.render,
            extra_routes=routes,
            clock=clock,
        )
        self.scheduler: Any = None
        self.audit_confirmer: AnchorConfirmer | None = None
        self._started = False
        self.directory_synced = threading.Event()

    # -- extension points (callbacks intake, scheduler) -------------------------------------------
    def _install_extensions(self, routes: list[Any]) -> None:
        """Parts that add routes or background threads register here."""
        import bot.scheduler.reachability_tasks  # noqa: F401 - watch verbs, alert buttons and jobs register on import

        try:
            from bot.intake.route import install as install_callbacks
        except ImportError:
            return
        install_callbacks(self, routes)

    def add_part(self, part: Any, *, waker: Callable[[], None] | None = None) -> None:
        """A background part with ``start()``, ``stop()`` and ``alive()``; started with the runtime."""
        self._extra_parts.append(part)
        if waker:
            self._wakers.append(waker)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Runtime:
        record_config_load(self.pool.get(), self.settings)
        self.audit_confirmer = AnchorConfirmer(self.settings.db_path).start()
        self.worker.start()
        self.relay.start()
        for part in self._extra_parts:
            part.start()
        if self._sync_at_start:
            threading.Thread(target=self._initial_sync, name="directory-sync", daemon=True).start()
        else:
            self.directory_synced.set()
        if self._start_scheduler:
            from bot.scheduler.build import build_scheduler

            self.scheduler = build_scheduler(self)
            self.scheduler.start()
        self._started = True
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for part in reversed(self._extra_parts):
            part.stop()
        self.worker.stop()
        self.relay.stop()
        if self.audit_confirmer is not None:
            self.audit_confirmer.stop()
        try:  # the head file confirmed at rest, so deleting the newest rows is caught
            AuditLog(self.pool.get()).anchor()
        except sqlite3.Error:
            log.exception("could not confirm the audit head file at shutdown")
        self.thingspace.close()
        self.pool.close()

    def _initial_sync(self) -> None:
        try:
            sync_directory(self.thingspace, self.pool.get())
        except Exception:
            log.exception("initial directory sync failed; find and group targets use what is stored")
        finally:
            self.directory_synced.set()

    def wake(self) -> None:
        self.worker.wake()
        self.relay.wake()
        for waker in self._wakers:
            waker()

    def ready(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        try:
            db = self.pool.get()
            with write(db):
                db.execute("CREATE TEMP TABLE IF NOT EXISTS _ready_probe (x)")
            checks["database"] = True
        except sqlite3.Error:
            checks["database"] = False
        checks["worker"] = self.worker.alive()
        checks["outbox_relay"] = self.relay.running
        for part in self._extra_parts:
            checks[type(part).__name__] = bool(part.alive())
        return checks

    def settled(self) -> bool:
        """No queued job and nothing left to send (used by ``tsbot demo --script``)."""
        db = self.pool.get()
        return (
            jobs.count_open(db) == 0
            and outbox.pending_count(db) == 0
            and all(getattr(p, "idle", lambda: True)() for p in self._extra_parts)
        )

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
