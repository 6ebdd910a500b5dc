"""The embedded default: the ThingSpace sandbox, the local Slack stand-in and the real bot,
wired together over loopback in one process.

``tsbot demo`` runs on this, and so do the end-to-end tests: the bot under test is the same
:class:`~bot.app.Runtime` that ``tsbot serve`` runs, reached through signed HTTP requests, talking
to the sandbox through the real ThingSpace client, and posting to the stand-in through the real
outbox relay. ThingSpace's callbacks come back over HTTP to ``/thingspace/callbacks``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Self

import httpx

from bot.app import Runtime
from bot.console.driver import SlackDriver
from bot.console.standin import SlackStandIn
from bot.core.config import Grants, Settings
from bot.sandbox import create_sandbox
from bot.scheduler.tasks import refresh_memberships_task
from bot.serving import ServerThread
from bot.thingspace import shapes

__all__ = ["DEMO_GRANTS", "LocalStack"]

SIGNING_SECRET = "tsbot-demo-signing-secret"  # noqa: S105 - a local demo value, not a secret
CALLBACK_USER = "tsbot-callbacks"
CALLBACK_PASSWORD = "tsbot-demo-callback-password"  # noqa: S105 - a local demo value

#: The demo workspace's grants (as in the README's configuration example): the admin, the on-call group, the NOC channel.
DEMO_GRANTS = Grants(
    admin=frozenset({"U012ADMIN"}),
    operator=frozenset({"S0ONCALL"}),
    viewer=frozenset({"C0NOC"}),
)


class LocalStack:
    def __init__(
        self,
        workdir: str | Path,
        *,
        devices: int = 200,
        seed: int = 1,
        grants: Grants = DEMO_GRANTS,
        sandbox_options: dict[str, Any] | None = None,
        settings_overrides: dict[str, Any] | None = None,
        sync_directory: bool = True,
        scheduler: bool = True,
        db_path: str | Path | None = None,
        sync_wait: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sandbox = create_sandbox(devices=devices, seed=seed, **(sandbox_options or {}))
        self.sandbox_server = ServerThread(self.sandbox.app)
        self.standin = SlackStandIn()
        self.bot_server: ServerThread | None = None
        self._grants = grants
        self._overrides = settings_overrides or {}
        self._sync = sync_directory
        self._sync_wait = sync_wait  # how long start() waits for the first directory sync
        self._scheduler = scheduler
        self.db_path = Path(db_path) if db_path else self.workdir / "tsbot.db"
        self.runtime: Runtime | None = None
        self.driver: SlackDriver | None = None

    def settings(self, bot_url: str) -> Settings:
        return Settings(
            slack_bot_token=self.standin.bot_token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=self.standin.api_url,
            thingspace_base_url=self.sandbox_server.url,
            thingspace_client_id="sandbox-client",
            thingspace_client_secret="sandbox-secret",  # noqa: S106 - the sandbox's documented default
            thingspace_username="sandbox-user",
            thingspace_password="sandbox-pass",  # noqa: S106 - the sandbox's documented default
            thingspace_account="0000123456-00001",
            public_url=bot_url,
            callback_username=CALLBACK_USER,
            callback_password=CALLBACK_PASSWORD,
            db_path=str(self.db_path),
            grants=self._grants,
            ops_channel="C0OPS",
            alerts_channel="C0OPS",
        ).with_overrides(**self._overrides)

    def start(self) -> Self:
        self.sandbox_server.start()
        self.standin.start()
        self.start_bot()
        return self

    def start_bot(self) -> Runtime:
        """Start (or restart, after :meth:`kill_bot`) the bot on a fresh port, same database."""
        app = _Deferred()
        server = ServerThread(app)  # binds now, so the bot's URL is known before it is built
        settings = self.settings(server.url)
        runtime = Runtime(settings, sync_directory_at_start=self._sync, start_scheduler=self._scheduler)
        app.target = runtime.web
        self.runtime = runtime
        self.bot_server = server.start()
        runtime.start()
        self._refresh_memberships(runtime)
        if not settings.poll_results:  # polled results: no listener, nothing is called back
            self.register_callbacks()
        if self._sync:
            runtime.directory_synced.wait(self._sync_wait)
        self.driver = SlackDriver(self.bot_url + "/slack/events", SIGNING_SECRET, self.standin)
        return runtime

    def _refresh_memberships(self, runtime: Runtime) -> None:
        refresh_memberships_task(runtime.deps)

    @property
    def bot_url(self) -> str:
        assert self.bot_server is not None
        return self.bot_server.url

    def register_callbacks(self) -> None:
        """Point the sandbox's listeners for every consumed service at this bot."""
        assert self.runtime is not None
        for service in shapes.CONSUMED_SERVICES:
            self.runtime.thingspace.register_callback(
                service, self.bot_url + "/thingspace/callbacks", CALLBACK_USER, CALLBACK_PASSWORD
            )

    def command(self, text: str, *, user: str = "U012ADMIN", channel: str = "C0OPS") -> httpx.Response:
        assert self.driver is not None
        return self.driver.command(text, user=user, channel=channel)

    def click(self, label: str, *, user: str = "U012ADMIN", channel: str | None = None) -> httpx.Response:
        assert self.driver is not None
        return self.driver.click(label, user=user, channel=channel)

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until the bot has no queued job and nothing left to send."""
        assert self.runtime is not None
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.runtime.settled():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.3:
                    return True
            else:
                quiet_since = None
            time.sleep(0.05)
        return False

    def stop_bot(self) -> None:
        if self.driver:
            self.driver.close()
            self.driver = None
        if self.bot_server:
            self.bot_server.stop()
            self.bot_server = None
        if self.runtime:
            self.runtime.stop()
            self.runtime = None

    def stop(self) -> None:
        self.stop_bot()
        self.standin.stop()
        self.sandbox_server.stop()
        close = getattr(self.sandbox, "close", None)
        if close:
            close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Deferred:
    """An ASGI app whose target is set after the port is bound."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)
