"""Every verb end to end: signed requests over real HTTP to the bot, the sandbox behind the real
client, the Slack stand-in recording what the user sees."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.console.records import Message
from bot.stack import LocalStack
from storage import directory
from storage.audit import AuditLog


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("e2e"),
        devices=120,
        settings_overrides={"approval_size": 3, "max_targets": 20},
        scheduler=False,
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _device(stack: LocalStack, label: str) -> str:
    """The canonical key (iccid:…) of the seeded device with this label."""
    assert stack.runtime is not None
    found, _ = directory.find(stack.runtime.pool.get(), label, limit=1)
    assert found, f"no seeded device labelled {label}"
    return found[0].key


def _suspend_calls(stack: LocalStack) -> int:
    return sum(1 for r in stack.sandbox.requests_received() if r["path"].endswith("/devices/actions/suspend"))


def _reply(stack: LocalStack, predicate: Callable[[Message], bool], timeout: float = 10) -> Message:
    return stack.standin.wait_for(predicate, timeout=timeout)


def _audit(stack: LocalStack, **filters: object) -> list[object]:
    assert stack.runtime is not None
    return AuditLog(stack.runtime.pool.get()).query(limit=100, **filters)  # type: ignore[arg-type]


def test_find_by_last_digits(stack: LocalStack) -> None:
    """`find 9708` returns the stolen tracker with its full ICCID, answered in the ack."""
    response = stack.command("find 9708")
    assert response.status_code == 200
    body = response.json()
    assert "89148000000800139708" in str(body["blocks"])
    assert body["response_type"] == "ephemeral"


def test_status_answers_through_the_response_url(stack: LocalStack) -> None:
    """`status` acks at once, then the card arrives through the response_url."""
    response = stack.command("status iccid:89148000000800139708", user="U0NOC1", channel="C0NOC")
    assert "Looking up" in response.json()["text"]
    card = _reply(stack, lambda m: "89148000000800139708" in str(m.blocks) and "Plan" in str(m.blocks))
    assert card.ephemeral
    assert any(b.text == "Diagnose" for b in card.buttons())


def test_suspend_confirm_lands_in_channel(stack: LocalStack) -> None:
    """suspend → confirmation card → Confirm → one ThingSpace call and an in-channel message with the request id."""
    key = _device(stack, "demo-healthy")
    before = _suspend_calls(stack)
    response = stack.command(f"suspend {key} --reason stolen")
    assert "Suspend" in response.json()["text"]
    stack.click("Confirm")
    posted = _reply(stack, lambda m: not m.ephemeral and "is suspending" in m.text and "stolen" in m.text)
    assert re.search(r"Request `[0-9a-f-]{36}`", str(posted.blocks))
    assert stack.settle()
    assert _suspend_calls(stack) == before + 1
    verbs = [row.verb for row in _audit(stack, target=key)]  # type: ignore[attr-defined]
    assert "suspend" in verbs and "confirm" in verbs and "thingspace.call" in verbs


def test_double_click_acts_once(stack: LocalStack) -> None:
    """Two clicks on the same Confirm (a double click) suspend once; the second is told it was already confirmed."""
    key = _device(stack, "demo-no-traffic")
    before = _suspend_calls(stack)
    stack.command(f"suspend {key}")
    assert stack.driver is not None
    message, button = stack.driver.find_button("Confirm", user="U012ADMIN")
    for _ in range(2):
        payload = stack.driver.block_actions_payload(message, button, user="U012ADMIN")
        body = urlencode({"payload": json.dumps(payload)}).encode()
        assert stack.driver.post_raw(body, stack.driver.sign(body)).status_code == 200
    _reply(stack, lambda m: "Already confirmed" in m.text)
    assert stack.settle()
    assert _suspend_calls(stack) == before + 1


def test_dry_run_changes_nothing(stack: LocalStack) -> None:
    """--dry-run shows the API call and makes none."""
    key = _device(stack, "demo-hung")
    before = _suspend_calls(stack)
    body = stack.command(f"suspend {key} --dry-run").json()
    assert "Dry run" in body["text"] and "/devices/actions/suspend" in body["text"]
    assert stack.settle()
    assert _suspend_calls(stack) == before


def test_already_suspended_is_skipped_without_a_call(stack: LocalStack) -> None:
    """A line already suspended gets 'already suspended' and no API call."""
    key = _device(stack, "demo-suspended")
    before = _suspend_calls(stack)
    body = stack.command(f"suspend {key}").json()
    assert "already suspended" in str(body)
    assert _suspend_calls(stack) == before


def test_viewer_is_refused_politely_and_audited(stack: LocalStack) -> None:
    """A NOC viewer can diag but not suspend; the refusal is recorded."""
    body = stack.command("suspend iccid:89148000000800139708", user="U0NOC1", channel="C0NOC").json()
    assert "needs the *operator* role" in body["text"]
    denied = [r for r in _audit(stack, actor="U0NOC1") if r.outcome == "denied"]  # type: ignore[attr-defined]
    assert denied


def test_help_shows_only_what_a_viewer_may_run(stack: LocalStack) -> None:
    """help for a viewer lists diag and not suspend."""
    text = stack.command("help", user="U0NOC1", channel="C0NOC").json()["text"]
    assert "diag" in text and "suspend" not in text


def test_cancel_location_needs_admin(stack: LocalStack) -> None:
    """An operator cannot cancel location; an admin gets a confirmation."""
    refused = stack.command("cancel-location iccid:89148000000800139708", user="U0OPS1").json()
    assert "admin" in refused["text"]
    allowed = stack.command("cancel-location iccid:89148000000800139708", user="U012ADMIN").json()
    assert "Cancel location" in allowed["text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("frobnicate", "is not a command"),
        ("status 12345", "does not look like a device identifier"),
        ("status 5551234567", "could be mdn or min"),
        ("status", "needs one device"),
        ("suspend group:nowhere", "no device group `nowhere`"),
        ('sms mdn:5551234567 "' + "x" * 161 + '"', "at most 160"),
        ("sms mdn:5551234567", "SMS text is empty"),
        ("history --since soon", "--since takes a duration"),
        ("request nope", "needs the request id"),
        ("find ab", "at least 3 characters"),
    ],
)
def test_bad_input_gets_a_specific_ephemeral_error(stack: LocalStack, text: str, expected: str) -> None:
    """Each kind of bad input is answered with what was wrong, and changes nothing."""
    before = _suspend_calls(stack)
    body = stack.command(text).json()
    assert body["response_type"] == "ephemeral"
    assert expected in body["text"], body["text"]
    assert _suspend_calls(stack) == before


def test_too_many_targets(stack: LocalStack) -> None:
    """More devices than max_targets is refused with the limit."""
    body = stack.command("suspend group:plant-7").json()
    assert "at most 20" in body["text"]


def test_sms_to_one_device_needs_no_confirmation(stack: LocalStack) -> None:
    """An SMS to one device goes straight out and opens a thread in the channel."""
    body = stack.command('sms iccid:89148000000800139708 "REBOOT"', user="U0OPS1").json()
    assert "Sending the SMS" in body["text"]
    _reply(stack, lambda m: not m.ephemeral and "sent an SMS" in m.text)


def test_history_tells_the_story(stack: LocalStack) -> None:
    """history for a device lists who did what, newest first."""
    key = _device(stack, "demo-healthy")
    body = stack.command(f"history {key}").json()
    assert "suspend" in str(body["blocks"]) and "U012ADMIN" in str(body["blocks"])


def test_request_status_polls(stack: LocalStack) -> None:
    """request ID shows what the bot knows of a request it made."""
    assert stack.runtime is not None
    row = stack.runtime.pool.get().execute("SELECT request_id FROM ts_requests LIMIT 1").fetchone()
    assert row, "an earlier test made a request"
    stack.command(f"request {row[0]}")
    _reply(stack, lambda m: row[0] in str(m.blocks) and "device" in str(m.blocks))


def test_four_eyes_for_bulk(tmp_path: Path) -> None:
    """Above approval_size: confirm posts an approval card; the requester cannot approve; another operator can."""
    with LocalStack(tmp_path, devices=60, settings_overrides={"approval_size": 2}, scheduler=False) as local:
        keys = [
            f"{k}"
            for k in (
                _device(local, "demo-healthy"),
                _device(local, "demo-hung"),
                _device(local, "demo-down"),
            )
        ]
        before = _suspend_calls(local)
        local.command("suspend " + ",".join(keys) + " --reason decommissioned", user="U0OPS1")
        local.click("Confirm", user="U0OPS1")
        card = local.standin.wait_for(lambda m: not m.ephemeral and "Approval needed" in m.text, timeout=10)
        assert card is not None
        local.click("Approve", user="U0OPS1")
        refused = local.standin.wait_for(lambda m: "someone else must approve" in m.text, timeout=10)
        assert refused.ephemeral
        assert _suspend_calls(local) == before
        local.click("Approve", user="U0OPS2")
        local.standin.wait_for(lambda m: "Approved" in m.text and "U0OPS2" in m.text, timeout=10)
        assert local.settle()
        assert _suspend_calls(local) == before + 1


def test_confirmation_expires(tmp_path: Path) -> None:
    """A Confirm clicked after the card's lifetime does nothing and says so."""
    with LocalStack(
        tmp_path, devices=40, settings_overrides={"confirm_ttl": timedelta(seconds=1)}, scheduler=False
    ) as local:
        key = _device(local, "demo-healthy")
        before = _suspend_calls(local)
        local.command(f"suspend {key}")
        time.sleep(1.5)
        local.click("Confirm")
        local.standin.wait_for(lambda m: "expired" in m.text, timeout=10)
        assert _suspend_calls(local) == before
