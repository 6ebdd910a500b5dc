"""A request ThingSpace still lists as Pending is asked about again on a backoff, and finally
reported at the end of its 24 h window.

Against the sandbox over loopback: ``demo-pending`` keeps its provisioning requests Pending for
good; a second line is held Pending, then released while its callback is dropped, so only the
re-check can find out that it was suspended.
"""

from __future__ import annotations

import time

from sqlite_utils import Database

from bot.console.records import Message
from bot.inbox.unanswered import check_unanswered
from bot.local_stack import LocalStack
from storage import directory, outbox, requests
from storage import request_devices as request_outcomes
from tests.helpers.stacks import stack_fixture

MINUTE = 60.0


stack = stack_fixture(devices=60, scheduler=False)


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _suspend(stack: LocalStack, device: str) -> requests.TrackedRequest:
    stack.command(f"suspend {device} --reason audit")
    stack.click("Confirm")
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
    assert ref is not None
    return stack.standin.thread(*ref)[1:]


def _state(stack: LocalStack, request_id: str) -> str:
    tracked = requests.get_request(_db(stack), request_id)
    assert tracked is not None
    return tracked.state


def _check(stack: LocalStack, at: float) -> int:
    assert stack.runtime is not None
    handled = check_unanswered(stack.runtime.deps, now=at)
    assert stack.settle()
    return handled


def test_pending_requests_are_looked_up_again_then_settled_or_reported(stack: LocalStack) -> None:
    """Both requests are Pending when first asked about. Past no_result_after the thread says so
    and that the bot keeps asking. The released one, whose callback the sandbox dropped, is
    settled from the request status at the next question; the stuck one is asked about on the
    backoff, its note updated in place, and at the end of the 24 h window the thread says "no
    result" with a Retry failed button. Between questions nothing is asked."""
    stuck = directory.find(_db(stack), "demo-pending", limit=1)[0][0]
    released = (
        _db(stack)
        .execute("SELECT key FROM devices WHERE state = 'active' AND label != 'demo-pending'")
        .fetchone()[0]
    )
    stack.sandbox.set_condition(released, "pending")
    stuck_request = _suspend(stack, stuck.key)
    released_request = _suspend(stack, released)
    assert stack.settle()
    t0 = max(stuck_request.created_at, released_request.created_at)

    assert _check(stack, t0 + 31 * MINUTE) == 2
    for request in (stuck_request, released_request):
        (note,) = _thread(stack, request.request_id)
        assert "still lists request" in note.text and "I keep asking" in note.text
        assert _state(stack, request.request_id) == "accepted"
    asked = len(stack.sandbox.requests_received(path="*/status"))
    assert _check(stack, t0 + 31.5 * MINUTE) == 0
    assert len(stack.sandbox.requests_received(path="*/status")) == asked  # not due: not asked

    stack.sandbox.drop_callbacks(1, "CarrierService")
    stack.sandbox.set_condition(released, "healthy")  # ThingSpace completes it; the callback is lost
    deadline = time.monotonic() + 10
    while not any(c.get("outcome") == "dropped" for c in stack.sandbox.callbacks_sent()):
        assert time.monotonic() < deadline, "the sandbox did not drop the callback"
        time.sleep(0.05)

    assert _check(stack, t0 + 33 * MINUTE) == 2
    note, settled = _thread(stack, released_request.request_id)
    assert "is suspended" in settled.text and "no callback arrived" in settled.text
    assert _state(stack, released_request.request_id) == "completed"
    (note,) = _thread(stack, stuck_request.request_id)
    assert note.updated and "(question 2)" in note.text

    assert _check(stack, t0 + 36 * MINUTE) == 1
    assert _check(stack, t0 + 25 * 60 * MINUTE) == 1
    note, final = _thread(stack, stuck_request.request_id)
    assert "(question 3)" in note.text
    assert final.text.startswith(":grey_question: No result for demo-pending") and " after 1 d " in final.text
    assert "looked up 4 times" in str(final.blocks)
    assert [b.text for b in final.buttons()] == ["Retry failed"]
    assert request_outcomes.devices_with_status(_db(stack), stuck_request.request_id, ["no-result"]) == [
        stuck.key
    ]
    assert _state(stack, stuck_request.request_id) == "checked"
    assert _check(stack, t0 + 26 * 60 * MINUTE) == 0  # reported once
