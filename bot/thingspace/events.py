"""Parse ThingSpace callback bodies into typed :class:`CallbackEvent` objects.

ThingSpace posts one JSON body per device to the listener registered for a service (Verizon:
"About Callback Services"; SDK ``ConnectivityManagementCallback``). The envelope is confirmed (``requestId``, ``deviceIds``, ``status``,
``faultResponse``, ``callbackCount``, ``maxCallbackThreshold``, ``username``/``password``); the
payload inside it is our proposal, spelled once in :mod:`bot.thingspace.shapes`.

The body does not name its service, so :func:`parse_callback` recognises it by content:

=================================== =========================== ===============================
content                             service                     kinds
=================================== =========================== ===============================
``deviceResponse.stateChange``      CarrierService              suspended, restored, state-changed
``deviceResponse.cancelLocation…``  CarrierService              location-cancelled
``faultResponse`` alone             the ``service`` hint, else  action-failed
                                    CarrierService
``deviceResponse.smsResponse``      EnhancedConnectivityService sms-sent
``smsMessage`` (object or text),    EnhancedConnectivityService sms-received
or ``message`` + ``deviceIds``
``deviceResponse.smsDelivery…``     SMSDeliveryConfirmation     sms-delivered, sms-expired
``diagnosticsResponse``             DiagnosticsService          reachable, unreachable,
                                                                monitor-update
``…externalProvisioningChange``     ExternalProvisioningChanges external-change
``…resumeTrackingNotification``     ResumeTrackingNotification  resume-warning
``niddResponse.niddMT…``            NiddService                 nidd-queued, nidd-delivered,
                                                                nidd-failed (by ``status``)
``niddResponse.niddMO…``            NiddService                 nidd-received (data decoded)
``deviceResponse.smsEventHistory``  DeviceService               sms-history
``status`` Success, no known key    the hint, else ``""``       succeeded
anything else with an envelope      the hint, else ``""``       unknown
=================================== =========================== ===============================

**Status first.** The envelope is confirmed and the inner keys are not, so ``status`` /
``faultResponse`` and ``deviceIds`` decide what happened: a ``Success`` whose inner key is one we
never proposed is kind ``succeeded`` (the inbox worker reads it by the verb of the request it
answers), a failure is a failure whatever else the body holds. Known inner keys add detail
(state, resume date, SMS status...).

Only a device-originated SMS may come without ``requestId`` (the older documented form has
none); its ``request_id`` is then ``""``. The documented US date in a resume-tracking
``comment`` ("Device will be auto resumed on - 3/15/2017 12:00:00 AM") is read when no
``resumeDate`` is given.

A failure (``status`` ``Failed`` or a ``faultResponse``) keeps the service its content names
and gets kind ``action-failed`` for CarrierService, ``sms-failed`` for the SMS services and
``monitor-failed`` for DiagnosticsService, ``nidd-failed`` for NiddService. The payload keys inside ``deviceResponse`` may also
appear at the top level. Unknown keys are ignored, ``kind`` may be in any case.

``outcome_key`` identifies *what happened to which device* and is identical across ThingSpace's
retries of the same message (it ignores ``callbackCount``, ``maxCallbackThreshold`` and the
credentials), so the intake dedupes on ``(request_id, device, outcome_key)``. Two different
outcomes for one device and request (a reachability change and its reversal, the SMS "sent" and
"delivered" notices) get different keys. It is a hash: no identifier appears in it.

``raw`` is the body without ``username``/``password``; those two are kept apart on the event
(hidden from ``repr``) so the intake can check them and never store them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from bot.thingspace import shapes
from bot.thingspace.errors import split_error_code
from bot.thingspace.ids import DeviceId, InvalidDeviceId
from bot.thingspace.models import normalise_state, parse_datetime

__all__ = [
    "MAX_CALLBACK_COUNT",
    "CallbackEvent",
    "CallbackKind",
    "InvalidCallback",
    "guess_service",
    "parse_callback",
    "parse_resume_comment",
]

#: ``callbackCount``/``maxCallbackThreshold`` above this are kept as this (SQLite stores 64-bit
#: integers; ThingSpace's own maximum is 4).
MAX_CALLBACK_COUNT: Final = 1_000_000

_CREDENTIALS: Final = ("username", "password")
_VOLATILE: Final = frozenset({"username", "password", "callbackCount", "maxCallbackThreshold"})
_FAILED_STATUSES: Final = frozenset({"failed", "failure", "fail", "error", "deliveryfailed", "configfailed"})
_SMS_SERVICES: Final = frozenset({shapes.ENHANCED_CONNECTIVITY_SERVICE, shapes.SMS_DELIVERY_CONFIRMATION})


class InvalidCallback(ValueError):
    """The body is not a ThingSpace callback; the message says why (safe to log: no ids)."""


class CallbackKind(StrEnum):
    """What a callback means for the bot."""

    SUSPENDED = "suspended"
    RESTORED = "restored"
    STATE_CHANGED = "state-changed"
    LOCATION_CANCELLED = "location-cancelled"
    ACTION_FAILED = "action-failed"
    SMS_SENT = "sms-sent"
    SMS_DELIVERED = "sms-delivered"
    SMS_EXPIRED = "sms-expired"
    SMS_FAILED = "sms-failed"
    SMS_RECEIVED = "sms-received"
    #: ``status`` says it succeeded; the payload carries no key we know
    SUCCEEDED = "succeeded"
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    MONITOR_UPDATE = "monitor-update"
    MONITOR_FAILED = "monitor-failed"
    EXTERNAL_CHANGE = "external-change"
    RESUME_WARNING = "resume-warning"
    NIDD_QUEUED = "nidd-queued"
    NIDD_DELIVERED = "nidd-delivered"
    NIDD_FAILED = "nidd-failed"
    NIDD_RECEIVED = "nidd-received"
    SMS_HISTORY = "sms-history"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CallbackEvent:
    """One parsed callback. Fields that do not apply to its kind are empty / ``None``."""

    service: str
    kind: CallbackKind
    request_id: str
    device: DeviceId | None
    device_ids: tuple[DeviceId, ...]
    status: str
    succeeded: bool
    outcome_key: str
    raw: Mapping[str, Any]
    fault_code: str = ""
    fault_message: str = ""
    callback_count: int = 1
    max_callback_threshold: int | None = None
    #: provisioning: the line's state after the change (``suspend``, ``active``...)
    state: str = ""
    #: suspend / resume warning: when the line auto-resumes
    resume_date: datetime | None = None
    #: SMS: ``Sent``, ``Delivered``, ``Expired`` (as ThingSpace spelled it)
    sms_status: str = ""
    #: device-originated SMS text
    sms_text: str = ""
    #: DiagnosticsService: ``REACHABLE`` / ``UNREACHABLE`` / ``""``
    reachability: str = ""
    monitor_id: str = ""
    monitor_type: str = ""
    reachable_until: datetime | None = None
    monitor_expires_at: datetime | None = None
    #: when it happened, as the payload says (reachability, MO SMS, external change...)
    event_time: datetime | None = None
    #: ExternalProvisioningChanges: ``Suspend``, ``Resume``, ``Activate``...; who made it
    change_type: str = ""
    changed_by: str = ""
    comment: str = ""
    #: NIDD: the envelope's status (``Queued``, ``Delivered``, ``DeliveryFailed``) and, for
    #: device-originated data, the decoded bytes
    nidd_status: str = ""
    nidd_data: bytes = b""
    #: SMS event history (DeviceService): ``({"timestamp", "smsType", "sentTo"}, ...)`` as sent
    sms_events: tuple[Mapping[str, str], ...] = ()
    username: str = field(default="", repr=False, compare=False)
    password: str = field(default="", repr=False, compare=False)


def _text(value: object) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def _credential(value: object) -> str:
    """Credentials are compared exactly: no stripping."""
    return value if isinstance(value, str) else ""


def _count(payload: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = payload.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidCallback(f"{key} must be a number")
    if isinstance(value, int):
        return max(0, min(value, MAX_CALLBACK_COUNT))
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 30:
        return min(int(value.strip()), MAX_CALLBACK_COUNT)
    raise InvalidCallback(f"{key} must be a number")


def _device_ids(payload: Mapping[str, Any]) -> tuple[DeviceId, ...]:
    value = payload.get("deviceIds")
    if value is None:
        return ()
    if isinstance(value, Mapping):  # a single object instead of a list: accept it
        value = [value]
    if not isinstance(value, list):
        raise InvalidCallback("deviceIds must be a list of {id, kind} objects")
    out: list[DeviceId] = []
    for i, item in enumerate(value):
        try:
            out.append(DeviceId.from_wire(item))
        except InvalidDeviceId:
            raise InvalidCallback(f"deviceIds[{i}] is not an {{id, kind}} object with both set") from None
    return tuple(out)


def _section(payload: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """``deviceResponse[key]`` or ``payload[key]``; ``None`` when absent."""
    response = payload.get("deviceResponse")
    for holder in (response, payload):
        if isinstance(holder, Mapping):
            value = holder.get(key)
            if isinstance(value, Mapping):
                return value
            if value is not None:
                raise InvalidCallback(f"{key} must be a JSON object")
    return None


def _digest(kind: CallbackKind, semantic: Mapping[str, Any]) -> str:
    canonical = json.dumps(semantic, sort_keys=True, separators=(",", ":"), default=str)
    return f"{kind.value}:{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def _nidd(
    nidd: Mapping[str, Any], status: str, details: dict[str, Any], semantic: dict[str, Any]
) -> CallbackKind:
    """A ``niddResponse``: MT delivery (status in the envelope) or device-originated data."""
    details["nidd_status"] = status
    mo = nidd.get(shapes.NIDD_MO)
    if isinstance(mo, Mapping):
        message = mo.get("message")
        if not isinstance(message, str):
            raise InvalidCallback(f"{shapes.NIDD_MO}.message must be base64 text")
        try:
            details["nidd_data"] = base64.b64decode(message.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCallback(f"{shapes.NIDD_MO}.message is not valid base64") from None
        return CallbackKind.NIDD_RECEIVED
    mt = nidd.get(shapes.NIDD_MT)
    if mt is not None and not isinstance(mt, Mapping):
        raise InvalidCallback(f"{shapes.NIDD_MT} must be a JSON object")
    if isinstance(mt, Mapping):
        reason = _text(mt.get("reason"))
        if reason:
            details["fault_message"] = reason
        details["event_time"] = parse_datetime(
            mt.get("acknowledgeTime") or mt.get("firstAttemptDeliveryTime")
        )
    word = status.lower()
    if word == "queued":
        return CallbackKind.NIDD_QUEUED
    if word == "delivered":
        return CallbackKind.NIDD_DELIVERED
    if word in _FAILED_STATUSES:
        return CallbackKind.NIDD_FAILED
    semantic["nidd_body"] = {k: v for k, v in nidd.items()}
    return CallbackKind.UNKNOWN


def _sms_events(section: Mapping[str, Any]) -> tuple[Mapping[str, str], ...]:
    """``smsEvents`` as a tuple of ``{timestamp, smsType, sentTo}`` (text values, unknown keys kept)."""
    value = section.get(shapes.SMS_EVENTS)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidCallback(f"{shapes.SMS_EVENTS} must be a list")
    out: list[Mapping[str, str]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise InvalidCallback(f"{shapes.SMS_EVENTS} holds a value that is not an object")
        out.append({str(k): _text(v) for k, v in item.items()})
    return tuple(out)


def parse_resume_comment(comment: object) -> datetime | None:
    """The date in a resume-tracking comment such as ``"Device will be auto resumed on -
    3/15/2017 12:00:00 AM"`` (US notation, no zone: UTC), or an ISO date after the dash."""
    if not isinstance(comment, str) or not comment.strip():
        return None
    text = comment.rsplit(" - ", 1)[-1].strip() if " - " in comment else comment.strip()
    parsed = parse_datetime(text)
    if parsed is not None:
        return parsed
    for form in shapes.RESUME_COMMENT_DATE_FORMATS:
        try:
            return datetime.strptime(text, form).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def guess_service(payload: object) -> str:
    """The service an unreadable callback most likely came from (a label, never acted on):
    one of :data:`bot.thingspace.shapes.GUESSED_SERVICES`."""
    if not isinstance(payload, Mapping):
        return "unknown"
    response = payload.get("deviceResponse")
    for key, service in shapes.SERVICE_GUESSES:
        if key in payload or (isinstance(response, Mapping) and key in response):
            return service
    return "unknown"


def _mo_sms(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The device-originated SMS in any of its three forms (shapes: MO SMS), as
    ``{"message", "timestamp"}``; ``None`` when the body is not one."""
    value = payload.get(shapes.MO_SMS)
    response = payload.get("deviceResponse")
    if value is None and isinstance(response, Mapping):
        value = response.get(shapes.MO_SMS)
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):  # the older documented form: the text itself
        return {shapes.MO_SMS_TEXT: value, shapes.MO_SMS_TIME: payload.get(shapes.MO_SMS_TIME)}
    if value is not None:
        raise InvalidCallback(f"{shapes.MO_SMS} must be the message text or an object")
    flat = payload.get(shapes.MO_SMS_TEXT)
    if isinstance(flat, str) and "deviceIds" in payload and "deviceResponse" not in payload:
        return {shapes.MO_SMS_TEXT: flat, shapes.MO_SMS_TIME: payload.get(shapes.MO_SMS_TIME)}
    return None


def parse_callback(payload: Mapping[str, Any], service: str | None = None) -> CallbackEvent:
    """Parse one callback body. ``service`` is a hint (e.g. from the listener URL) used only when
    the content does not name the service. Raises :class:`InvalidCallback` with a clear reason.
    """
    if not isinstance(payload, Mapping):
        raise InvalidCallback(f"a callback body must be a JSON object, not {type(payload).__name__}")
    device_ids = _device_ids(payload)
    mo_sms = _mo_sms(payload)
    request_id = payload.get("requestId")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidCallback("requestId must be text")
    request_id = (request_id or "").strip()
    if not request_id and mo_sms is None:
        raise InvalidCallback("it has no requestId, so it is not a ThingSpace callback")
    if mo_sms is not None and not device_ids:
        raise InvalidCallback("a device-originated SMS must name its device in deviceIds")
    response = payload.get("deviceResponse")
    if response is not None and not isinstance(response, Mapping):
        raise InvalidCallback("deviceResponse must be a JSON object")
    fault = payload.get("faultResponse")
    if fault is not None and not isinstance(fault, Mapping):
        raise InvalidCallback("faultResponse must be a JSON object")
    status = _text(payload.get("status"))
    state_change = _section(payload, shapes.STATE_CHANGE)
    cancel = _section(payload, shapes.CANCEL_LOCATION)
    sms_sent = _section(payload, shapes.SMS_SENT)
    sms_delivery = _section(payload, shapes.SMS_DELIVERY)
    diagnostics = _section(payload, shapes.DIAGNOSTICS)
    external = _section(payload, shapes.EXTERNAL_CHANGE)
    resume = _section(payload, shapes.RESUME_TRACKING)
    nidd = _section(payload, shapes.NIDD_RESPONSE)
    sms_history = _section(payload, shapes.SMS_EVENT_HISTORY)
    known = (
        state_change,
        cancel,
        sms_sent,
        sms_delivery,
        mo_sms,
        diagnostics,
        external,
        resume,
        nidd,
        sms_history,
    )
    if not status and fault is None and response is None and all(s is None for s in known):
        raise InvalidCallback("it has no status, deviceResponse or faultResponse: nothing says what happened")

    failed = fault is not None or status.lower() in _FAILED_STATUSES
    fault_code = split_error_code(_text(fault.get("faultcode"))) if fault is not None else ""
    fault_message = _text(fault.get("faultstring")) if fault is not None else ""
    details: dict[str, Any] = {}
    semantic: dict[str, Any] = {}

    if state_change is not None or cancel is not None:
        found_service = shapes.CARRIER_SERVICE
    elif sms_sent is not None or mo_sms is not None:
        found_service = shapes.ENHANCED_CONNECTIVITY_SERVICE
    elif sms_delivery is not None:
        found_service = shapes.SMS_DELIVERY_CONFIRMATION
    elif diagnostics is not None:
        found_service = shapes.DIAGNOSTICS_SERVICE
    elif external is not None:
        found_service = shapes.EXTERNAL_PROVISIONING_CHANGES
    elif resume is not None:
        found_service = shapes.RESUME_TRACKING_NOTIFICATION
    elif nidd is not None:
        found_service = shapes.NIDD_SERVICE
    elif sms_history is not None:
        found_service = shapes.DEVICE_SERVICE
    elif failed:
        found_service = service or shapes.CARRIER_SERVICE
    else:
        found_service = service or ""

    kind = CallbackKind.UNKNOWN
    if state_change is not None:
        state = normalise_state(state_change.get("state"))
        details["state"] = state
        details["resume_date"] = parse_datetime(state_change.get("resumeDate"))
        kind = {"suspend": CallbackKind.SUSPENDED, "active": CallbackKind.RESTORED}.get(
            state, CallbackKind.STATE_CHANGED
        )
    elif cancel is not None:
        kind = CallbackKind.LOCATION_CANCELLED
        details["event_time"] = parse_datetime(cancel.get("completedAt"))
        semantic["cancel_status"] = _text(cancel.get("status"))
    elif sms_sent is not None:
        kind = CallbackKind.SMS_SENT
        details["sms_status"] = _text(sms_sent.get("status"))
    elif sms_delivery is not None:
        sms_status = _text(sms_delivery.get("status"))
        details["sms_status"] = sms_status
        kind = CallbackKind.SMS_EXPIRED if sms_status.lower() == "expired" else CallbackKind.SMS_DELIVERED
    elif mo_sms is not None:
        kind = CallbackKind.SMS_RECEIVED
        details["sms_text"] = _text(mo_sms.get(shapes.MO_SMS_TEXT))
        details["event_time"] = parse_datetime(mo_sms.get(shapes.MO_SMS_TIME))
        semantic["timestamp"] = _text(mo_sms.get(shapes.MO_SMS_TIME))
    elif diagnostics is not None:
        reachability = _text(diagnostics.get("reachabilityStatus")).upper()
        details["reachability"] = reachability
        details["monitor_id"] = _text(diagnostics.get("monitorId"))
        details["monitor_type"] = _text(diagnostics.get("monitorType"))
        details["reachable_until"] = parse_datetime(diagnostics.get("maxUEAvailabilityTime"))
        details["monitor_expires_at"] = parse_datetime(diagnostics.get("monitorExpirationTime"))
        details["event_time"] = parse_datetime(diagnostics.get("eventTime"))
        semantic["event_time"] = _text(diagnostics.get("eventTime"))
        kind = {shapes.REACHABLE: CallbackKind.REACHABLE, shapes.UNREACHABLE: CallbackKind.UNREACHABLE}.get(
            reachability, CallbackKind.MONITOR_UPDATE
        )
    elif external is not None:
        kind = CallbackKind.EXTERNAL_CHANGE
        details["change_type"] = _text(external.get("changeType"))
        details["state"] = normalise_state(external.get("state"))
        details["event_time"] = parse_datetime(external.get("changedAt"))
        details["changed_by"] = _text(external.get("changedBy"))
        semantic["changed_at"] = _text(external.get("changedAt"))
    elif resume is not None:
        kind = CallbackKind.RESUME_WARNING
        details["comment"] = _text(resume.get("comment"))
        details["resume_date"] = parse_datetime(resume.get("resumeDate")) or parse_resume_comment(
            resume.get("comment")
        )
    elif nidd is not None:
        kind = _nidd(nidd, status, details, semantic)
    elif sms_history is not None:
        kind = CallbackKind.SMS_HISTORY
        details["sms_events"] = _sms_events(sms_history)
        semantic["events"] = [dict(e) for e in details["sms_events"]]
    elif status.lower() in shapes.SUCCESS_STATUSES:
        kind = CallbackKind.SUCCEEDED
        if isinstance(response, Mapping):  # which inner keys came: part of the fact, not of its id
            semantic["response_keys"] = sorted(str(k) for k in response)

    if failed:
        if found_service == shapes.NIDD_SERVICE:
            kind = CallbackKind.NIDD_FAILED
        elif found_service in _SMS_SERVICES:
            kind = CallbackKind.SMS_FAILED
        elif found_service == shapes.DIAGNOSTICS_SERVICE:
            kind = CallbackKind.MONITOR_FAILED
        elif kind is not CallbackKind.EXTERNAL_CHANGE and kind is not CallbackKind.RESUME_WARNING:
            kind = CallbackKind.ACTION_FAILED
    succeeded = not failed and kind not in (CallbackKind.SMS_EXPIRED, CallbackKind.UNKNOWN)

    fault_message = details.pop("fault_message", "") or fault_message
    raw = {k: v for k, v in payload.items() if k not in _CREDENTIALS}
    semantic.update(
        {
            "service": found_service,
            "request": request_id,
            "devices": sorted(str(d) for d in device_ids),
            "status": status.lower(),
            "fault": fault_code,
            **{k: v for k, v in details.items() if k not in ("sms_text", "nidd_data", "sms_events")},
        }
    )
    if kind is CallbackKind.SMS_RECEIVED:
        semantic["text"] = details.get("sms_text", "")
    if kind is CallbackKind.NIDD_RECEIVED:
        semantic["data"] = details.get("nidd_data", b"").hex()
    if kind is CallbackKind.UNKNOWN:
        semantic["body"] = {k: v for k, v in payload.items() if k not in _VOLATILE}
    return CallbackEvent(
        service=found_service,
        kind=kind,
        request_id=request_id,
        device=device_ids[0] if device_ids else None,
        device_ids=device_ids,
        status=status,
        succeeded=succeeded,
        outcome_key=_digest(kind, semantic),
        raw=raw,
        fault_code=fault_code,
        fault_message=fault_message,
        callback_count=_count(payload, "callbackCount", 1) or 1,
        max_callback_threshold=_count(payload, "maxCallbackThreshold", None),
        username=_credential(payload.get("username")),
        password=_credential(payload.get("password")),
        **details,
    )
