"""User-group grants: members are fetched by the scheduler at start (off the request path) and every
10 minutes; a temporary Slack error keeps the last known members, a definitive answer replaces them.

Everything runs through the real scheduler (``Runtime(start_scheduler=True)``): the refresh job is
never called directly. Slack is the local stand-in, reached through a gate that can hold
``usergroups.users.list`` in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime
from bot.console.driver import SlackDriver
from bot.console.standin import SlackStandIn
from bot.core.config import Settings
from bot.local_stack import DEMO_GRANTS
from bot.serving import ServerThread
from storage import memberships
from storage.db import write
from storage.pool import ConnectionPool

SECRET = "memberships-signing-secret"
JOB = "memberships-refresh"


class Gate:
    """An ASGI wrapper in front of the stand-in that holds ``usergroups.users.list`` until opened."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = threading.Event()
        self.arrived = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/usergroups.users.list"):
            self.arrived.set()
            while not self.open.is_set():
                await asyncio.sleep(0.02)
        await self.app(scope, receive, send)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.standin = SlackStandIn().start()
        self.gate = Gate(self.standin.app)
        self.slack = ServerThread(self.gate).start()
        settings = Settings(
            slack_bot_token=self.standin.bot_token,
            slack_signing_secret=SECRET,
            slack_api_url=self.slack.url + "/api/",
            thingspace_base_url="http://127.0.0.1:9",  # never called here
            thingspace_client_id="c",
            thingspace_client_secret="s",
            thingspace_username="u",
            thingspace_password="p",
            thingspace_account="0000123456-00001",
            db_path=str(tmp_path / "bot.db"),
            grants=DEMO_GRANTS,  # admin U012ADMIN, operator S0ONCALL (U0OPS1, U0OPS2), viewer C0NOC
        )
        self.runtime = Runtime(settings, sync_directory_at_start=False)
        self.server = ServerThread(self.runtime.web).start()
        self.driver = SlackDriver(self.server.url + "/slack/events", SECRET, self.standin)

    def start(self) -> None:
        self.runtime.start()

    def role(self, user: str, channel: str = "C0OPS") -> str:
        """The role ``/ts help`` tells *user* they have, timed: a command never waits for Slack."""
        started = time.monotonic()
        response = self.driver.command("help", user=user, channel=channel)
        assert response.status_code == 200
        assert time.monotonic() - started < 2.5, "the ack waited for something slow"
        text = str(response.json()["text"]) + str(response.json().get("blocks", ""))
        for role in ("admin", "operator", "viewer"):
            if f"Your role here: *{role}*" in text:
                return role
        assert "You have no role here yet" in text, text
        return "none"

    def members(self, group: str = "S0ONCALL") -> set[str]:
        db = self.runtime.pool.get()
        rows = db.execute("SELECT user_id FROM group_members WHERE group_id = ?", [group]).fetchall()
        return {r[0] for r in rows}

    def runs(self) -> int:
        return int(self.runtime.scheduler_lease.ran.get(JOB, 0))

    def started(self) -> None:
        """The refresh run at start is over (members stored and the run recorded)."""
        assert _wait(lambda: self.members() == {"U0OPS1", "U0OPS2"} and self.runs() >= 1)

    def refresh(self) -> None:
        """Make the scheduler run the refresh now (as its 10-minute timer would) and wait for it.

        The previous run counts itself a moment before APScheduler sees it end (it still records
        the run), and a run asked for in that moment is skipped (``max_instances=1``): ask again.
        """
        before = self.runs()
        for _ in range(8):
            self.runtime.scheduler.modify_job(JOB, next_run_time=datetime.now(UTC))
            if _wait(lambda: self.runs() > before, timeout=2.0):
                return
        raise AssertionError("the scheduler did not run the refresh")

    def close(self) -> None:
        self.gate.open.set()
        self.driver.close()
        self.server.stop()
        self.runtime.stop()
        self.slack.stop()
        self.standin.stop()


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


def test_the_scheduler_loads_group_members_at_start_while_commands_keep_working(world: World) -> None:
    """At start the scheduler asks Slack who is in each granted group; while that call is in flight,
    user and channel grants work (and a group member is denied, not kept waiting); once Slack
    answers, the group's members have its role. Nobody called the job by hand."""
    world.start()
    assert world.gate.arrived.wait(10), "the scheduler did not refresh memberships at start"
    assert world.members() == set()
    assert world.role("U012ADMIN") == "admin"  # user grant
    assert world.role("U0NOC1", channel="C0NOC") == "viewer"  # channel grant
    assert world.role("U0OPS1") == "none"  # group grant: default deny until Slack answers
    world.gate.open.set()
    world.started()
    assert world.role("U0OPS1") == "operator"
    [call] = world.standin.calls("usergroups.users.list")
    assert call.params["usergroup"] == "S0ONCALL"


@pytest.mark.parametrize(
    "fault",
    [{"status": 429}, {"status": 503}, {"error": "ratelimited"}, {"error": "internal_error"}],
    ids=["http-429", "http-503", "ratelimited", "internal_error"],
)
def test_a_temporary_slack_error_keeps_the_last_known_members(world: World, fault: dict[str, Any]) -> None:
    """Rate-limited or failing, Slack said nothing about membership: the members stay, and so do
    their grants, until the next answer."""
    world.gate.open.set()
    world.start()
    world.started()
    world.standin.inject("usergroups.users.list", **fault)
    world.refresh()
    assert world.standin.calls("usergroups.users.list")[-1].injected
    assert world.members() == {"U0OPS1", "U0OPS2"}
    assert world.role("U0OPS1") == "operator"


def test_a_definitive_answer_replaces_the_members(world: World) -> None:
    """A new member list replaces the old one; Slack saying the group does not exist empties it."""
    world.gate.open.set()
    world.start()
    world.started()
    world.standin.add_usergroup("S0ONCALL", ["U0OPS2"])
    world.refresh()
    assert world.members() == {"U0OPS2"}
    assert world.role("U0OPS1") == "none" and world.role("U0OPS2") == "operator"
    world.standin.inject("usergroups.users.list", error="no_such_subteam")
    world.refresh()
    assert world.members() == set()
    assert world.role("U0OPS2") == "none"


def test_slack_unreachable_keeps_the_last_known_members(tmp_path: Path) -> None:
    """No answer at all (connection refused) is not an answer either."""
    world = World(tmp_path)
    try:
        world.gate.open.set()
        world.start()
        world.started()
        world.slack.stop()  # Slack's address now refuses connections
        world.refresh()
        assert world.members() == {"U0OPS1", "U0OPS2"}
    finally:
        world.close()


def test_members_slack_has_not_confirmed_for_an_hour_stop_counting(tmp_path: Path) -> None:
    """Kept through failures, but not forever: after MAX_AGE without Slack confirming them, a
    group's members no longer count, so a lookup that keeps failing ends in denial (fail closed)."""
    pool = ConnectionPool(tmp_path / "m.db")
    db = pool.get()
    with write(db):
        memberships.replace_members(db, "S0ONCALL", ["U0OPS1"], now=1_000.0)
    assert memberships.groups_of(db, "U0OPS1", now=1_000.0 + memberships.MAX_AGE) == {"S0ONCALL"}
    assert memberships.groups_of(db, "U0OPS1", now=1_001.0 + memberships.MAX_AGE) == set()
    with write(db):
        memberships.replace_members(db, "S0ONCALL", ["U0OPS1"], now=1_001.0 + memberships.MAX_AGE)
    assert memberships.groups_of(db, "U0OPS1", now=1_001.0 + memberships.MAX_AGE) == {"S0ONCALL"}
    pool.close()
