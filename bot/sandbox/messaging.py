"""NIDD, SMS event history and devices that answer: the messaging side of the sandbox.

* ``POST /devices/nidd/message`` (crate ``thingspace-sdk-rust`` ``NiddMessage``): checks the body
  as ThingSpace documents it (``maximumDeliveryTime`` 2 s to 30 days, ``message`` base64 of at most
  1,358 bytes), answers ``{requestId}``, then per device a NiddService callback
  ``{niddResponse: {niddMTDeliveryResponse: {...}}, status}``: ``Queued`` at once, ``Delivered``
  when the device is reachable (now, or at its next wake), ``DeliveryFailed`` when it does not wake
  within ``maximumDeliveryTime`` or is not an NB-IoT line.
* ``POST /devices/sms/history/actions/list`` (SDK ``SMSEventHistoryRequest``): ``{requestId}``, then
  a DeviceService callback ``deviceResponse.smsEventHistory.smsEvents`` (proposed shape, see
  :mod:`bot.thingspace.shapes`) from the SMS the sandbox delivered to and received from the line.
* A device with a reply set (``demo-healthy`` for SMS, ``demo-nbiot`` for NIDD; any device through
  ``POST /_sandbox/devices/{ref}/replies``) answers what it received with the prefix + the text a
  few seconds later: an EnhancedConnectivityService MO SMS callback, or a NiddService
  ``niddMONotificationResponse``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bot.sandbox.activity import next_change, status_at
from bot.sandbox.callback_sender import Delivery
from bot.sandbox.clock import iso
from bot.sandbox.conditions import epoch
from bot.sandbox.errors import DEVICE_NOT_FOUND, field_invalid, field_null, thingspace_error
from bot.sandbox.fleet import Device
from bot.sandbox.ids import check_device_id
from bot.thingspace.shapes import (
    DEVICE_SERVICE,
    ENHANCED_CONNECTIVITY_SERVICE,
    MO_SMS,
    NIDD_MO,
    NIDD_MT,
    NIDD_RESPONSE,
    NIDD_SERVICE,
    SMS_EVENT_HISTORY,
    SMS_EVENTS,
)

if TYPE_CHECKING:
    from bot.sandbox.state import SandboxState

__all__ = [
    "device_sends_nidd",
    "device_sends_sms",
    "nidd_message",
    "sms_delivered",
    "sms_event_history",
]

NIDD_MAX_BYTES: Final = 1358
NIDD_DELIVERY_S: Final = (2, 30 * 86400)
#: ThingSpace keeps three months of SMS events and sends at most 500 per request
SMS_HISTORY_KEPT: Final = timedelta(days=90)
SMS_HISTORY_MAX: Final = 500
NIDD_TOO_LONG: Final = "INPUT_INVALID.Message.TooLong"
NIDD_RAT: Final = "NB-IoT"


def _record(device: Device, at: datetime, sms_type: str) -> None:
    device.sms_log.append((epoch(at), sms_type))
    del device.sms_log[:-SMS_HISTORY_MAX]


# -- SMS -------------------------------------------------------------------------------------------
def sms_delivered(state: SandboxState, device: Device, text: str, at: datetime) -> None:
    """An SMS reached *device*: log it; a device with a reply set answers after its delay."""
    _record(device, at, "MtSms")
    if device.sms_reply is None:
        return
    prefix, delay = device.sms_reply
    due = at + timedelta(seconds=delay)
    state.timers.at(due, lambda: device_sends_sms(state, device, prefix + text, due))


def device_sends_sms(state: SandboxState, device: Device, text: str, at: datetime | None = None) -> None:
    """*device* sends an SMS: an EnhancedConnectivityService callback with its text, or, with no
    listener registered, a message queued for ``GET /sms/{account}/history`` (``bot.sandbox.mo_sms``)."""
    moment = at or state.clock()
    _record(device, moment, "MoSms")
    if state.listener(ENHANCED_CONNECTIVITY_SERVICE) is None:
        ids = [{"id": device.iccid, "kind": "iccid"}, {"id": device.mdn, "kind": "mdn"}]
        state.mo_queue.append({"deviceIds": ids, "message": text, "timestamp": iso(moment)})
        return
    payload = {
        "requestId": str(uuid.uuid4()),
        "deviceIds": [{"id": device.mdn, "kind": "mdn"}],
        MO_SMS: {"message": text, "timestamp": iso(moment)},
    }
    state.emit([Delivery(ENHANCED_CONNECTIVITY_SERVICE, payload)])


def sms_event_history(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /devices/sms/history/actions/list``."""
    from bot.sandbox.views import parse_time  # views imports this module's neighbours; keep it lazy

    with state.lock:
        raw = body.get("deviceId")
        if raw is None:
            raise field_null("deviceId")
        kind, value = check_device_id(raw, field="deviceId")
        now = state.clock()
        earliest = parse_time(body.get("earliest"), "earliest", required=False) or now - SMS_HISTORY_KEPT
        latest = parse_time(body.get("latest"), "latest", required=False) or now
        if earliest > latest:
            raise field_invalid("earliest", "earliest must not be after latest.")
        device = state.find(kind, value)
        request = state.new_request("sms-history", [{"id": raw["id"], "kind": raw["kind"]}])
        given = {"id": raw["id"], "kind": raw["kind"]}
        if device is None:
            request.subs[0].status = "Failed"
            state.emit([state.not_found(DEVICE_SERVICE, request.request_id, given)])
            return {"requestId": request.request_id}
        start = epoch(max(earliest, now - SMS_HISTORY_KEPT))
        end = epoch(latest)
        events = [
            {"timestamp": iso(datetime.fromtimestamp(t, now.tzinfo)), "smsType": sms_type}
            for t, sms_type in device.sms_log
            if start <= t <= end
        ][:SMS_HISTORY_MAX]
        request.subs[0].status = "Success"
        state.emit(
            [
                state.success(
                    DEVICE_SERVICE, request.request_id, given, SMS_EVENT_HISTORY, {SMS_EVENTS: events}
                )
            ]
        )
        return {"requestId": request.request_id}


# -- NIDD ------------------------------------------------------------------------------------------
def _nidd_payload(
    state: SandboxState, rid: str, given: dict[str, str], status: str, **extra: Any
) -> Delivery:
    response = {"accountName": state.config.account, "deviceIds": [given], **extra}
    payload = {
        "requestId": rid,
        "deviceIds": [given],
        NIDD_RESPONSE: {NIDD_MT: response},
        "status": status,
    }
    return Delivery(NIDD_SERVICE, payload)


def nidd_message(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /devices/nidd/message``."""
    with state.lock:
        state.check_account(body.get("accountName"), required=True)
        seconds = body.get("maximumDeliveryTime")
        if seconds is None:
            raise field_null("maximumDeliveryTime")
        low, high = NIDD_DELIVERY_S
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not low <= seconds <= high:
            raise field_invalid(
                "maximumDeliveryTime", f"maximumDeliveryTime must be whole seconds from {low} to {high}."
            )
        message = body.get("message")
        if message is None or message == "":
            raise field_null("message")
        if not isinstance(message, str):
            raise field_invalid("message", "message must be base64 text.")
        try:
            data = base64.b64decode(message, validate=True)
        except (binascii.Error, ValueError):
            raise field_invalid("message", "message must be valid base64.") from None
        if not data:
            raise field_null("message")
        if len(data) > NIDD_MAX_BYTES:
            raise thingspace_error(
                NIDD_TOO_LONG, f"The message is {len(data)} bytes; NIDD carries at most {NIDD_MAX_BYTES}."
            )
        targets = state.select_targets(body, ids_field="deviceIds")
        request = state.new_request("nidd", [given for given, _ in targets])
        now = state.clock()
        expires = now + timedelta(seconds=seconds)
        deliveries: list[Delivery] = []
        for sub, (given, device) in zip(request.subs, targets, strict=True):
            rid = request.request_id
            if device is None:
                sub.status = "Failed"
                deliveries.append(
                    _nidd_payload(
                        state, rid, given, "DeliveryFailed", reason=f"{DEVICE_NOT_FOUND}: unknown device"
                    )
                )
                continue
            if device.type.rat != NIDD_RAT or device.state != "active":
                sub.status = "Failed"
                why = "not an NB-IoT line" if device.type.rat != NIDD_RAT else f"the line is {device.state}"
                deliveries.append(
                    _nidd_payload(state, rid, given, "DeliveryFailed", reason=f"Unknown: {why}")
                )
                continue
            queued = _nidd_payload(state, rid, given, "Queued")
            _nidd_attempt(state, rid, sub, given, device, data, now, expires, queued)
            deliveries.append(queued)
        state.emit(deliveries)
        return {"requestId": request.request_id}


def _nidd_attempt(
    state: SandboxState,
    rid: str,
    sub: Any,
    given: dict[str, str],
    device: Device,
    data: bytes,
    first: datetime,
    expires: datetime,
    queued: Delivery,
) -> None:
    """Deliver when the device is reachable (after the Queued callback), else at its next wake,
    else DeliveryFailed at *expires*."""

    def delivered(at: datetime) -> Delivery:
        sub.status = "Success"
        if device.nidd_reply is not None:
            prefix, delay = device.nidd_reply
            due = at + timedelta(seconds=delay)
            state.timers.at(due, lambda: device_sends_nidd(state, device, prefix.encode() + data, due))
        return _nidd_payload(
            state, rid, given, "Delivered", acknowledgeTime=iso(at), firstAttemptDeliveryTime=iso(first)
        )

    def attempt(at: datetime) -> None:
        if sub.status != "Pending":
            return
        if status_at(device.timeline, epoch(at)).reachable:
            state.emit([delivered(at)])
            return
        wake = next_change(device.timeline, epoch(at))
        if wake is not None:
            due = datetime.fromtimestamp(wake + 1, at.tzinfo)
            if due < expires:
                state.timers.at(due, lambda: attempt(due))
                return
        state.timers.at(expires, expire)

    def expire() -> None:
        if sub.status == "Pending":
            sub.status = "Failed"
            state.emit(
                [_nidd_payload(state, rid, given, "DeliveryFailed", reason="Timeout, could not deliver data")]
            )

    if status_at(device.timeline, epoch(first)).reachable:
        queued.then = [delivered(first)]
    else:
        attempt(first)


def device_sends_nidd(state: SandboxState, device: Device, data: bytes, at: datetime | None = None) -> None:
    """*device* sends NIDD data: a NiddService ``niddMONotificationResponse`` callback."""
    given = {"id": device.imei, "kind": "imei"}
    payload = {
        "requestId": str(uuid.uuid4()),
        "deviceIds": [given],
        NIDD_RESPONSE: {
            NIDD_MO: {
                "accountName": state.config.account,
                "message": base64.b64encode(data[:NIDD_MAX_BYTES]).decode("ascii"),
                "deviceIds": [given],
            }
        },
    }
    state.emit([Delivery(NIDD_SERVICE, payload)])
