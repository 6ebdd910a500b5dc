"""Device reachability (SCEF) monitoring: the DiagnosticsService callbacks.

Verizon: "Monitor Device Reachability", "Retrieve Reachability Status", "Retrieve Active
Reachability Monitoring", "Stop Device Reachability Monitoring".

* ``POST /diagnostics/basic/devicereachability`` starts a monitor per device and answers
  ``{"requestId"}``; each device then gets a registration callback (with ``reachabilityStatus``
  only if it is reachable at that moment) and, until ``monitorExpirationTime``, a callback on
  every change of reachability that its ``requestType`` covers: the ``REACHABLE_FOR_*`` types
  report becoming ``REACHABLE``, the ``*LOSS*`` types report becoming ``UNREACHABLE``
  (``REACHABLE_FOR_DATA_AND_LOSS`` reports both).
* ``POST .../devicereachability/status``: one device; a callback now with the status if it is
  reachable, otherwise a registration callback now and a second one when it becomes reachable,
  or ``UNREACHABLE`` when the request expires (default one hour).
* ``POST .../devicereachability/monitors``: one callback per active monitor of the devices given.
* ``DELETE /diagnostics/basic/devicereachability`` with ``{"monitorIds": [...]}`` stops monitors.

Reachability follows the device's timeline (a sleepy meter is reachable only during its wake),
control-route flips, suspensions and conditions. The payload is ``diagnosticsResponse`` =
``{"monitorId", "monitorType", "reachabilityStatus", "maxUEAvailabilityTime",
"monitorExpirationTime", "eventTime"}`` (the proposed shape in ``bot.thingspace.shapes``).
This API family answers malformed requests with ``{"errorCode": "400", "errorMessage": ...}``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bot.sandbox.activity import next_change, status_at
from bot.sandbox.callback_sender import Delivery
from bot.sandbox.clock import iso
from bot.sandbox.conditions import epoch
from bot.sandbox.errors import ApiError, reachability_error
from bot.sandbox.fleet import Device
from bot.sandbox.ids import REACHABILITY_KINDS, check_device_id, device_entries
from bot.thingspace.shapes import DIAGNOSTICS, DIAGNOSTICS_SERVICE, REACHABLE, UNREACHABLE

if TYPE_CHECKING:
    from bot.sandbox.state import SandboxState

__all__ = [
    "MONITOR_TYPES",
    "Monitor",
    "install",
    "list_monitors",
    "query_status",
    "start_monitors",
    "stop_monitors",
]

MONITOR_TYPES: Final = (
    "REACHABLE_FOR_DATA",
    "REACHABLE_FOR_SMS",
    "LOSS_OF_CONNECTIVITY",
    "REACHABLE_FOR_DATA_SMS",
    "REACHABLE_FOR_DATA_AND_LOSS",
    "REACHABLE_FOR_SMS_AND_LOSS",
    "REACHABLE_FOR_DATA_SMS_AND_LOSS",
)
STATUS_TYPES: Final = ("REACHABLE_FOR_DATA", "REACHABLE_FOR_SMS", "LOSS_OF_CONNECTIVITY")
MAX_MONITOR: Final = timedelta(days=3650)


@dataclass(slots=True)
class Monitor:
    monitor_id: str
    device: Device
    monitor_type: str
    expires: datetime
    request_id: str
    given: dict[str, str]
    last: bool
    one_shot: bool = False


def install(state: SandboxState) -> None:
    """Hook monitor evaluation into the state (called once per state)."""
    state.on_reachability_change = lambda device, at: evaluate(state, device, at)


def _parse_time(raw: object, field: str) -> datetime:
    if not isinstance(raw, str) or not raw:
        raise reachability_error(f"{field} is required (RFC 3339, e.g. 2030-01-01T00:00:00Z).")
    text = raw.strip()
    if text.endswith("Z") and ("+" in text[10:] or "-" in text[10:]):
        text = text[:-1]  # the SDK's example "2019-12-02T15:00:00-08:00Z"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise reachability_error(f"{field} {raw!r} is not an RFC 3339 date-time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_id(raw: object, field: str) -> tuple[str, str]:
    try:
        return check_device_id(raw, allowed=REACHABILITY_KINDS, field=field)
    except ApiError as exc:
        raise reachability_error(str(exc.body.get("errorMessage", "invalid device"))) from None


def _payload(monitor: Monitor, status: str | None, at: datetime, until: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"monitorId": monitor.monitor_id, "monitorType": monitor.monitor_type}
    if status is not None:
        body["reachabilityStatus"] = status
        if status == REACHABLE and until is not None:
            body["maxUEAvailabilityTime"] = iso(datetime.fromtimestamp(until, UTC))
    body["monitorExpirationTime"] = iso(monitor.expires)
    body["eventTime"] = iso(at)
    return body


def _callback(state: SandboxState, monitor: Monitor, status: str | None, at: datetime) -> Delivery:
    until = status_at(monitor.device.timeline, epoch(at)).available_until
    payload = {
        "requestId": monitor.request_id,
        "deviceIds": [monitor.given],
        DIAGNOSTICS: _payload(monitor, status, at, until),
        "status": "Success",
    }
    return Delivery(DIAGNOSTICS_SERVICE, payload)


def _reachable(device: Device, at: datetime) -> bool:
    return status_at(device.timeline, epoch(at)).reachable


def _common(state: SandboxState, body: dict[str, Any]) -> None:
    account = body.get("accountName")
    if not account:
        raise reachability_error("accountName is required.")
    if account != state.config.account:
        raise reachability_error(f"Account {account} is not available to this user.")


def _devices(state: SandboxState, body: dict[str, Any]) -> list[tuple[dict[str, str], Device | None]]:
    raw_devices = body.get("devices")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise reachability_error('devices is required: [{"deviceIds": [{"id": "...", "kind": "iccid"}]}].')
    try:
        entries = device_entries(raw_devices)
    except ApiError as exc:
        raise reachability_error(str(exc.body.get("errorMessage"))) from None
    kinds = set()
    found: list[tuple[dict[str, str], Device | None]] = []
    seen: set[tuple[str, str]] = set()
    for position, raw in enumerate(entries):
        kind, value = _check_id(raw, f"devices[{position}].deviceIds[0]")
        kinds.add(kind)
        if (kind, value) in seen:
            continue  # duplicates collapsed
        seen.add((kind, value))
        found.append(({"id": raw["id"], "kind": raw["kind"]}, state.find(kind, value)))
    if len(kinds) > 1:
        raise reachability_error(
            f"Use one kind of identifier across the list; got {', '.join(sorted(kinds))}."
        )
    return found


def start_monitors(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /diagnostics/basic/devicereachability``."""
    with state.lock:
        _common(state, body)
        monitor_type = body.get("requestType")
        if monitor_type not in MONITOR_TYPES:
            raise reachability_error(f"requestType must be one of {', '.join(MONITOR_TYPES)}.")
        now = state.clock()
        expires = _parse_time(body.get("monitorExpirationTime"), "monitorExpirationTime")
        if expires <= now or expires > now + MAX_MONITOR:
            raise reachability_error(
                "monitorExpirationTime must be in the future and at most 10 years (3650 days) away."
            )
        targets = _devices(state, body)
        request = state.new_request("reachability-monitor", [given for given, _ in targets])
        deliveries: list[Delivery] = []
        for sub, (given, device) in zip(request.subs, targets, strict=True):
            if device is None:
                sub.status = "Failed"
                deliveries.append(state.not_found(DIAGNOSTICS_SERVICE, request.request_id, given))
                continue
            reachable = _reachable(device, now)
            monitor = Monitor(
                str(uuid.uuid4()), device, str(monitor_type), expires, request.request_id, given, reachable
            )
            _add(state, monitor)
            sub.status = "Success"
            deliveries.append(_callback(state, monitor, REACHABLE if reachable else None, now))
            _schedule(state, device, now)
        state.emit(deliveries)
        return {"requestId": request.request_id}


def query_status(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /diagnostics/basic/devicereachability/status`` (one device)."""
    with state.lock:
        _common(state, body)
        request_type = body.get("requestType")
        if request_type not in STATUS_TYPES:
            raise reachability_error(f"requestType must be one of {', '.join(STATUS_TYPES)}.")
        raw = body.get("device")
        if raw is None:
            raise reachability_error('device is required: {"id": "...", "kind": "iccid"}.')
        kind, value = _check_id(raw, "device")
        device = state.find(kind, value)
        if device is None:
            raise reachability_error(f"No device with {kind} {value}.")
        now = state.clock()
        expires = now + timedelta(hours=1)
        if body.get("requestExpirationTime") is not None:
            expires = _parse_time(body["requestExpirationTime"], "requestExpirationTime")
            if expires <= now or expires > now + MAX_MONITOR:
                raise reachability_error(
                    "requestExpirationTime must be in the future and at most 10 years away."
                )
        given = {"id": raw["id"], "kind": raw["kind"]}
        request = state.new_request("reachability-status", [given])
        reachable = _reachable(device, now)
        monitor = Monitor(
            str(uuid.uuid4()),
            device,
            str(request_type),
            expires,
            request.request_id,
            given,
            reachable,
            one_shot=True,
        )
        if reachable:
            request.subs[0].status = "Success"
            state.emit([_callback(state, monitor, REACHABLE, now)])
        else:
            _add(state, monitor)
            state.emit([_callback(state, monitor, None, now)])
            _schedule(state, device, now)
        return {"requestId": request.request_id}


def list_monitors(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``POST /diagnostics/basic/devicereachability/monitors``: one callback per active monitor."""
    with state.lock:
        _common(state, body)
        wanted_type = body.get("requestType") or body.get("monitorType")
        targets = _devices(state, body)
        request = state.new_request("reachability-list", [given for given, _ in targets])
        now = state.clock()
        deliveries: list[Delivery] = []
        for sub, (given, device) in zip(request.subs, targets, strict=True):
            sub.status = "Success" if device is not None else "Failed"
            if device is None:
                deliveries.append(state.not_found(DIAGNOSTICS_SERVICE, request.request_id, given))
                continue
            for monitor in state.device_monitors.get(device.index, []):
                if monitor.one_shot or (wanted_type and monitor.monitor_type != wanted_type):
                    continue
                shown = Monitor(
                    monitor.monitor_id,
                    device,
                    monitor.monitor_type,
                    monitor.expires,
                    request.request_id,
                    given,
                    monitor.last,
                )
                deliveries.append(
                    _callback(state, shown, REACHABLE if _reachable(device, now) else UNREACHABLE, now)
                )
        state.emit(deliveries)
        return {"requestId": request.request_id}


def stop_monitors(state: SandboxState, body: dict[str, Any]) -> dict[str, str]:
    """``DELETE /diagnostics/basic/devicereachability``."""
    with state.lock:
        _common(state, body)
        ids = body.get("monitorIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise reachability_error('monitorIds is required: ["<monitor id>", ...].')
        known = [state.monitors[i] for i in ids if i in state.monitors]
        if not known:
            raise reachability_error("None of these monitorIds is an active monitor.")
        for monitor in known:
            _remove(state, monitor)
        request = state.new_request("reachability-stop", [])
        return {"requestId": request.request_id}


# -- evaluation -------------------------------------------------------------------------------------
def _add(state: SandboxState, monitor: Monitor) -> None:
    state.monitors[monitor.monitor_id] = monitor
    state.device_monitors[monitor.device.index].append(monitor)

    def expire() -> None:
        if monitor.monitor_id not in state.monitors:
            return
        _remove(state, monitor)
        if monitor.one_shot:
            sub = state.requests[monitor.request_id].subs[0]
            sub.status = "Success"
            state.emit([_callback(state, monitor, UNREACHABLE, monitor.expires)])

    state.timers.at(monitor.expires, expire)


def _remove(state: SandboxState, monitor: Monitor) -> None:
    state.monitors.pop(monitor.monitor_id, None)
    mine = state.device_monitors.get(monitor.device.index, [])
    if monitor in mine:
        mine.remove(monitor)


def evaluate(state: SandboxState, device: Device, at: datetime) -> None:
    """Emit callbacks for the monitors of ``device`` whose reported reachability is now stale."""
    monitors = state.device_monitors.get(device.index)
    if not monitors:
        return
    reachable = _reachable(device, at)
    deliveries: list[Delivery] = []
    for monitor in list(monitors):
        if monitor.expires <= at or monitor.last == reachable:
            continue
        monitor.last = reachable
        if monitor.one_shot:
            if reachable:
                _remove(state, monitor)
                state.requests[monitor.request_id].subs[0].status = "Success"
                deliveries.append(_callback(state, monitor, REACHABLE, at))
            continue
        if reachable and monitor.monitor_type.startswith("REACHABLE_FOR"):
            deliveries.append(_callback(state, monitor, REACHABLE, at))
        elif not reachable and "LOSS" in monitor.monitor_type:
            deliveries.append(_callback(state, monitor, UNREACHABLE, at))
    state.emit(deliveries)
    _schedule(state, device, at)


def _schedule(state: SandboxState, device: Device, at: datetime) -> None:
    """Wake the evaluation up at the device's next sleepy transition while monitors exist."""
    if not state.device_monitors.get(device.index):
        state.reach_due.pop(device.index, None)
        return
    due = next_change(device.timeline, epoch(at))
    if due is None or state.reach_due.get(device.index) == due:
        return
    state.reach_due[device.index] = due
    moment = datetime.fromtimestamp(due, UTC)

    def fire() -> None:
        if state.reach_due.get(device.index) != due:
            return
        del state.reach_due[device.index]
        now = state.clock()
        evaluate(state, device, moment if now - moment < timedelta(days=1) else now)

    state.timers.at(moment, fire)
