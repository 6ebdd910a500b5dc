"""A change made outside the bot, end to end: someone suspends a line in ThingSpace's portal (the
sandbox's ``POST /_sandbox/notify`` ExternalProvisioningChanges), the sandbox records it in the
line's provisioning history under that person, and the bot shows it — over loopback HTTP through
the Slack stand-in, with the real bot and its SQLite database:

* ``/ts history demo-…`` interleaves it with the bot's own audit rows, marked as from ThingSpace;
* the ``/ts status`` card says "Last changed by X at T (outside the bot)".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from bot.console.records import Message
from bot.local_stack import LocalStack
from bot.thingspace.ids import DeviceId

_OPS = "C0OPS"
_LINE = "demo-healthy"
_WHO = "jdoe@fleetops.example"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("outside"), devices=40, scheduler=False)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _wait_for(stack: LocalStack, what: str, found: Callable[[Message], bool], after: int) -> Message:
    """The first message (ephemeral ones included) posted after index *after* that *found* accepts."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in stack.standin.messages(_OPS, include_ephemeral=True)[after:]:
            if found(message):
                return message
        time.sleep(0.1)
    seen = [_text(m)[:300] for m in stack.standin.messages(_OPS, include_ephemeral=True)[after:]]
    raise AssertionError(f"{what}: not seen within 30 s; after it: {seen}")


def _text(message: Message) -> str:
    return "\n".join(str(block) for block in message.blocks)


def _lines(message: Message) -> list[str]:
    """The lines of the message's section blocks, top to bottom."""
    texts = [str(b.get("text", {}).get("text", "")) for b in message.blocks if b.get("type") == "section"]
    return "\n".join(texts).splitlines()


def _notify_suspend(stack: LocalStack) -> None:
    body = {"service": "ExternalProvisioningChanges", "device": _LINE, "change": "Suspend", "by": _WHO}
    response = httpx.post(stack.sandbox_server.url + "/_sandbox/notify", json=body)
    assert response.status_code == 200, response.text


def test_a_portal_change_is_in_history_and_on_the_status_card(stack: LocalStack) -> None:
    # something the bot itself did with the line first, so there is an audit row to interleave with
    stack.command(f"status {_LINE}")
    assert stack.settle()
    time.sleep(1.1)  # ThingSpace's times are whole seconds: the change falls in a later one
    _notify_suspend(stack)

    # the sandbox keeps it in the line's provisioning history, under who did it (not the bot's user)
    iccid = stack.sandbox.device(_LINE)["ids"]["iccid"]
    assert stack.runtime is not None
    now = stack.sandbox.clock()
    events = list(
        stack.runtime.thingspace.provisioning_history(
            DeviceId.from_wire({"kind": "iccid", "id": iccid}),
            now - timedelta(hours=1),
            now + timedelta(minutes=1),
        )
    )
    assert [(e.event_type, e.event_by) for e in events][-1:] == [("Suspend", _WHO)]
    assert stack.runtime.settings.thingspace_username != _WHO

    # the status card names who changed it, outside the bot
    before = len(stack.standin.messages(_OPS, include_ephemeral=True))
    stack.command(f"status {_LINE}")
    card = _wait_for(stack, "the status card", lambda m: "Last changed by" in _text(m), before)
    shown = _text(card)
    assert f"Last changed by {_WHO} at " in shown and "(outside the bot): Suspend." in shown
    assert f"Last changed by {_WHO} at <!date^" in str(card.blocks)  # in each reader's own zone

    # history: answered at once from the audit log, then redrawn with ThingSpace's events
    before = len(stack.standin.messages(_OPS, include_ephemeral=True))
    ack = stack.command(f"history {_LINE}")
    assert ack.status_code == 200
    assert "Reading ThingSpace's provisioning history" in str(ack.json().get("blocks"))
    page = _wait_for(
        stack, "the history redrawn", lambda m: "from ThingSpace's provisioning history" in _text(m), before
    )
    shown = _text(page)
    outside = f"*Suspend* by {_WHO} → Success · _from ThingSpace, outside the bot_"
    assert outside in shown
    assert "could not be read" not in shown
    # in time order with the bot's own rows, newest first: after the second status, before the first
    # timeline entries start with their time ("*11:00 UTC (just now)* · …")
    rows = [row for row in _lines(page) if row.startswith("*") and " · " in row]
    ours = [i for i, row in enumerate(rows) if "*status*" in row]
    theirs = [i for i, row in enumerate(rows) if outside in row]
    assert len(ours) >= 2 and len(theirs) == 1, rows
    assert ours[0] < theirs[0] < ours[-1], rows
