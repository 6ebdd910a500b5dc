"""Asynchronous operations that change lines: suspend, restore, SMS, cancel location.

Each answers synchronously with ``{"requestId"}`` (or a 400 for malformed input, which changes
nothing) and then produces one callback per device:

* suspend / restore → CarrierService, ``deviceResponse.stateChange`` =
  ``{"state": "suspend"|"active", "resumeDate": ISO|None, "deviceIds": [iccid, mdn]}``; failures
  (unknown device, wrong state, five actions already used today, suspend-day limits, a transient
  error on a few plant-7 lines) come as ``status: Failed`` with ``faultResponse``.
* SMS → EnhancedConnectivityService ``deviceResponse.smsResponse {"status": "Sent"}``, then
  SMSDeliveryConfirmation ``deviceResponse.smsDeliveryConfirmation {"status": "Delivered"}`` when
  the device is reachable (a sleepy device: at its next wake), or ``"Expired"`` after the
  delivery window (5 days). A delivered SMS reboots a hung or stuck device (sandbox behaviour).
* cancel location → CarrierService ``deviceResponse.cancelLocationResponse
  {"status": "Completed", "completedAt": ISO}``, processed under a global hourly cap (excess
  requests wait for a later hour, at most 24 h); the device re-attaches (which cures ``hung``).

A device in the ``pending`` condition keeps its provisioning requests ``Pending``: they complete
only when its condition changes.
"""

from __future__ import annotations

import weakref
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bot.sandbox import messaging
from bot.sandbox.activity import append_segment, next_change, status_at
from bot.sandbox.callback_sender import Delivery
from bot.sandbox.clock import iso
from bot.sandbox.conditions import epoch
from bot.sandbox.errors import (
    DAILY_ACTION_LIMIT,
    DEVICE_NOT_FOUND,
    DEVICE_STATE_INVALID,
    NUMBER_OF_DEVICES,
    QUEUE_FULL,
    SMS_NULL,
    SMS_TOO_LONG,
    SUSPEND_DAY_LIMIT,
    UNEXPECTED_ERROR,
    field_invalid,
    field_null,
    thingspace_error,
)
from bot.sandbox.fleet import Device
from bot.sandbox.ids import CANCEL_LOCATION_KINDS, check_device_id, device_entries
from bot.sandbox.rules import DAILY_ACTIONS, actions_today, resume_line, suspend_line, suspension_allowance
from bot.sandbox.state import AsyncRequest, SubRequest
from bot.thingspace.shapes import (
    CANCEL_LOCATION,
    CARRIER_SERVICE,
    ENHANCED_CONNECTIVITY_SERVICE,
    SMS_DELIVERY,
    SMS_DELIVERY_CONFIRMATION,
    SMS_SENT,
    STATE_CHANGE,
)

if TYPE_CHECKING:
    from bot.sandbox.state import SandboxState

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENDED",
    "cancel_location",
    "provision",
    "recover",
    "release_deferred",
    "send_sms",
    "sms_length",
    "sms_received",
]

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED: Final = frozenset("\f^{}\\[~]|€")
_ENCODINGS: Final = ("7-bit", "8-bit-ASCII", "8-bit-UTF-8", "8-bit-DATA")
#: the newest SMS bodies each sandbox accepted, for tests and the demo (:func:`sms_received`)
_SMS_KEPT: Final = 100
_sms_log: weakref.WeakKeyDictionary[SandboxState, deque[dict[str, Any]]] = weakref.WeakKeyDictionary()


def sms_received(state: SandboxState) -> list[dict[str, Any]]:
    """The SMS this sandbox accepted, oldest first: ``{"requestId", "smsMessage", "dataEncoding",
    "deviceIds"}`` exactly as sent (so a test can check the text the device would get)."""
    with state.lock:
        return list(_sms_log.get(state, ()))


# -- suspend / restore ---------------------------------------------------------------------------
def provision(state: SandboxState, body: dict[str, Any], operation: str) -> dict[str, str]:
    """``POST /devices/actions/suspend`` and ``/restore``."""
    with state.lock:
        state.check_account(body.get("accountName"), required=False)
        targets = state.select_targets(body)
        request = state.new_request(operation, [given for given, _ in targets], provisioning=True)
        deliveries = []
        for sub, (given, device) in zip(request.subs, targets, strict=True):
            delivery = _provision_one(state, request, sub, given, device)
            if delivery is not None:
                deliveries.append(delivery)
        state.emit(deliveries)
        return {"requestId": request.request_id}


def _provision_one(
    state: SandboxState, request: AsyncRequest, sub: SubRequest, given: dict[str, str], device: Device | None
) -> Delivery | None:
    rid = request.request_id
    if device is None:
        sub.status = "Failed"
        return state.not_found(CARRIER_SERVICE, rid, given)
    if device.stuck:

        def later() -> None:
            delivery = _provision_one(state, request, sub, given, device)
            if delivery is not None:
                state.emit([delivery])

        state.deferred[device.index].append(later)
        return None
    now = state.clock()
    suspend = request.operation == "suspend"
    wanted_from = "active" if suspend else "suspend"
    if device.flaky > 0:
        device.flaky -= 1
        sub.status = "Failed"
        return state.failure(
            CARRIER_SERVICE,
            rid,
            given,
            UNEXPECTED_ERROR,
            "Temporary failure in the provisioning system; retry the request.",
        )
    if device.state != wanted_from:
        sub.status = "Failed"
        verb = "suspended" if suspend else "restored"
        message = f"The line is {device.state}; only a line in state {wanted_from} can be {verb}."
        return state.failure(CARRIER_SERVICE, rid, given, DEVICE_STATE_INVALID, message)
    if actions_today(device, now) >= DAILY_ACTIONS:
        sub.status = "Failed"
        message = f"The line already used its {DAILY_ACTIONS} provisioning actions today; try again after midnight UTC."
        return state.failure(CARRIER_SERVICE, rid, given, DAILY_ACTION_LIMIT, message)
    if suspend and suspension_allowance(device, now) <= timedelta():
        sub.status = "Failed"
        message = (
            "The line reached 180 suspended days in the last 12 months and cannot be suspended again yet."
        )
        return state.failure(CARRIER_SERVICE, rid, given, SUSPEND_DAY_LIMIT, message)
    resume: datetime | None = None
    if suspend:
        resume = suspend_line(device, now)
        state.schedule_suspension(device)
    else:
        resume_line(device, now)
    sub.status = "Success"
    state.reachability_changed(device, now)
    change = {
        "state": device.state,
        "resumeDate": iso(resume) if resume is not None else None,
        "deviceIds": [{"id": device.iccid, "kind": "iccid"}, {"id": device.mdn, "kind": "mdn"}],
    }
    return state.success(CARRIER_SERVICE, rid, given, STATE_CHANGE, change)


def release_deferred(state: SandboxState, device: Device) -> None:
    """Run the provisioning requests a ``pending`` device was holding back."""
    for action in state.deferred.pop(device.index, []):
        action()


# -- SMS -----------------------------------------------------------------------------------------
def sms_length(text: str, encoding: str) -> tuple[int, int]:
    """(length in the encoding's units, maximum) for ``text``; ValueError for a bad character."""
    if encoding == "7-bit":
        length = 0
        for char in text:
            if char in GSM7_BASIC:
                length += 1
            elif char in GSM7_EXTENDED:
                length += 2
            else:
                raise ValueError(
                    f"character {char!r} is not in the GSM 7-bit alphabet; use dataEncoding 8-bit-UTF-8"
                )
        return length, 160
    if encoding == "8-bit-ASCII":
        if not text.isascii():
            raise ValueError("8-bit-ASCII messages may contain ASCII characters only")
        return len(text), 140
    if encoding == "8-bit-UTF-8":
        return len(text.encode()), 140
    return len(text), 140


def send_sms(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /sms``."""
    message, encoding = body.get("smsMessage"), body.get("dataEncoding", "7-bit")
    with state.lock:
        state.check_account(body.get("accountName"), required=True)
        if message is None or message == "":
            raise thingspace_error(SMS_NULL, "smsMessage is required.")
        if not isinstance(message, str):
            raise field_invalid("smsMessage", "smsMessage must be a string.")
        if encoding not in _ENCODINGS:
            raise field_invalid("dataEncoding", f"dataEncoding must be one of {', '.join(_ENCODINGS)}.")
        try:
            length, limit = sms_length(message, encoding)
        except ValueError as exc:
            raise thingspace_error(
                "INPUT_INVALID.Request.InvalidCharacter", str(exc).capitalize() + "."
            ) from None
        if length > limit:
            raise thingspace_error(
                SMS_TOO_LONG, f"The message is {length} long in {encoding}; the limit is {limit}."
            )
        targets = state.select_targets(body, ids_field="deviceIds")
        request = state.new_request("sms", [given for given, _ in targets])
        now = state.clock()
        _sms_log.setdefault(state, deque(maxlen=_SMS_KEPT)).append(
            {
                "requestId": request.request_id,
                "smsMessage": message,
                "dataEncoding": encoding,
                "deviceIds": [given for given, _ in targets],
            }
        )
        deliveries = [
            _sms_one(state, request.request_id, sub, given, device, now, message)
            for sub, (given, device) in zip(request.subs, targets, strict=True)
        ]
        state.emit(deliveries)
        return {"requestId": request.request_id}


def _sms_one(
    state: SandboxState,
    rid: str,
    sub: SubRequest,
    given: dict[str, str],
    device: Device | None,
    now: datetime,
    text: str = "",
) -> Delivery:
    service = ENHANCED_CONNECTIVITY_SERVICE
    if device is None:
        sub.status = "Failed"
        return state.not_found(service, rid, given)
    if device.state != "active":
        sub.status = "Failed"
        return state.failure(
            service,
            rid,
            given,
            DEVICE_STATE_INVALID,
            f"The line is {device.state}; SMS needs an active line.",
        )
    sent = state.success(service, rid, given, SMS_SENT, {"status": "Sent"})
    expires = now + state.config.sms_expiry

    def outcome(status: str) -> Delivery:
        return state.success(SMS_DELIVERY_CONFIRMATION, rid, given, SMS_DELIVERY, {"status": status})

    def attempt(at: datetime) -> None:
        if status_at(device.timeline, epoch(at)).reachable:
            sub.status = "Success"
            _delivered(state, device, at, text)
            state.emit([outcome("Delivered")])
            return
        wake = next_change(device.timeline, epoch(at))
        if wake is not None:
            due = datetime.fromtimestamp(wake + 1, at.tzinfo)
            if due < expires:
                state.timers.at(due, lambda: attempt(due))
                return
        state.timers.at(expires, lambda: _expire())

    def _expire() -> None:
        if sub.status == "Pending":
            sub.status = "Failed"
            state.emit([outcome("Expired")])

    if status_at(device.timeline, epoch(now)).reachable:
        sub.status = "Success"
        _delivered(state, device, now, text)
        sent.then = [outcome("Delivered")]
    else:
        attempt(now)
    return sent


def _delivered(state: SandboxState, device: Device, at: datetime, text: str) -> None:
    day = at.date().isoformat()
    device.sms_days[day] = device.sms_days.get(day, 0) + 1
    recover(device, at)
    messaging.sms_delivered(state, device, text, at)


def recover(device: Device, at: datetime) -> bool:
    """A reboot (SMS) or re-attach (cancel location) cures a hung or stuck device."""
    if device.condition in ("hung", "no-traffic") and device.state == "active":
        append_segment(device.timeline, epoch(at), device.healthy_mode())
        device.condition = "healthy"
        return True
    return False


# -- cancel location -----------------------------------------------------------------------------
def cancel_location(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /devices/actions/cancellocation``: exactly one device, queued under an hourly cap."""
    with state.lock:
        state.check_account(body.get("accountName"), required=True)
        devices = body.get("devices")
        if devices is None:
            raise field_null("devices")
        entries = device_entries(devices)
        if len(entries) != 1:
            raise thingspace_error(
                NUMBER_OF_DEVICES,
                f"Cancel location takes exactly one device per request; got {len(entries)}.",
            )
        raw = entries[0]
        kind, value = check_device_id(raw, allowed=CANCEL_LOCATION_KINDS, field="devices[0].deviceIds[0]")
        device = state.find(kind, value)
        if device is None:
            raise thingspace_error(DEVICE_NOT_FOUND, f"No device with {kind} {value}.")
        now = state.clock()
        slot = _cancel_slot(state, now)
        given = {"id": raw["id"], "kind": raw["kind"]}
        request = state.new_request("cancel-location", [given])
        sub = request.subs[0]

        def process() -> None:
            at = state.clock()
            sub.status = "Success"
            if not recover(device, at) and device.state == "active":
                append_segment(device.timeline, epoch(at), device.timeline[-1][1])  # detach and re-attach
            state.reachability_changed(device, at)
            result = {"status": "Completed", "completedAt": iso(at)}
            state.emit([state.success(CARRIER_SERVICE, request.request_id, given, CANCEL_LOCATION, result)])

        if slot <= now:
            process()
        else:
            state.timers.at(slot, process)
        return {"requestId": request.request_id}


def _cancel_slot(state: SandboxState, now: datetime) -> datetime:
    """The start of the first hour (from now) with room under the cap; 400 beyond 24 h."""
    cap = state.config.cancel_location_per_hour
    hour = epoch(now) // 3600
    for offset in range(25):
        bucket = hour + offset
        if state.cancel_buckets.get(bucket, 0) < cap:
            state.cancel_buckets[bucket] = state.cancel_buckets.get(bucket, 0) + 1
            return now if offset == 0 else datetime.fromtimestamp(bucket * 3600, now.tzinfo)
    raise thingspace_error(
        QUEUE_FULL, f"The cancel-location queue is full for the next 24 h ({cap} per hour)."
    )
