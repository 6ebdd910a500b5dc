"""Two-way SMS and NIDD through the whole stack: the sandbox over loopback HTTP, the Slack
stand-in, the real bot and its SQLite database.

* an SMS to ``demo-healthy`` (which answers "OK " + the text a few seconds later) is followed in
  its thread by the device's answer, stored and audited;
* a device's SMS with no SMS from the bot in ``[sms] reply_window`` goes to the ops channel;
* ``nidd demo-nbiot "ping"`` shows Queued then Delivered in its thread, and the device's NIDD
  answer follows there; a line that is not NB-IoT is refused before anything is sent; bad data
  (empty, invalid base64, too long) is refused with what is accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlite_utils import Database

from bot.console.records import Message
from bot.local_stack import LocalStack
from bot.sandbox.messaging import device_sends_sms
from storage import device_messages, directory, outbox

_OPS = "C0OPS"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("messaging"), devices=60, scheduler=False)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _key(stack: LocalStack, label: str) -> str:
    found, _ = directory.find(_db(stack), label, limit=1)
    assert found, f"no seeded device labelled {label}"
    return found[0].key


def _ack(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json().get("text", ""))


def _wait(what: str, probe: Callable[[], list[str] | None], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    last: list[str] | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not seen within {timeout} s (last: {last})")


def _request_thread(stack: LocalStack, device: str, verb: str) -> tuple[str, Callable[[], list[Message]]]:
    """The newest *verb* request to *device* and a function reading its thread's replies."""
    db = _db(stack)

    def newest() -> list[str] | None:
        row = db.execute(
            """SELECT r.request_id FROM ts_request_devices d JOIN ts_requests r USING (request_id)
               WHERE d.device = ? AND r.verb = ? ORDER BY r.created_at DESC LIMIT 1""",
            [device, verb],
        ).fetchone()
        return [row[0]] if row else None

    [request_id] = _wait(f"a {verb} request for {device}", newest)

    def replies() -> list[Message]:
        ref = outbox.message_ref(db, f"req:{request_id}")
        return stack.standin.thread(*ref)[1:] if ref else []

    return request_id, replies


def test_a_device_answer_to_an_sms_lands_in_the_sms_thread(stack: LocalStack) -> None:
    device = _key(stack, "demo-healthy")
    ack = _ack(stack.command('sms demo-healthy "STATUS"'))
    assert "Sending the SMS to demo-healthy" in ack
    request_id, replies = _request_thread(stack, device, "sms")

    def answered() -> list[str] | None:
        texts = [m.text for m in replies()]
        return texts if any("OK STATUS" in t for t in texts) else None

    texts = _wait("the device's answer in the SMS thread", answered)
    answer = next(t for t in texts if "OK STATUS" in t)
    assert "demo-healthy" in answer and "answered by SMS" in answer
    stored = device_messages.received(_db(stack), device, since=0)
    assert [m.body for m in stored] == ["OK STATUS"]
    assert stored[0].thread_request == request_id
    audit = (
        _db(stack)
        .execute(
            "SELECT actor, detail FROM audit_log WHERE verb = 'callback' AND detail LIKE '%sms-received%'"
        )
        .fetchall()
    )
    assert audit and audit[-1][0] == "thingspace"


def test_an_sms_from_a_device_the_bot_did_not_text_goes_to_the_ops_channel(stack: LocalStack) -> None:
    before = len(stack.standin.messages(_OPS))
    state = stack.sandbox.state
    with state.lock:  # the sandbox's own path for a device-sent SMS (a callback to the bot)
        device_sends_sms(state, state.resolve_text("demo-asleep"), "TAMPER ALARM")

    def posted() -> list[str] | None:
        texts = [m.text for m in stack.standin.messages(_OPS)[before:] if "TAMPER ALARM" in m.text]
        return texts or None

    [text] = _wait("the device's SMS in the ops channel", posted)
    assert "demo-asleep" in text and "sent SMS" in text
    message = next(m for m in stack.standin.messages(_OPS) if "TAMPER ALARM" in m.text)
    assert message.thread_ts is None or message.thread_ts == message.ts


def test_nidd_to_an_nb_iot_line_is_queued_then_delivered_and_answered(stack: LocalStack) -> None:
    device = _key(stack, "demo-nbiot")
    ack = _ack(stack.command('nidd demo-nbiot "ping" --ttl 10m'))
    assert "Sending NIDD data to demo-nbiot" in ack
    _request_id, replies = _request_thread(stack, device, "nidd")

    def settled() -> list[str] | None:
        texts = [m.text for m in replies()]
        return texts if any("OK ping" in t for t in texts) else None

    texts = _wait("Queued, Delivered and the answer in the NIDD thread", settled)
    queued = next(i for i, t in enumerate(texts) if "queued" in t)
    delivered = next(i for i, t in enumerate(texts) if "NIDD data delivered to demo-nbiot" in t)
    answer = next(i for i, t in enumerate(texts) if "OK ping" in t)
    assert queued < delivered < answer, texts
    assert "answered by NIDD data" in texts[answer]
    assert [m.body for m in device_messages.received(_db(stack), device, since=0)] == ["OK ping"]


def test_nidd_refuses_a_line_that_is_not_nb_iot_and_sends_nothing(stack: LocalStack) -> None:
    before = stack.sandbox.requests_received("/m2m/v1/devices/nidd/message", "POST")
    ack = _ack(stack.command('nidd demo-usage-spike "ping"'))
    assert "Nothing to do" in ack
    assert "not an NB-IoT line" in ack and "M2M-LTEM-1GB" in ack
    assert stack.sandbox.requests_received("/m2m/v1/devices/nidd/message", "POST") == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nidd demo-nbiot", 'The NIDD data is missing: give it after the devices as "TEXT" in quotes'),
        ("nidd demo-nbiot --ttl 1h", "--base64 DATA or --hex DATA"),
        ('nidd demo-nbiot ""', "The NIDD message is empty"),
        ("nidd demo-nbiot --base64 ''", "The NIDD message is empty"),
        ("nidd demo-nbiot --base64 not*base64", "is not valid base64"),
        ("nidd demo-nbiot --hex 0g", "pairs of hexadecimal digits"),
        ("nidd demo-nbiot --hex " + "00" * 1359, "1,359 bytes; ThingSpace takes at most 1,358"),
        ('nidd demo-nbiot "x" --ttl 1s', "between 2 seconds and 30 days"),
        ('nidd demo-nbiot "x" --hex 00', "Give the data once"),
    ],
)
def test_bad_nidd_data_is_refused_with_what_is_accepted(stack: LocalStack, text: str, expected: str) -> None:
    ack = _ack(stack.command(text))
    assert expected in ack, ack
    assert "not a device id" not in ack, ack


def test_sms_history_lists_both_ways_and_thingspace_events_follow(stack: LocalStack) -> None:
    """After the SMS test above: the bot's STATUS and the device's answer, newest first, then
    ThingSpace's SMS events in the post's thread."""
    before = len(stack.standin.messages(_OPS))
    ack = _ack(stack.command("sms-history demo-healthy --since 1d"))
    assert "Listing the messages to and from demo-healthy" in ack

    def posted() -> list[str] | None:
        found = [m for m in stack.standin.messages(_OPS)[before:] if m.text.startswith("SMS to and from")]
        return [found[0].ts] if found else None

    [ts] = _wait("the sms-history post", posted)
    post = stack.standin.message(_OPS, ts)
    listing = "\n".join(str(b) for b in post.blocks)
    assert listing.index("OK STATUS") < listing.index("“STATUS”"), listing
    assert "delivered" in listing

    def events() -> list[str] | None:
        texts = [m.text for m in stack.standin.thread(_OPS, ts)[1:]]
        return texts or None

    [reply] = _wait("ThingSpace's SMS events in the thread", events)
    assert "SMS event history for demo-healthy" in reply
    assert "network → device" in reply and "device → network" in reply


def test_sms_history_says_so_when_thingspace_cannot_answer(stack: LocalStack) -> None:
    fault = {"path": "/m2m/v1/devices/sms/history/actions/list", "count": 1, "status": 400}
    assert httpx.post(stack.sandbox_server.url + "/_sandbox/faults", json=fault).status_code == 200
    before = len(stack.standin.messages(_OPS))
    stack.command("sms-history demo-nbiot")

    def posted() -> list[str] | None:
        found = [m for m in stack.standin.messages(_OPS)[before:] if m.text.startswith("SMS to and from")]
        return ["\n".join(str(b) for b in found[0].blocks)] if found else None

    [shown] = _wait("the sms-history post", posted)
    assert "SMS event history cannot be had" in shown


def test_history_of_a_line_says_when_thingspace_cannot_give_its_provisioning_history(
    stack: LocalStack,
) -> None:
    """`history TARGET` answers with the audit rows at once and redraws the answer once
    ThingSpace's provisioning history was asked; here the sandbox does not have it (900906)."""
    fault = {"path": "/m2m/v1/devices/history/actions/list", "count": 5, "status": 400}
    assert httpx.post(stack.sandbox_server.url + "/_sandbox/faults", json=fault).status_code == 200
    response = stack.command("history demo-healthy")
    body = response.json()
    assert "Reading ThingSpace's provisioning history" in str(body.get("blocks"))

    def redrawn() -> list[str] | None:
        found = [
            str(m.blocks)
            for m in stack.standin.messages(_OPS, include_ephemeral=True)
            if "provisioning history could not be read" in str(m.blocks)
        ]
        return found or None

    [shown] = _wait("the history redrawn with the note", redrawn)
    assert "STATUS" in shown or "sms" in shown
