"""Callback results end to end: signed Slack requests to the real bot, the sandbox behind the real
client calling back over loopback, the Slack stand-in recording what people see (stories 1 and 2)."""

from __future__ import annotations

import time

from sqlite_utils import Database

from bot.console.records import Message
from bot.inbox.unanswered import check_unanswered
from bot.local_stack import CALLBACK_PASSWORD, CALLBACK_USER, LocalStack
from storage import directory, outbox, requests
from storage.audit.log import AuditLog
from tests.helpers.callbacks import callback, send_callbacks
from tests.helpers.stacks import stack_fixture

stack = stack_fixture(devices=200, scheduler=False)


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _key(stack: LocalStack, label: str) -> str:
    found, _ = directory.find(_db(stack), label, limit=1)
    assert found, f"no seeded device labelled {label}"
    return found[0].key


def _request_for(stack: LocalStack, device: str) -> requests.TrackedRequest:
    """The newest tracked request naming *device* (waiting for the worker to record it)."""
    db = _db(stack)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = db.execute(
            "SELECT request_id FROM ts_request_devices WHERE device = ? ORDER BY updated_at DESC LIMIT 1",
            [device],
        ).fetchone()
        if row is not None:
            found = requests.get_request(db, row[0])
            assert found is not None
            return found
        time.sleep(0.05)
    raise AssertionError(f"no request for {device}")


def _thread(stack: LocalStack, request_id: str) -> list[Message]:
    ref = outbox.message_ref(_db(stack), f"req:{request_id}")
    assert ref is not None
    return stack.standin.thread(*ref)[1:]


def test_a_single_suspend_lands_in_its_thread(stack: LocalStack) -> None:
    """Story 1: suspend → Confirm → the sandbox calls back → the thread says when ThingSpace
    confirmed and when the line auto-resumes; the directory knows it is suspended."""
    key = _key(stack, "demo-reconnect-loop")
    stack.command(f"suspend {key} --reason stolen")
    stack.click("Confirm")
    reply = stack.standin.wait_for(
        lambda m: (
            m.thread_ts is not None and "demo-reconnect-loop" in m.text and "is suspended until" in m.text
        ),
        timeout=20,
    )
    assert "ThingSpace confirmed at" in reply.text and "auto-resumes" in reply.text
    root = stack.standin.message(reply.channel, reply.thread_ts or "")
    assert "Suspended demo-reconnect-loop" in root.text and "stolen" in root.text
    kind, _, value = key.partition(":")
    entry = directory.lookup(_db(stack), kind, value)
    assert entry is not None and entry.state == "suspend" and entry.resume_date


def test_three_retries_of_the_same_callback_have_one_effect(stack: LocalStack) -> None:
    """The sandbox's callback is lost; the same payload POSTed with callbackCount 1, 2 and 3 to the
    bot gives one reply in the thread and one audit entry."""
    key = _key(stack, "demo-imei-mismatch")
    stack.sandbox.drop_callbacks(1, "CarrierService")
    stack.command(f"suspend {key}")
    stack.click("Confirm")
    tracked = _request_for(stack, key)
    url = stack.bot_url + "/thingspace/callbacks"
    bodies = [
        callback(tracked.request_id, key, count=n, username=CALLBACK_USER, password=CALLBACK_PASSWORD)
        for n in (1, 2, 3)
    ]
    for body in bodies:
        assert send_callbacks(url, [body], concurrency=1) == [200]
    assert stack.settle()
    replies = _thread(stack, tracked.request_id)
    assert len(replies) == 1 and "is suspended until" in replies[0].text
    rows = AuditLog(_db(stack)).query(target=key, verb="callback")
    assert len(rows) == 1


def test_bulk_suspend_shows_progress_summary_and_retries_the_failures(stack: LocalStack) -> None:
    """Story 2: an operator suspends group:plant-7, a second operator approves; the line that used
    its five actions today is taken off the card with the reason before ThingSpace is asked; one
    message is updated in place and ends with failures by reason and Retry failed, which proposes
    exactly the failed lines again."""
    plant = directory.group_members(_db(stack), "plant-7")
    limited = _key(stack, "demo-action-limit")
    answer = stack.command("suspend group:plant-7 --reason decommissioned", user="U0OPS1")
    assert f"Suspend {len(plant)} devices?" in answer.text
    card = stack.standin.wait_for(
        lambda m: m.ephemeral and m.updated and "provisioning actions today" in str(m.blocks), timeout=30
    )
    sent = len(plant) - 1
    assert card.text == f"Suspend {sent} devices?" and "demo-action-limit" in str(card.blocks)
    stack.click("Confirm", user="U0OPS1")
    stack.standin.wait_for(lambda m: "Approval needed" in m.text, timeout=10)
    lost = 10  # ThingSpace "loses" these; they are sent (late) by hand below
    stack.sandbox.drop_callbacks(lost, "CarrierService")
    stack.click("Approve", user="U0OPS2")
    progress = stack.standin.wait_for(
        lambda m: "is suspending" in m.text and f"{sent - lost:,} of {sent:,}" in str(m.blocks),
        timeout=60,
    )
    assert "done:" not in progress.text and "Retry failed" not in str(progress.blocks)
    tracked = _request_for(stack, plant[0].key if plant[0].key != limited else plant[1].key)
    late = [d for d, s, _ in requests.device_outcomes(_db(stack), tracked.request_id) if s == "pending"]
    assert len(late) == lost
    url = stack.bot_url + "/thingspace/callbacks"
    bodies = [
        callback(tracked.request_id, d, username=CALLBACK_USER, password=CALLBACK_PASSWORD) for d in late
    ]
    assert send_callbacks(url, bodies, concurrency=4) == [200] * lost
    summary = stack.standin.wait_for(lambda m: m.ts == progress.ts and "done:" in m.text, timeout=30)
    assert stack.settle()
    root = stack.standin.message(summary.channel, summary.ts)
    assert root.updated and root.last_source == "update"
    assert f"of {sent:,} suspended" in root.text
    text = str(root.blocks)
    assert "Failures by reason" in text
    assert f"100% · {sent:,} of {sent:,}" in text
    # no reply per device: the one new message in the thread is the settle message
    (settled,) = stack.standin.thread(root.channel, root.ts)[1:]
    assert f"of {sent:,} suspended" in settled.text and "asked by <@" in settled.text
    retry = [b for b in root.buttons() if b.text == "Retry failed"]
    assert len(retry) == 1
    request_id = retry[0].value or ""
    assert request_id == tracked.request_id
    done = requests.get_request(_db(stack), request_id)
    assert done is not None and done.state == "completed" and done.device_count == sent
    failed = [d for d, s, _ in requests.device_outcomes(_db(stack), request_id) if s == "failed"]
    assert failed and f"{len(failed):,} failed" in root.text and limited not in failed

    stack.click("Retry failed", user="U0OPS1")
    card = stack.standin.wait_for(
        lambda m: (
            m.ephemeral
            and m.user == "U0OPS1"
            and "Suspend" in m.text
            and "device" in m.text
            and "retry of request" in str(m.blocks)
        ),
        timeout=20,
    )
    assert f"Suspend {len(failed)} device" in card.text
    stack.click("Confirm", user="U0OPS1")
    assert stack.settle(timeout=60)
    for device in failed:
        kind, _, value = device.partition(":")
        entry = directory.lookup(_db(stack), kind, value)
        assert entry is not None and entry.state == "suspend"


def test_sms_reach_and_cancel_location_results_land_in_their_threads(stack: LocalStack) -> None:
    """SMS sent then delivered, a reachability answer and a cancel location each reply in the
    thread of the request that asked."""
    texting = _key(stack, "demo-no-traffic")
    asking = _key(stack, "demo-healthy")
    detaching = _key(stack, "demo-hung")
    stack.command(f"sms {texting} REBOOT")
    stack.command(f"reach {asking}")
    stack.command(f"cancel-location {detaching}")
    stack.click("Confirm")
    expected = {
        texting: ["SMS to demo-no-traffic", "SMS delivered to demo-no-traffic"],
        asking: ["demo-healthy (iccid"],
        detaching: ["Cancel location done for demo-hung"],
    }
    deadline = time.monotonic() + 30
    for device, wanted in expected.items():
        tracked = _request_for(stack, device)
        while time.monotonic() < deadline:
            texts = [m.text for m in _thread(stack, tracked.request_id)] if _root_sent(stack, tracked) else []
            if len(texts) >= len(wanted):
                break
            time.sleep(0.1)
        assert [w for w, t in zip(wanted, texts, strict=False) if w in t] == wanted, texts
    reach_reply = _thread(stack, _request_for(stack, asking).request_id)[0].text
    assert "is reachable for data" in reach_reply


def _root_sent(stack: LocalStack, tracked: requests.TrackedRequest) -> bool:
    return outbox.message_ref(_db(stack), f"req:{tracked.request_id}") is not None


def test_a_request_without_callback_is_looked_up_with_request_status(stack: LocalStack) -> None:
    """After no_result_after, a single-device suspend whose callback never came is settled from
    ThingSpace's request status (Success), and one still pending there is said to be pending."""
    lost = _key(stack, "demo-down")
    stuck = _key(stack, "demo-pending")
    stack.sandbox.drop_callbacks(1, "CarrierService")
    stack.command(f"suspend {lost}")
    stack.click("Confirm")
    lost_request = _request_for(stack, lost)
    stack.command(f"suspend {stuck}")
    stack.click("Confirm")
    stuck_request = _request_for(stack, stuck)
    assert stack.settle()
    assert stack.runtime is not None
    assert check_unanswered(stack.runtime.deps, now=time.time() + 31 * 60) >= 2
    assert stack.settle()
    (settled,) = _thread(stack, lost_request.request_id)
    assert "demo-down" in settled.text and "is suspended" in settled.text
    assert "from ThingSpace's request status; no callback arrived" in settled.text
    kind, _, value = lost.partition(":")
    entry = directory.lookup(_db(stack), kind, value)
    assert entry is not None and entry.state == "suspend"
    (waiting,) = _thread(stack, stuck_request.request_id)
    assert "still lists request" in waiting.text and "pending" in waiting.text
    assert requests.device_outcomes(_db(stack), stuck_request.request_id)[0][1] == "pending"
