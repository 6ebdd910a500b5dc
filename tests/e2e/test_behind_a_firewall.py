"""README "Behind a firewall", end to end: the bot configured exactly as that section says (its
TOML, and no public URL) registers no callback listener, and still shows suspend, SMS and
reachability results, device-originated SMS and watched devices' reachability — all by asking
the sandbox over loopback."""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.console.records import Message
from bot.core.config import parse_config
from bot.local_stack import LocalStack
from bot.scheduler.poll_tasks import poll_mo_sms, poll_reachability
from storage import inbox, outbox, requests, watches

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section_settings() -> dict[str, object]:
    """The settings the README's "Behind a firewall" section gives (its TOML block)."""
    section = README.split("### Behind a firewall", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the section shows its configuration"
    given = parse_config(tomllib.loads(block.group(1)), source="README")
    given.pop("grants")  # the section grants nobody anything: the stack's demo grants stay
    assert given == {"results": "poll"}
    return given


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    overrides = {**_section_settings(), "public_url": ""}
    local = LocalStack(tmp_path_factory.mktemp("firewall"), devices=40, settings_overrides=overrides)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _wait(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("the bot did not get there in time")


def _request_for(stack: LocalStack, device: str, verb: str) -> requests.TrackedRequest:
    found: list[requests.TrackedRequest] = []

    def seen() -> bool:
        row = (
            _db(stack)
            .execute(
                "SELECT r.request_id FROM ts_request_devices d JOIN ts_requests r USING (request_id) "
                "WHERE d.device = ? AND r.verb = ? ORDER BY r.created_at DESC",
                [device, verb],
            )
            .fetchone()
        )
        if row is not None:
            tracked = requests.get_request(_db(stack), row[0])
            if tracked is not None:
                found.append(tracked)
        return bool(found)

    _wait(seen, 15)
    return found[0]


def _thread(stack: LocalStack, request_id: str) -> list[Message]:
    ref = outbox.message_ref(_db(stack), f"req:{request_id}")
    return stack.standin.thread(*ref) if ref is not None else []


def _replies(stack: LocalStack, request_id: str) -> str:
    return " ".join(m.text for m in _thread(stack, request_id)[1:])


def _line(stack: LocalStack, label: str) -> str:
    row = _db(stack).execute("SELECT key FROM devices WHERE label = ?", [label]).fetchone()
    assert row is not None
    return str(row[0])


def test_the_bot_runs_in_poll_mode_with_no_listener(stack: LocalStack) -> None:
    """The section's settings put the bot in poll mode, and nothing is registered at ThingSpace."""
    assert stack.runtime is not None and stack.runtime.settings.poll_results
    assert stack.sandbox.summary()["listeners"] in ([], {}, 0)
    assert all(c["outcome"] == "no-listener" for c in stack.sandbox.callbacks_sent())


def test_suspend_sms_and_reach_results_arrive_by_asking(stack: LocalStack) -> None:
    """A suspend, an SMS and a reachability query each get their result in the thread from the
    request status, seconds after ThingSpace accepted them."""
    line = _line(stack, "demo-down")
    sms_line = _line(stack, "demo-healthy")
    stack.command(f"suspend {line} --reason firewall")
    stack.click("Confirm")
    suspend = _request_for(stack, line, "suspend")
    stack.command(f"sms {sms_line} hello from behind the firewall")  # one line: no confirmation
    sms = _request_for(stack, sms_line, "sms")
    stack.command(f"reach {sms_line}")
    reach = _request_for(stack, sms_line, "reach")
    _wait(lambda: "is suspended" in _replies(stack, suspend.request_id))
    _wait(lambda: "SMS delivered" in _replies(stack, sms.request_id))
    _wait(lambda: "is reachable" in _replies(stack, reach.request_id))
    assert "from ThingSpace's request status" in _replies(stack, suspend.request_id)
    # ThingSpace had results to call back, and no listener to call them back to
    sent = stack.sandbox.callbacks_sent()
    assert sent and {c["outcome"] for c in sent} == {"no-listener"}


def test_device_sms_and_watched_reachability_come_by_polling(stack: LocalStack) -> None:
    """A device's SMS waiting in ThingSpace's inbox reaches the bot's inbox; a watched device is
    asked about with a status query and its reachability recorded."""
    assert stack.runtime is not None
    deps = stack.runtime.deps
    device = _line(stack, "demo-healthy")
    assert stack.sandbox.device_sms(device, "TEMP=21.5") == "queued"
    # the device's answer to the SMS sent above (the demo line replies) waits there too
    assert poll_mo_sms(deps) >= 1
    _wait(lambda: inbox.count_by_state(_db(stack)).get("received", 0) == 0)
    rows = _db(stack).execute("SELECT state, payload FROM inbox WHERE kind = 'sms-received'").fetchall()
    assert any("TEMP=21.5" in str(payload) for _, payload in rows)
    assert {state for state, _ in rows} == {"processed"}
    assert stack.standin.wait_for(lambda m: "TEMP=21.5" in m.text, timeout=15)  # posted in Slack
    assert poll_mo_sms(deps) == 0  # read once: acknowledged at ThingSpace

    stack.command(f"watch {device} --alert-after 2h")
    _wait(lambda: watches.get_watch(_db(stack), device) is not None, 15)
    queries = len(stack.sandbox.requests_received("/m2m/v1/diagnostics/basic/devicereachability/status"))
    poll_reachability(deps)  # asks
    assert (
        len(stack.sandbox.requests_received("/m2m/v1/diagnostics/basic/devicereachability/status"))
        == queries + 1
    )
    assert poll_reachability(deps) == 1  # reads the answer: reachable
    state = watches.get_state(_db(stack), device)
    assert state is not None and state.reachable
    assert (
        stack.sandbox.requests_received("/m2m/v1/diagnostics/basic/devicereachability", method="POST") == []
    )
