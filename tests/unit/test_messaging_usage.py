"""The pure parts of two-way SMS, NIDD and usage: NIDD data and ttl from the command text, which
plans take NIDD, NIDD and SMS-history callbacks parsed, the usage figures, the chart, and a
device's message stored once and posted where the conversation is (real SQLite)."""

from __future__ import annotations

import base64
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.config import Settings
from bot.inbox.device_messages import DeviceMessages
from bot.render.chart import ChartSpec, render_usage_chart
from bot.render.messaging import payload_text
from bot.thingspace import shapes
from bot.thingspace.events import CallbackKind, parse_callback
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import UsageRecord
from commands import nidd
from commands.grammar import UsageError, parse
from commands.registry import VERBS
from commands.usage import summarise
from storage import device_messages, outbox, requests
from storage.schema import open_database

GIVEN = {"id": "990013907835573", "kind": "IMEI"}


def _options(text: str) -> dict[str, object]:
    return nidd.options_for(parse(text, VERBS))


def test_nidd_data_in_each_form_and_its_limits() -> None:
    assert _options('nidd imei:990013907835573 "ping"')["data"] == base64.b64encode(b"ping").decode()
    assert _options("nidd imei:990013907835573 --hex 0A0b")["bytes"] == 2
    assert _options("nidd imei:990013907835573 --base64 SGVsbG8=")["text"] == "Hello"
    assert _options("nidd imei:990013907835573 --hex " + "00" * 1358)["bytes"] == 1358
    assert _options('nidd imei:990013907835573 "x" --ttl 30d')["ttl"] == 30 * 86400
    for text, message in (
        ("nidd imei:990013907835573 --hex " + "00" * 1359, "1,359 bytes"),
        ('nidd imei:990013907835573 ""', "empty"),
        ("nidd imei:990013907835573 --base64 SGVsbG8", "not valid base64"),
        ('nidd imei:990013907835573 "x" --ttl 1s', "between 2 seconds and 30 days"),
    ):
        with pytest.raises(UsageError, match=message):
            _options(text)


def test_plans_that_take_nidd() -> None:
    assert nidd.is_nidd_plan("M2M-NBIOT-10MB") and nidd.is_nidd_plan("NB-IoT meter 10 MB")
    assert not nidd.is_nidd_plan("M2M-LTEM-1GB") and not nidd.is_nidd_plan("")
    assert nidd.is_nidd_plan("meters-basic", ["METERS-BASIC"]) and not nidd.is_nidd_plan(
        "M2M-NBIOT-10MB", ["x"]
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("Queued", CallbackKind.NIDD_QUEUED),
        ("Delivered", CallbackKind.NIDD_DELIVERED),
        ("DeliveryFailed", CallbackKind.NIDD_FAILED),
    ],
)
def test_nidd_delivery_callbacks_in_the_crates_shape(status: str, kind: CallbackKind) -> None:
    body = {
        "requestId": "r-1",
        "deviceIds": [GIVEN],
        shapes.NIDD_RESPONSE: {
            shapes.NIDD_MT: {
                "accountName": "0000123456-00001",
                "deviceIds": [GIVEN],
                "reason": "Timeout, could not deliver data",
            }
        },
        "status": status,
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
    }
    event = parse_callback(body)
    assert (event.service, event.kind) == (shapes.NIDD_SERVICE, kind)
    assert (
        event.outcome_key
        != parse_callback({**body, "status": "Queued" if status != "Queued" else "Delivered"}).outcome_key
    )


def test_device_originated_nidd_is_decoded_and_shown_as_text_or_hex() -> None:
    body = {
        "requestId": "r-2",
        "deviceIds": [GIVEN],
        shapes.NIDD_RESPONSE: {
            shapes.NIDD_MO: {"accountName": "0000123456-00001", "message": "AAEC/w==", "deviceIds": [GIVEN]}
        },
    }
    event = parse_callback(body)
    assert event.kind is CallbackKind.NIDD_RECEIVED and event.nidd_data == b"\x00\x01\x02\xff"
    assert payload_text(event.nidd_data) == ("000102ff", False)
    assert payload_text(b"OK ping") == ("OK ping", True)


def test_sms_event_history_callback() -> None:
    events = [
        {"timestamp": "2026-05-01T10:00:00Z", "smsType": "MtSms"},
        {"timestamp": "2026-05-01T10:00:04Z", "smsType": "MoSms"},
    ]
    body = {
        "requestId": "r-3",
        "deviceIds": [GIVEN],
        "deviceResponse": {shapes.SMS_EVENT_HISTORY: {shapes.SMS_EVENTS: events}},
        "status": "Success",
    }
    event = parse_callback(body)
    assert (event.service, event.kind) == (shapes.DEVICE_SERVICE, CallbackKind.SMS_HISTORY)
    assert [e["smsType"] for e in event.sms_events] == ["MtSms", "MoSms"]


def _record(day: date, used: int, intl: int | None = None) -> UsageRecord:
    attrs = (
        {}
        if intl is None
        else {shapes.USAGE_DOMESTIC_BYTES: str(used - intl), shapes.USAGE_INTERNATIONAL_BYTES: str(intl)}
    )
    return UsageRecord(datetime(day.year, day.month, day.day, tzinfo=UTC), used, 1, extended_attributes=attrs)


def test_usage_figures_standouts_split_and_top() -> None:
    first = date(2026, 5, 1)
    days = [first + timedelta(days=i) for i in range(10)]
    records = [_record(d, 1_000_000, intl=500_000 if i >= 8 else 0) for i, d in enumerate(days)]
    records[5] = _record(days[5], 40_000_000, intl=0)
    summary = summarise(records, first=first, last=days[-1], allowance=1 << 30, per_line={"a": 5, "b": 9})
    assert summary.total == 9 * 1_000_000 + 40_000_000 and summary.sms == 10
    assert [d.day for d in summary.standouts] == [days[5]]
    assert summary.international == 1_000_000
    assert summary.international_share == pytest.approx(1_000_000 / summary.total)
    assert summary.top == [("b", 9), ("a", 5)]
    unsplit = summarise([_record(d, 10) for d in days], first=first, last=days[-1])
    assert unsplit.international_share is None and not unsplit.standouts


def test_the_chart_is_a_png_drawn_in_under_300_ms() -> None:
    days = [date(2026, 5, 1) + timedelta(days=i) for i in range(30)]
    spec = ChartSpec(
        "Usage", days, [i * 100_000 for i in range(30)], [5_000] * 30, 30_000_000 / 30, (1e5, 2e6), days[3:4]
    )
    render_usage_chart(spec)  # the first one imports matplotlib
    started = time.perf_counter()
    png = render_usage_chart(spec)
    elapsed = time.perf_counter() - started
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    assert elapsed < 0.3, f"{elapsed * 1000:.0f} ms"


def test_a_device_message_goes_in_the_last_sms_thread_once(tmp_path: Path) -> None:
    db = open_database(tmp_path / "t.db")
    now = time.time()
    settings = Settings(ops_channel="C0OPS")
    outbox.enqueue_post(db, key="req:r-9", channel="C0CHAN", text="sent")
    with db.conn:
        requests.add_request(
            db,
            request_id="r-9",
            verb="sms",
            actor="U1",
            channel="C0CHAN",
            devices=["imei:990013907835573"],
            thread_key="req:r-9",
            detail={"text": "STATUS"},
            now=now - 60,
        )
    handler = DeviceMessages(settings)
    ids = (DeviceId.from_wire(GIVEN),)
    at = datetime.fromtimestamp(now, UTC)
    with db.conn:
        assert handler.deliver(
            db, device_ids=ids, source="sms", body="OK STATUS", is_text=True, at=at, now=now
        )
        assert not handler.deliver(
            db, device_ids=ids, source="sms", body="OK STATUS", is_text=True, at=at, now=now
        )
    [stored] = device_messages.received(db, "imei:990013907835573", since=0)
    assert stored.thread_request == "r-9" and stored.channel == "C0CHAN"
    row = db.execute("SELECT channel, thread_key FROM outbox WHERE key LIKE 'mo:%'").fetchall()
    assert row == [("C0CHAN", "req:r-9")]
    later = now + 25 * 3600  # past the 24 h reply window: the ops channel
    with db.conn:
        handler.deliver(db, device_ids=ids, source="sms", body="LATE", is_text=True, at=None, now=later)
    assert db.execute("SELECT channel, thread_key FROM outbox WHERE key LIKE 'mo:%' ORDER BY id").fetchall()[
        -1
    ] == ("C0OPS", None)


def test_provisioning_events_made_outside_the_bot_become_timeline_rows() -> None:
    from bot.thingspace.models import ProvisioningEvent
    from commands.provisioning import _line, _outside

    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    portal = ProvisioningEvent(at, "Suspend", "Success", event_by="jdoe@fleetops.example")
    own = ProvisioningEvent(at, "Restore", "Success", event_by="SANDBOX-USER")
    assert _outside(portal, "sandbox-user") and not _outside(own, "sandbox-user")
    assert _outside(ProvisioningEvent(at, "Resume", "Success"), "sandbox-user")  # ThingSpace itself
    line = _line(portal, at)
    assert "*Suspend* by jdoe@fleetops.example → Success" in line and "from ThingSpace" in line
