"""A bot on loopback without the sandbox: for Slack-side tests that never reach ThingSpace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Runtime
from bot.console.driver import SlackDriver
from bot.console.standin import SlackStandIn
from bot.core.config import Settings
from bot.local_stack import DEMO_GRANTS
from bot.serving import ServerThread

SECRET = "test-signing-secret"


class SlackOnlyBot:
    def __init__(self, tmp_path: Path) -> None:
        self.standin = SlackStandIn().start()
        settings = Settings(
            slack_bot_token=self.standin.bot_token,
            slack_signing_secret=SECRET,
            slack_api_url=self.standin.api_url,
            thingspace_base_url="http://127.0.0.1:9",  # never called by these tests
            thingspace_client_id="c",
            thingspace_client_secret="s",
            thingspace_username="u",
            thingspace_password="p",
            thingspace_account="0000123456-00001",
            db_path=str(tmp_path / "bot.db"),
            grants=DEMO_GRANTS,
        )
        self.runtime = Runtime(settings, sync_directory_at_start=False, start_scheduler=False)
        self.server = ServerThread(self.runtime.web).start()
        self.runtime.start()
        from bot.scheduler.tasks import refresh_memberships_task

        refresh_memberships_task(self.runtime.deps)
        self.driver = SlackDriver(self.server.url + "/slack/events", SECRET, self.standin)

    def close(self) -> None:
        self.driver.close()
        self.server.stop()
        self.runtime.stop()
        self.standin.stop()


@pytest.fixture
def slack_bot(tmp_path: Path) -> Iterator[SlackOnlyBot]:
    bot = SlackOnlyBot(tmp_path)
    try:
        yield bot
    finally:
        bot.close()
