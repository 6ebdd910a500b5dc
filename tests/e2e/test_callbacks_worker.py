"""The inbox worker over loopback: callbacks in, request outcomes, directory, audit and Slack out.

Requests are seeded the way ``commands.execute`` records them once ThingSpace accepted them (the
command path itself, with the sandbox, is exercised in test_callbacks_stack.py).
"""

from __future__ import annotations

import time

from bot.console.records import Message
from bot.inbox.unanswered import check_unanswered
from bot.render import times
from storage import directory, inbox, requests
from storage.audit.log import AuditLog
from tests.helpers.callbacks import (
    CallbackBot,
    callback,
    callback_bot_fixture,  # noqa: F401
    iccids,
    seed_request,
)

TRACKER = {
    "ids": {"iccid": "89148000000800139708", "mdn": "5551230001", "imei": "990013907835573"},
    "state": "active",
    "label": "tracker-0001",
    "groups": ["trackers"],
}
KEY = "iccid:89148000000800139708"


def _texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


def _buttons(message: Message) -> list[tuple[str, str, str | None]]:
    """(label, action id without its serial suffix, value) of each button."""
    return [(b.text, ":".join(b.action_id.split(":")[:2]), b.value) for b in message.buttons()]


def test_a_single_suspend_lands_in_its_thread(cb_bot: CallbackBot) -> None:
    """One device: a reply in the request's thread says it is suspended until the auto-resume
    date; the directory, the request and the audit log follow."""
    cb_bot.add_devices([TRACKER])
    request_id = seed_request(cb_bot.runtime, verb="suspend", devices=[KEY], reason="stolen")
    assert cb_bot.post(callback(request_id, KEY))[0] == 200
    cb_bot.settle()
    replies = cb_bot.thread(request_id)
    assert len(replies) == 1
    assert "tracker-0001" in replies[0].text
    assert "is suspended until Sun 15 Mar 2026" in times.fallback(replies[0].text)
    entry = directory.lookup(cb_bot.db, "iccid", "89148000000800139708")
    assert entry is not None and entry.state == "suspend"
    assert entry.resume_date is not None and entry.resume_date.startswith("2026-03-15")
    tracked = requests.get_request(cb_bot.db, request_id)
    assert tracked is not None and tracked.state == "completed"
    audit_rows = AuditLog(cb_bot.db).query(target=KEY, verb="callback")
    assert [(r.actor, r.outcome, r.request_id) for r in audit_rows] == [("thingspace", "ok", request_id)]


def test_three_retries_of_one_callback_have_one_effect(cb_bot: CallbackBot) -> None:
    """The same callback posted with callbackCount 1, 2 and 3 gives one reply and one audit row."""
    cb_bot.add_devices([TRACKER])
    request_id = seed_request(cb_bot.runtime, verb="suspend", devices=[KEY])
    for count in (1, 2, 3):
        assert cb_bot.post(callback(request_id, KEY, count=count))[0] == 200
        cb_bot.settle()
    assert len(cb_bot.thread(request_id)) == 1
    assert len(AuditLog(cb_bot.db).query(target=KEY, verb="callback")) == 1
    assert len(cb_bot.standin.calls("chat.postMessage")) == 2  # the root and the one reply


def test_a_failure_says_why_and_offers_a_retry(cb_bot: CallbackBot) -> None:
    """A failure callback for one device replies with ThingSpace's reason and a Retry failed button."""
    cb_bot.add_devices([TRACKER])
    request_id = seed_request(cb_bot.runtime, verb="resume", devices=[KEY])
    fault = ("UnifiedWebService.REQUEST_FAILED.DeviceNotSuspended", "Device is not suspended")
    assert cb_bot.post(callback(request_id, KEY, outcome="active", fault=fault))[0] == 200
    cb_bot.settle()
    (reply,) = cb_bot.thread(request_id)
    assert "Resume of tracker-0001" in reply.text
    assert "Device is not suspended (REQUEST_FAILED.DeviceNotSuspended)" in reply.text
    assert _buttons(reply) == [("Retry failed", "ts:retry", request_id)]
    entry = directory.lookup(cb_bot.db, "iccid", "89148000000800139708")
    assert entry is not None and entry.state == "active"


def test_many_devices_update_one_message_and_end_with_a_summary(cb_bot: CallbackBot) -> None:
    """30 devices: the root message shows progress, then the failures by reason and Retry failed;
    no reply per device is posted."""
    devices = iccids(30)
    request_id = seed_request(cb_bot.runtime, verb="suspend", devices=devices, channel="C0A")
    cb_bot.settle()
    for device in devices[:10]:
        cb_bot.post(callback(request_id, device))
    cb_bot.settle()
    assert "▓▓▓░░░░░░░ 33% · 10 of 30" in cb_bot.root(request_id, "C0A").text
    not_found = ("UnifiedWebService.REQUEST_FAILED.DeviceNotFound", "Device not found")
    limit = ("UnifiedWebService.REQUEST_FAILED.ProvisioningLimit", "Line used its 5 actions today")
    for i, device in enumerate(devices[10:]):
        fault = not_found if i < 2 else limit if i == 2 else None
        cb_bot.post(callback(request_id, device, fault=fault))
    cb_bot.settle()
    root = cb_bot.root(request_id, "C0A")
    assert root.updated
    assert "done: 27 of 30 suspended, 3 failed" in root.text
    summary = "\n".join(str(b.get("text", {}).get("text", "")) for b in root.blocks)
    assert "▓▓▓▓▓▓▓▓▓▓ 100% · 30 of 30 · 3 failed" in str(root.blocks)
    assert "Device not found (REQUEST_FAILED.DeviceNotFound) — 2" in summary
    assert "Line used its 5 actions today (REQUEST_FAILED.ProvisioningLimit) — 1" in summary
    assert _buttons(root) == [("Retry failed", "ts:retry", request_id)]
    # the one new message: the settle message in the thread, naming the requester
    (settled,) = cb_bot.thread(request_id)
    assert "27 of 30 suspended" in settled.text and "<@U012ADMIN>" in settled.text
    assert len(cb_bot.standin.calls("chat.postMessage")) == 2
    tracked = requests.get_request(cb_bot.db, request_id)
    assert tracked is not None and tracked.state == "completed"


def test_progress_before_the_root_is_sent_keeps_the_headline(cb_bot: CallbackBot) -> None:
    """Results arriving while the root message is still unsent (Slack rate-limited it) are folded
    into it, and the final text is the headline and the summary once, not an older progress line."""
    cb_bot.standin.inject("chat.postMessage", status=429, retry_after=1, channel="C0B")
    devices = iccids(5)
    request_id = seed_request(cb_bot.runtime, verb="resume", devices=devices, channel="C0B")
    cb_bot.standin.wait_for_call(lambda c: c.method == "chat.postMessage" and c.status == 429)
    for device in devices[:2]:
        cb_bot.post(callback(request_id, device, outcome="active"))
    cb_bot.settle()
    for device in devices[2:]:
        cb_bot.post(callback(request_id, device, outcome="active"))
    cb_bot.settle()
    root = cb_bot.root(request_id, "C0B")
    assert "40% · 2 of 5 · waiting for iccid:…0002, iccid:…0003, iccid:…0004" in root.versions[0].text
    assert (
        root.text
        == ":arrows_counterclockwise: <@U012ADMIN> resumed 5 device(s) — done: 5 of 5 resumed, 0 failed"
    )


def test_unknown_request_ids_are_kept_and_not_acted_on(cb_bot: CallbackBot) -> None:
    """A result for a request the bot never issued is stored as unmatched; nothing is posted."""
    assert cb_bot.post(callback("not-ours", KEY))[0] == 200
    cb_bot.settle()
    assert inbox.count_by_state(cb_bot.db) == {"unmatched": 1}
    assert cb_bot.standin.calls("chat.postMessage") == []


def test_changes_outside_the_bot_become_ops_notices(cb_bot: CallbackBot) -> None:
    """ExternalProvisioningChanges and ResumeTrackingNotification post notices in the ops channel
    and update the directory."""
    cb_bot.add_devices([TRACKER])
    assert cb_bot.post(callback("ext-1", KEY, outcome="external"))[0] == 200
    assert cb_bot.post(callback("rtn-1", KEY, outcome="resume-warning"))[0] == 200
    cb_bot.settle()
    texts = _texts(cb_bot.standin.messages("C0OPS"))
    assert any("Someone changed a line outside the bot: tracker-0001" in t and "Suspend" in t for t in texts)
    assert any("tracker-0001" in t and "resumes in 7 days" in t and "Sun 15 Mar 2026" in t for t in texts)
    entry = directory.lookup(cb_bot.db, "iccid", "89148000000800139708")
    assert entry is not None and entry.state == "suspend"
    assert entry.resume_date is not None and entry.resume_date.startswith("2026-03-15")
    assert inbox.count_by_state(cb_bot.db) == {"processed": 2}


def test_out_of_order_sms_notices_do_not_undo_delivery(cb_bot: CallbackBot) -> None:
    """'Delivered' arriving before 'sent' stays delivered; the late 'sent' posts nothing."""
    cb_bot.add_devices([TRACKER])
    request_id = seed_request(cb_bot.runtime, verb="sms", devices=[KEY], detail={"text": "REBOOT"})
    cb_bot.post(callback(request_id, KEY, outcome="sms-delivered"))
    cb_bot.settle()
    cb_bot.post(callback(request_id, KEY, outcome="sms-sent"))
    cb_bot.settle()
    replies = _texts(cb_bot.thread(request_id))
    assert len(replies) == 1 and "SMS delivered to tracker-0001" in replies[0]
    assert requests.device_outcomes(cb_bot.db, request_id)[0][1] == "delivered"


def test_a_device_named_by_another_id_is_matched_through_the_directory(cb_bot: CallbackBot) -> None:
    """A callback naming the line by its MDN settles the request's ICCID entry."""
    cb_bot.add_devices([TRACKER])
    request_id = seed_request(cb_bot.runtime, verb="cancel-location", devices=[KEY])
    cb_bot.post(callback(request_id, "mdn:5551230001", outcome="cancel"))
    cb_bot.settle()
    assert requests.device_outcomes(cb_bot.db, request_id)[0][:2] == (KEY, "ok")
    (reply,) = cb_bot.thread(request_id)
    assert "Cancel location done for tracker-0001" in reply.text


def test_requests_without_callbacks_are_reported_after_the_wait(cb_bot: CallbackBot) -> None:
    """ThingSpace cannot be asked (no answer): after no_result_after the thread says there is no
    result yet and that the bot keeps asking; at the end of the 24 h window one device gets 'no
    result', many get a summary listing them; a late callback still lands and replaces it."""
    old = time.time() - 31 * 60
    single = seed_request(
        cb_bot.runtime, verb="sms", devices=[KEY], created_at=old, detail={"text": "hi"}, channel="C0B"
    )
    devices = iccids(3)
    bulk = seed_request(cb_bot.runtime, verb="sms", devices=devices, created_at=old, channel="C0C")
    fresh = seed_request(cb_bot.runtime, verb="sms", devices=iccids(2, start=10), channel="C0D")
    cb_bot.post(callback(bulk, devices[0], outcome="sms-delivered"))
    cb_bot.settle()
    assert check_unanswered(cb_bot.runtime.deps) == 2
    assert check_unanswered(cb_bot.runtime.deps) == 0  # asked again only after the backoff
    cb_bot.settle()
    (note,) = cb_bot.thread(single)
    assert "No result yet after 31 min" in note.text and "could not be asked" in note.text
    assert "I keep asking" in note.text and "for up to 24 h" in note.text
    later = old + 24 * 3600 + 60
    assert check_unanswered(cb_bot.runtime.deps, now=later) == 3  # the fresh one is asked: not over yet
    assert check_unanswered(cb_bot.runtime.deps, now=later) == 0  # each request is reported once
    cb_bot.settle()
    note, reply = cb_bot.thread(single)
    assert "No result for iccid:…9708 after 1 d" in reply.text
    assert "looked up 2 times" in str(reply.blocks)
    root = cb_bot.root(bulk, "C0C")
    assert "done: 1 of 3 delivered, 2 failed" in root.text
    assert "no result after" in str(root.blocks)
    assert [b.text for b in root.buttons()] == ["Retry failed"]
    tracked = requests.get_request(cb_bot.db, fresh)
    assert tracked is not None and tracked.state == "accepted"  # its 24 h are not over
    cb_bot.post(callback(bulk, devices[1], outcome="sms-delivered"))
    cb_bot.settle()
    assert "done: 2 of 3 delivered, 1 failed" in cb_bot.root(bulk, "C0C").text


def test_a_rate_limited_results_message_honours_retry_after(cb_bot: CallbackBot) -> None:
    """Slack answering 429 with Retry-After: 2 to the results reply delays that reply by at least
    2 s; it is then posted once."""
    cb_bot.add_devices([TRACKER])
    request_id = seed_request(cb_bot.runtime, verb="suspend", devices=[KEY], channel="C0D")
    cb_bot.settle()
    cb_bot.standin.inject("chat.postMessage", status=429, retry_after=2, channel="C0D")
    cb_bot.post(callback(request_id, KEY))
    cb_bot.settle(timeout=30)
    calls = [c for c in cb_bot.standin.calls("chat.postMessage") if c.channel == "C0D"]
    limited = [c for c in calls if c.status == 429]
    sent = [c for c in calls if c.ok and c.params.get("thread_ts")]
    assert len(limited) == 1 and limited[0].headers.get("Retry-After") == "2"
    assert len(sent) == 1
    assert sent[0].at - limited[0].at >= 2.0
    assert "is suspended" in cb_bot.thread(request_id)[0].text
