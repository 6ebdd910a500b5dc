"""Every verb end to end: signed requests over real HTTP to the bot, the sandbox behind the real
client, the Slack stand-in recording what the user sees."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.console.records import Message
from bot.local_stack import LocalStack
from storage import directory
from storage.audit.log import AuditLog
from tests.helpers.stacks import stack_fixture

stack = stack_fixture(
    devices=120, settings_overrides={"approval_size": 3, "max_targets": 20}, scheduler=False
)


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
    posted = _reply(
        stack,
        lambda m: (
            not m.ephemeral and ("is suspending" in m.text or "Suspended " in m.text) and "stolen" in m.text
        ),
    )
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
    root = _reply(stack, lambda m: not m.ephemeral and "sent an SMS" in m.text)
    _reply(stack, lambda m: m.ts == root.ts and "delivered at" in m.text and "REBOOT" in m.text)


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


# -- what people type is shown as typed (never a mention or a disguised link) ---------------------


def _active(stack: LocalStack, n: int, *, offset: int = 0) -> list[str]:
    """Keys of *n* active non-demo devices (each test takes its own slice of the fleet)."""
    assert stack.runtime is not None
    rows = (
        stack.runtime.pool.get()
        .execute(
            "SELECT key FROM devices WHERE state = 'active' AND label NOT LIKE 'demo-%' "
            "ORDER BY key LIMIT ? OFFSET ?",
            [n, offset],
        )
        .fetchall()
    )
    assert len(rows) == n
    return [r[0] for r in rows]


#: what Slack sends when someone types  <!channel> see <https://evil.example|runbook> & more
#: (should_escape: the characters typed literally arrive as &lt; &gt; &amp;)
TYPED_REASON = "&lt;!channel&gt; see &lt;https://evil.example|runbook&gt; &amp; more"


def _no_live_markup(message: Message) -> None:
    """Nothing in the message (text or blocks) is a live mention or link."""
    raw = message.text + json.dumps(list(message.blocks))
    assert "<!channel>" not in raw and "<https://evil" not in raw
    assert "&lt;!channel&gt;" in raw and "&lt;https://evil.example|runbook&gt;" in raw


def test_a_typed_mention_and_link_in_a_reason_stay_literal(stack: LocalStack) -> None:
    """A reason carrying <!channel> and <https://…|…> shows those characters in the approval card,
    the "Approved by" line and the channel post — no @channel, no disguised link."""
    keys = _active(stack, 4)
    stack.command("suspend " + ",".join(keys) + " --reason " + TYPED_REASON, user="U0OPS1")
    stack.click("Confirm", user="U0OPS1")
    card = _reply(stack, lambda m: not m.ephemeral and "Approval needed" in m.text)
    _no_live_markup(card)
    stack.click("Approve", user="U0OPS2")
    approved = _reply(stack, lambda m: m.ts == card.ts and "Approved by" in m.text)
    _no_live_markup(approved)
    posted = _reply(
        stack,
        lambda m: not m.ephemeral and ("U0OPS1> is suspending" in m.text or "U0OPS1> suspended" in m.text),
    )
    _no_live_markup(posted)
    assert stack.settle()
    row = next(r for r in _audit(stack, actor="U0OPS1") if r.verb == "suspend")  # type: ignore[attr-defined]
    assert row.reason == "<!channel> see <https://evil.example|runbook> & more"  # type: ignore[attr-defined]


def test_an_sms_to_several_devices_is_confirmed_and_sent_exactly_as_typed(stack: LocalStack) -> None:
    """sms to two devices: a confirmation card showing the text literally, then one ThingSpace
    call whose smsMessage carries the characters typed (a < b && <!channel>), and a channel
    post that shows them, with the reason."""
    from bot.sandbox.actions import sms_received

    keys = _active(stack, 2, offset=4)
    before = len(sms_received(stack.sandbox.state))
    body = stack.command(
        "sms " + ",".join(keys) + ' "a &lt; b &amp;&amp; &lt;!channel&gt;" --reason &lt;!here&gt; check',
        user="U0OPS1",
    ).json()
    assert body["text"] == "Send an SMS to 2 devices?"
    card = json.dumps(body["blocks"])
    assert "a &lt; b &amp;&amp; &lt;!channel&gt;" in card and "<!" not in card
    stack.click("Confirm", user="U0OPS1")
    posted = _reply(stack, lambda m: not m.ephemeral and "U0OPS1> sent an SMS to 2 devices" in m.text)
    assert (
        "a &lt; b &amp;&amp; &lt;!channel&gt;" in posted.text
        and "reason: _&lt;!here&gt; check_" in posted.text
    )
    assert "<!" not in posted.text + json.dumps(list(posted.blocks))
    assert stack.settle()
    sent = sms_received(stack.sandbox.state)[before:]
    assert [s["smsMessage"] for s in sent] == ["a < b && <!channel>"]
    assert sorted(d["id"] for d in sent[0]["deviceIds"]) == sorted(k.split(":", 1)[1] for k in keys)


def test_a_mention_slack_made_from_at_channel_is_sent_as_typed(stack: LocalStack) -> None:
    """@here typed in an SMS arrives from Slack as <!here>: the device gets "@here", the channel
    post shows the plain word (no live mention)."""
    from bot.sandbox.actions import sms_received

    (key,) = _active(stack, 1, offset=6)
    before = len(sms_received(stack.sandbox.state))
    stack.command(f'sms {key} "<!here> reboot at 5 &gt; 4"', user="U0OPS1")
    posted = _reply(stack, lambda m: not m.ephemeral and "@here reboot" in m.text)
    assert "<!here>" not in posted.text and "5 &gt; 4" in posted.text
    assert stack.settle()
    assert [s["smsMessage"] for s in sms_received(stack.sandbox.state)[before:]] == ["@here reboot at 5 > 4"]


# -- the paths the review found untested ----------------------------------------------------------


def _restore_calls(stack: LocalStack) -> int:
    return sum(1 for r in stack.sandbox.requests_received() if r["path"].endswith("/devices/actions/restore"))


def test_resume_confirm_restores_end_to_end(stack: LocalStack) -> None:
    """resume a suspended line → card → Confirm → one restore call, an in-channel message, and
    ThingSpace's callback in its thread; the directory says active again."""
    assert stack.runtime is not None
    key = _device(stack, "demo-suspended")
    before = _restore_calls(stack)
    body = stack.command(f"resume {key} --reason back in service").json()
    assert body["text"] == "Resume 1 device?"
    stack.click("Confirm")
    root = _reply(
        stack,
        lambda m: (
            not m.ephemeral
            and m.thread_ts is None
            and ("is resuming demo-suspended" in m.text or "Resumed demo-suspended" in m.text)
        ),
    )
    assert "back in service" in root.text
    reply = _reply(stack, lambda m: m.thread_ts == root.ts and "is resumed" in m.text, timeout=20)
    assert "demo-suspended" in reply.text
    assert stack.settle()
    assert _restore_calls(stack) == before + 1
    kind, _, value = key.partition(":")
    entry = directory.lookup(stack.runtime.pool.get(), kind, value)
    assert entry is not None and entry.state == "active"


def test_reject_by_a_second_operator_changes_nothing(stack: LocalStack) -> None:
    """Above the approval size, a second operator's Reject closes the card, tells the requester,
    is audited, and nothing is sent to ThingSpace."""
    keys = _active(stack, 4, offset=7)
    before = _suspend_calls(stack)
    stack.command("suspend " + ",".join(keys) + " --reason rejected-path", user="U0OPS1")
    stack.click("Confirm", user="U0OPS1")
    card = _reply(
        stack, lambda m: not m.ephemeral and "Approval needed" in m.text and "rejected-path" in m.text
    )
    assert stack.driver is not None
    stack.driver.click("Reject", user="U0OPS2", ts=card.ts)
    closed = _reply(stack, lambda m: m.ts == card.ts and "Rejected by <@U0OPS2>" in m.text)
    assert closed.buttons() == []
    told = _reply(stack, lambda m: m.ephemeral and m.user == "U0OPS1" and "rejected your suspend" in m.text)
    assert "Nothing was changed" in told.text
    assert stack.settle()
    assert _suspend_calls(stack) == before
    rejects = [r for r in _audit(stack, actor="U0OPS2") if r.verb == "reject"]  # type: ignore[attr-defined]
    assert [r.outcome for r in rejects] == ["ok"]  # type: ignore[attr-defined]


def test_cancel_location_takes_one_device(stack: LocalStack) -> None:
    """cancel-location with two devices is refused with what is accepted; nothing is queued."""
    keys = _active(stack, 2, offset=11)
    body = stack.command("cancel-location " + " ".join(keys)).json()
    assert body["response_type"] == "ephemeral"
    assert "takes exactly one device; you named 2" in body["text"]
    assert "Usage: `/ts cancel-location TARGET" in body["text"]
    assert not [b for b in body.get("blocks") or [] if b.get("type") == "actions"]
