"""Reconciliation against the sandbox over loopback, with the bot's real scheduler: results whose
callbacks ThingSpace dropped still reach the thread from the request status, and a callback that
arrives after that is not told twice."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlite_utils import Database

from bot.console.records import Message
from bot.local_stack import CALLBACK_PASSWORD, CALLBACK_USER, LocalStack
from storage import outbox, requests


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("reconcile"),
        devices=40,
        settings_overrides={"reconcile_after": timedelta(seconds=2)},
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _healthy(stack: LocalStack, n: int) -> list[str]:
    rows = _db(stack).execute(
        "SELECT key FROM devices WHERE state = 'active' AND label NOT LIKE 'demo-%' ORDER BY key LIMIT ?", [n]
    )
    return [str(r[0]) for r in rows.fetchall()]


def _request_for(stack: LocalStack, device: str) -> requests.TrackedRequest:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = (
            _db(stack)
            .execute(
                "SELECT request_id FROM ts_request_devices WHERE device = ? ORDER BY updated_at DESC",
                [device],
            )
            .fetchone()
        )
        if row is not None:
            found = requests.get_request(_db(stack), row[0])
            assert found is not None
            return found
        time.sleep(0.05)
    raise AssertionError(f"no request for {device}")


def _thread(stack: LocalStack, request_id: str) -> list[Message]:
    ref = outbox.message_ref(_db(stack), f"req:{request_id}")
    return stack.standin.thread(*ref) if ref is not None else []


def _root_text(stack: LocalStack, request_id: str) -> str:
    thread = _thread(stack, request_id)
    return thread[0].text if thread else ""


def _wait(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError("the bot did not get there in time")


def test_dropped_callbacks_are_reported_from_the_request_status(stack: LocalStack) -> None:
    """ThingSpace drops every callback of a single and of a three-device suspend: within seconds
    of reconcile_after the single thread says the line is suspended (from the request status) and
    the bulk message is complete. A callback that turns up afterwards is not told again."""
    single, *bulk = _healthy(stack, 4)
    stack.sandbox.drop_callbacks(10, "CarrierService")
    started = time.monotonic()
    stack.command(f"suspend {single} --reason lost")
    stack.click("Confirm")
    one = _request_for(stack, single)
    stack.command(f"suspend {' '.join(bulk)} --reason site closed")
    stack.click("Confirm")
    many = _request_for(stack, bulk[0])

    _wait(lambda: len(_thread(stack, one.request_id)) == 2)
    _wait(lambda: "done: 3 of 3" in _root_text(stack, many.request_id))
    assert time.monotonic() - started < 120
    reply = _thread(stack, one.request_id)[1]
    assert "is suspended" in reply.text and "from ThingSpace's request status" in reply.text
    for request in (one, many):
        tracked = requests.get_request(_db(stack), request.request_id)
        assert tracked is not None and tracked.state == "completed"

    late = {
        "username": CALLBACK_USER,
        "password": CALLBACK_PASSWORD,
        "requestId": one.request_id,
        "deviceIds": [{"id": single.partition(":")[2], "kind": single.partition(":")[0]}],
        "deviceResponse": {"stateChange": {"state": "suspend"}},
        "status": "Success",
        "callbackCount": 2,
        "maxCallbackThreshold": 4,
    }
    answer = httpx.post(f"{stack.bot_url}/thingspace/callbacks", content=json.dumps(late).encode())
    assert answer.status_code == 200
    assert stack.settle()
    assert len(_thread(stack, one.request_id)) == 2  # told once


def test_a_5xx_on_a_suspend_is_uncertain_and_settled_from_provisioning_history(stack: LocalStack) -> None:
    """ThingSpace answers the suspend with a 503: nobody knows whether it happened, so the bot
    does not say "Nothing was changed"; it opens the thread worded as uncertain, sends nothing
    again, and settles the line from its provisioning history once that shows the suspension."""
    (line,) = _healthy(stack, 1)[-1:]
    stack.sandbox.inject_fault("/m2m/v1/devices/actions/suspend", status=503, count=1)
    suspends = len(stack.sandbox.requests_received("/m2m/v1/devices/actions/suspend"))
    stack.command(f"suspend {line} --reason maybe")
    stack.click("Confirm")
    request = _request_for(stack, line)
    assert request.request_id.startswith("uncertain-")
    _wait(lambda: bool(_thread(stack, request.request_id)))
    root = _thread(stack, request.request_id)[0]
    assert "did not confirm it" in str(root.blocks) and "may or may not have been done" in str(root.blocks)
    told = [
        m.text
        for m in stack.standin.messages(include_ephemeral=True)
        if "did not confirm the suspend" in m.text
    ]
    assert told and all("Nothing was changed" not in t for t in told)
    stack.sandbox.notify("ExternalProvisioningChanges", line, change="Suspend", by="the 503'd request")
    _wait(lambda: len(_thread(stack, request.request_id)) == 2)
    reply = _thread(stack, request.request_id)[1]
    assert "is suspended" in reply.text and "provisioning history" in reply.text
    assert (
        len(stack.sandbox.requests_received("/m2m/v1/devices/actions/suspend")) == suspends + 1
    )  # never resent
