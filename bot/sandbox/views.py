"""Synchronous reads: device list, extended diagnostics, histories, mismatches, account, status.

Shapes follow Verizon's published models (SDK ``AccountDeviceListResult``,
``DeviceExtendedDiagnosticsResult``, ``ConnectionHistoryResult``, ``DeviceUsageListResult``,
``AsynchronousRequestResult``, ``AccountDetails``); the extended
diagnostics categories beyond ``Connectivity`` are the proposals in ``bot.thingspace.shapes``,
and ``Connectivity`` carries only ``Connected`` (no proposed keys: a line's sessions, last
connection and address come from the connection history and the device list, as on the real
API). ``connected`` (device list and diagnostics) means the network sees the device: attached,
in a data session or not. Connection-history events carry the keys of Verizon's key attributes
page: ``Event`` and ``Msisdn`` and ``FramedIpAddress`` in both, ``BytesUsed`` in Stop only.

Paging: the device list returns at most 2,000 devices per call (HTTP 202 with ``hasMoreData: true``
when more remain), sorted by the numeric ``DeviceId`` extended attribute when
``largestDeviceIdSeen`` is sent (page by raising it to the last ``DeviceId``), else by date added
(page by moving ``earliest``, exclusive, to the last ``createdAt``). Connection and usage histories
return at most 500 records (202 when more remain), oldest first; their ``earliest`` is *inclusive*,
so paging with ``earliest`` = the last ``occurredAt`` repeats that record at the top of the next
page.

Two diagnostic conditions act here (:mod:`bot.sandbox.conditions`): a ``diag-unavailable`` line's
per-line reads answer HTTP 500, and an ``imei-changed`` line takes its new IMEI right after a
device list first shows it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bot.sandbox.activity import daily_bytes, iter_sessions, last_activity, status_at
from bot.sandbox.clock import iso
from bot.sandbox.conditions import epoch, swap_imei
from bot.sandbox.errors import (
    DEVICE_NOT_FOUND,
    NUMBER_OF_DEVICES,
    REQUEST_NOT_FOUND,
    UNEXPECTED_ERROR,
    field_invalid,
    field_null,
    thingspace_error,
)
from bot.sandbox.fleet import PLANS, Device
from bot.sandbox.ids import ALL_KINDS, DIAGNOSTICS_KINDS, check_device_id, device_entries, normalize
from bot.thingspace.shapes import (
    DEVICE_NUMBER_KEY,
    DIAG_CATEGORY_ACCOUNT,
    DIAG_CATEGORY_CONNECTIVITY,
    DIAG_CATEGORY_IDENTIFIERS,
    DIAG_CATEGORY_PROVISIONING,
    DIAG_KEY_CONNECTED,
    HISTORY_BYTES,
    HISTORY_EVENT,
    HISTORY_IP_ADDRESS,
    HISTORY_MSISDN,
    HISTORY_START,
    HISTORY_STOP,
    USAGE_DOMESTIC_BYTES,
    USAGE_DOMESTIC_SMS,
    USAGE_INTERNATIONAL_BYTES,
    USAGE_INTERNATIONAL_SMS,
)

if TYPE_CHECKING:
    from bot.sandbox.state import SandboxState

__all__ = [
    "account_info",
    "connection_history",
    "device_record",
    "extended_diagnostics",
    "list_devices",
    "mismatch_list",
    "parse_time",
    "provisioning_history",
    "request_status_v1",
    "request_status_v2",
    "usage_history",
]

MAX_PAGE: Final = 2000
MAX_HISTORY: Final = 500
USAGE_RETENTION: Final = timedelta(days=365)
_IMEI_CHANGED: Final = frozenset({"imei-mismatch"})


def parse_time(raw: object, field: str, *, required: bool = True) -> datetime | None:
    """ISO 8601 / RFC 3339 (``Z`` or an offset; naive means UTC)."""
    if raw is None or raw == "":
        if required:
            raise field_null(field)
        return None
    if not isinstance(raw, str):
        raise field_invalid(
            field, f"{field} must be an ISO 8601 date-time string, e.g. 2026-01-10T00:00:00Z."
        )
    text = raw.strip()
    if text.endswith("Z") and ("+" in text[10:] or "-" in text[10:]):
        text = text[:-1]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise field_invalid(
            field, f"{field} {raw!r} is not an ISO 8601 date-time, e.g. 2026-01-10T00:00:00Z."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _available(device: Device) -> Device:
    """``device``, unless it is in the ``diag-unavailable`` condition (then HTTP 500)."""
    if device.unavailable:
        raise thingspace_error(
            UNEXPECTED_ERROR, "Unexpected error while processing the request. Try again later.", status=500
        )
    return device


def _listed(state: SandboxState, devices: list[Device]) -> None:
    """After a device list showed ``devices``: an ``imei-changed`` line takes its new IMEI now."""
    for device in devices:
        if swap_imei(device):
            state.reindex(device)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _last_connection(device: Device, now: datetime) -> datetime | None:
    last = last_activity(device.timeline, epoch(now))
    return datetime.fromtimestamp(last, UTC) if last is not None else None


def device_record(
    state: SandboxState, device: Device, now: datetime, *, single: bool = False
) -> dict[str, Any]:
    """A ``devices[]`` element of ``POST /devices/actions/list`` (``ThingspaceDevice``).

    Every record carries the numeric ``DeviceId`` extended attribute (the paging cursor); a
    single-device lookup adds ``LastDateSuspended`` and ``ResumeDate`` when they apply.
    """
    status = status_at(device.timeline, epoch(now))
    last = _last_connection(device, now)
    extended = [{"key": DEVICE_NUMBER_KEY, "value": str(device.number)}]
    if single:
        suspended = next((start for start, _ in reversed(device.suspensions) if start is not None), None)
        if suspended is not None:
            extended.append({"key": "LastDateSuspended", "value": iso(suspended)})
        if device.resume_date is not None:
            extended.append({"key": "ResumeDate", "value": iso(device.resume_date)})
    return {
        "accountName": state.config.account,
        "billingCycleEndDate": iso(state.billing_cycle_end(now)),
        "carrierInformations": [
            {"carrierName": "Verizon Wireless", "servicePlan": device.plan, "state": device.state}
        ],
        "connected": status.attached,
        "createdAt": iso(device.created),
        "customFields": [{"key": key, "value": value} for key, value in sorted(device.custom.items())],
        "deviceIds": [{"id": value, "kind": kind} for kind, value in device.ids().items()],
        "extendedAttributes": extended,
        "groupNames": list(device.groups),
        "ipAddress": device.ip_address,
        "lastActivationBy": device.activated_by,
        "lastActivationDate": iso(device.activated),
        "lastConnectionDate": iso(last) if last is not None else None,
    }


def _page_size(raw: object) -> int:
    if raw is None:
        return MAX_PAGE
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_PAGE:
        raise field_invalid(
            "maxNumberOfDevices", f"maxNumberOfDevices must be a whole number from 1 to {MAX_PAGE}."
        )
    return raw


def _id_filters(raw: object) -> list[tuple[str, str, str, str]]:
    if raw is None:
        return []
    filters = raw.get("deviceIdentifierFilters") if isinstance(raw, dict) else None
    if not isinstance(filters, list):
        raise field_invalid(
            "filter", 'filter must be {"deviceIdentifierFilters": [{"kind": "iccid", "contains": "9708"}]}.'
        )
    parsed = []
    for item in filters:
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            raise field_null("filter.deviceIdentifierFilters.kind")
        kind = item["kind"].strip().lower()
        if kind not in ALL_KINDS:
            raise thingspace_error(
                "INPUT_INVALID.Device.Kind.Invalid", f"Unknown device kind {item['kind']!r}."
            )
        parts = [item.get(name) or "" for name in ("contains", "startswith", "endswith")]
        if not all(isinstance(p, str) for p in parts) or not any(parts):
            raise field_invalid(
                "filter", "Each identifier filter needs contains, startswith or endswith (strings)."
            )
        parsed.append((kind, *(normalize(kind, str(p))[1] for p in parts)))
    return parsed


def list_devices(state: SandboxState, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``POST /devices/actions/list``: a single device, or a filtered page of the account."""
    with state.lock:
        now = state.clock()
        state.check_account(body.get("accountName"), required=False)
        single = body.get("deviceId")
        if single is not None:
            kind, value = check_device_id(single)
            device = state.find(kind, value)
            if device is None:
                return 200, {"hasMoreData": False, "devices": []}
            record = device_record(state, _available(device), now, single=True)
            _listed(state, [device])
            return 200, {"hasMoreData": False, "devices": [record]}
        size = _page_size(body.get("maxNumberOfDevices"))
        largest = body.get("largestDeviceIdSeen")
        if largest is not None and (isinstance(largest, bool) or not isinstance(largest, int) or largest < 0):
            raise field_invalid(
                "largestDeviceIdSeen", "largestDeviceIdSeen must be a whole number (a DeviceId)."
            )
        earliest = parse_time(body.get("earliest"), "earliest", required=False)
        latest = parse_time(body.get("latest"), "latest", required=False)
        state_filter = body.get("currentState")
        if state_filter is not None and not isinstance(state_filter, str):
            raise field_invalid("currentState", "currentState must be a string such as active or suspend.")
        group, plan = body.get("groupName"), body.get("servicePlan")
        custom = state.custom_filter(body.get("customFields"))
        id_filters = _id_filters(body.get("filter"))
        # both orders are sorted, so a page starts where the cursor points instead of rescanning
        # the fleet from its first line (a 1,000,000-line listing is 500 pages)
        fleet = state.devices
        if largest is not None:
            order: Iterable[int] = range(fleet.first_numbered_after(largest), len(fleet))
        else:
            order = fleet.created_order(earliest)
        found: list[Device] = []
        for index in order:
            if group is not None and not fleet.in_group(index, str(group)):
                continue
            device = fleet.peek(index)
            if largest is not None and device.number <= largest:
                continue
            if earliest is not None and device.created <= earliest:
                continue
            if latest is not None and device.created > latest:
                continue
            if state_filter and device.state != state_filter.strip().lower():
                continue
            if plan and device.plan != plan:
                continue
            if custom and any(device.custom.get(k) != v for k, v in custom.items()):
                continue
            if id_filters and not _matches(device, id_filters):
                continue
            found.append(device)
            if len(found) > size:
                break
        more = len(found) > size
        records = [device_record(state, d, now) for d in found[:size]]
        _listed(state, found[:size])
        return (202 if more else 200), {"hasMoreData": more, "devices": records}


def _matches(device: Device, filters: list[tuple[str, str, str, str]]) -> bool:
    ids = device.ids()
    for kind, contains, startswith, endswith in filters:
        value = ids.get(kind)
        if (
            value is None
            or contains not in value
            or not value.startswith(startswith)
            or not value.endswith(endswith)
        ):
            return False
    return True


def _one_device(state: SandboxState, raw: object, field: str, allowed: frozenset[str] = ALL_KINDS) -> Device:
    if raw is None:
        raise field_null(field)
    kind, value = check_device_id(raw, allowed=allowed, field=field)
    device = state.find(kind, value)
    if device is None:
        raise thingspace_error(DEVICE_NOT_FOUND, f"No device with {kind} {value}.")
    return device


def extended_diagnostics(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /devices/extendeddiagnostics/actions/list`` for exactly one device."""
    with state.lock:
        state.check_account(body.get("accountName"), required=True)
        raw = body.get("deviceList")
        if raw is None:
            raise field_null("deviceList")
        items = raw if isinstance(raw, list) else [raw]
        if len(items) != 1:
            raise thingspace_error(
                NUMBER_OF_DEVICES, f"deviceList must name exactly one device; got {len(items)}."
            )
        device = _available(_one_device(state, items[0], "deviceList[0]", DIAGNOSTICS_KINDS))
        now = state.clock()
        return {"categories": _categories(state, device, now)}


def _attrs(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in pairs]


def _categories(state: SandboxState, device: Device, now: datetime) -> list[dict[str, Any]]:
    ids = device.ids()
    identifiers = [
        (kind.upper(), ids[kind])
        for kind in ("eid", "iccid", "imei", "imsi", "mdn", "meid", "min", "msisdn")
        if kind in ids
    ]
    last_suspended = next((start for start, _ in reversed(device.suspensions) if start is not None), None)
    provisioning = [
        ("DeviceState", device.state),
        ("CreatedAt", iso(device.created)),
        ("LastActivationBy", device.activated_by),
        ("LastActivationDate", iso(device.activated)),
        ("LastDateSuspended", iso(last_suspended) if last_suspended else ""),
        ("ResumeDate", iso(device.resume_date) if device.resume_date else ""),
    ]
    status = status_at(device.timeline, epoch(now))
    connectivity = [(DIAG_KEY_CONNECTED, _flag(status.attached))]
    account = [
        ("AccountName", state.config.account),
        ("ServicePlan", device.plan),
        ("BillingCycleEndDate", iso(state.billing_cycle_end(now))),
        ("GroupNames", ",".join(device.groups)),
        ("CarrierName", "Verizon Wireless"),
    ]
    return [
        {"categoryName": DIAG_CATEGORY_IDENTIFIERS, "extendedAttributes": _attrs(identifiers)},
        {"categoryName": DIAG_CATEGORY_PROVISIONING, "extendedAttributes": _attrs(provisioning)},
        {"categoryName": DIAG_CATEGORY_CONNECTIVITY, "extendedAttributes": _attrs(connectivity)},
        {"categoryName": DIAG_CATEGORY_ACCOUNT, "extendedAttributes": _attrs(account)},
    ]


def _window(body: dict[str, Any]) -> tuple[datetime, datetime]:
    earliest = parse_time(body.get("earliest"), "earliest")
    latest = parse_time(body.get("latest"), "latest")
    assert earliest is not None and latest is not None
    if latest < earliest:
        raise field_invalid("latest", "latest must not be before earliest.")
    return earliest, latest


def connection_history(state: SandboxState, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``POST /devices/connections/actions/listHistory``: Start/Stop events, oldest first."""
    with state.lock:
        device = _available(_one_device(state, body.get("deviceId"), "deviceId"))
        earliest, latest = _window(body)
        now = state.clock()
        lo, hi = epoch(earliest), min(epoch(latest), epoch(now))
        events: list[tuple[int, str, int | None]] = []
        if hi >= lo:
            for session in iter_sessions(device.timeline, device.number, lo, hi, epoch(now)):
                if lo <= session.start <= hi:
                    events.append((session.start, HISTORY_START, None))
                if session.stop is not None and lo <= session.stop <= hi:
                    events.append((session.stop, HISTORY_STOP, session.volume))
                if len(events) > MAX_HISTORY:
                    break
        more = len(events) > MAX_HISTORY
        history = [
            {
                "connectionEventAttributes": _event_attributes(device, event, volume),
                "extendedAttributes": [],
                "occurredAt": iso(datetime.fromtimestamp(moment, UTC)),
            }
            for moment, event, volume in events[:MAX_HISTORY]
        ]
        return (202 if more else 200), {"connectionHistory": history, "hasMoreData": more}


def _event_attributes(device: Device, event: str, volume: int | None) -> list[dict[str, str]]:
    """An event's ``connectionEventAttributes``: BytesUsed only in a Stop, as Verizon documents."""
    pairs = [(HISTORY_EVENT, event)]
    if volume is not None:
        pairs.append((HISTORY_BYTES, str(volume)))
    pairs += [(HISTORY_MSISDN, device.msisdn), (HISTORY_IP_ADDRESS, device.ip_address)]
    return _attrs(pairs)


def provisioning_history(state: SandboxState, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``POST /devices/history/actions/list`` (SDK ``DeviceProvisioningHistoryListRequest`` ->
    ``DeviceProvisioningHistoryListResult``): the activation and every suspend, restore,
    deactivate and activate since, oldest first, at most 500 per answer (202 + ``hasMoreData``)."""
    with state.lock:
        device = _available(_one_device(state, body.get("deviceId"), "deviceId"))
        earliest, latest = _window(body)
        now = state.clock()
        events = [(device.activated, "Activate", device.activated_by), *device.history]
        chosen = [e for e in events if earliest <= e[0] <= min(latest, now)]
        more = len(chosen) > MAX_HISTORY
        history = [
            {
                "occurredAt": iso(at),
                "status": "Success",
                "eventBy": by,
                "eventType": event_type,
                "mdn": device.mdn,
                "msisdn": device.msisdn,
                "servicePlan": device.plan,
                "extendedAttributes": [],
            }
            for at, event_type, by in chosen[:MAX_HISTORY]
        ]
        return (202 if more else 200), {"hasMoreData": more, "provisioningHistory": history}


def usage_history(state: SandboxState, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``POST /devices/usage/actions/list``: one record per UTC day (12 months kept)."""
    with state.lock:
        label = body.get("label")
        if body.get("deviceId") is None and isinstance(label, dict):
            device = _by_label(state, label)
        else:
            device = _one_device(state, body.get("deviceId"), "deviceId")
        _available(device)
        earliest, latest = _window(body)
        now = state.clock()
        first = max(earliest, device.created, now - USAGE_RETENTION)
        day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if day < earliest:
            day += timedelta(days=1)
        end = min(latest, now)
        records: list[dict[str, Any]] = []
        t_now = epoch(now)
        while day <= end and len(records) <= MAX_HISTORY:
            start = epoch(day)
            sms = device.sms_days.get(day.date().isoformat(), 0)
            used = daily_bytes(device.timeline, device.number, start, start + 86400, t_now)
            abroad = _abroad_share(device, start)
            intl_bytes, intl_sms = round(used * abroad), round(sms * abroad)
            records.append(
                {
                    "bytesUsed": used,
                    "extendedAttributes": [
                        {"key": "MoSms", "value": "0"},
                        {"key": "MtSms", "value": str(sms)},
                        {"key": USAGE_DOMESTIC_BYTES, "value": str(used - intl_bytes)},
                        {"key": USAGE_INTERNATIONAL_BYTES, "value": str(intl_bytes)},
                        {"key": USAGE_DOMESTIC_SMS, "value": str(sms - intl_sms)},
                        {"key": USAGE_INTERNATIONAL_SMS, "value": str(intl_sms)},
                    ],
                    "servicePlan": device.plan,
                    "smsUsed": sms,
                    "source": "Raw Usage",
                    "timestamp": iso(day),
                }
            )
            day += timedelta(days=1)
        more = len(records) > MAX_HISTORY
        return (202 if more else 200), {"hasMoreData": more, "usageHistory": records[:MAX_HISTORY]}


def _abroad_share(device: Device, day_start: int) -> float:
    """The share of *device*'s data on the UTC day starting at *day_start* used abroad."""
    if device.roaming_from is None or day_start + 86400 <= device.roaming_from:
        return 0.0
    part = min(1.0, (day_start + 86400 - device.roaming_from) / 86400)
    return device.roaming_share * part


def _by_label(state: SandboxState, label: dict[str, Any]) -> Device:
    name, value = label.get("name"), label.get("value")
    if name == "CustomField1" and isinstance(value, str):  # the label: found without a scan
        labelled = state.by_label_text(value)
        matches = [labelled] if labelled is not None and labelled.label == value else []
    else:
        matches = [d for d in state.devices if isinstance(name, str) and d.custom.get(name) == value]
    if len(matches) != 1:
        raise thingspace_error(
            DEVICE_NOT_FOUND,
            f"The label {name}={value} must match exactly one device; it matches {len(matches)}.",
        )
    return matches[0]


def mismatch_list(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /devices/actions/list/imeiiccidmismatch``."""
    with state.lock:
        state.check_account(body.get("accountName"), required=False)
        window = body.get("filter")
        if window is None:
            raise field_null("filter")  # required with both dates (SDK DeviceMismatchListRequest)
        if not isinstance(window, dict):
            raise field_invalid("filter", 'filter must be {"earliest": ISO, "latest": ISO}.')
        earliest = parse_time(window.get("earliest"), "filter.earliest")
        latest = parse_time(window.get("latest"), "filter.latest")
        # a line's IMEI changes only by its seeded condition or once it is kept: no fleet scan
        pool: Iterable[Device] = itertools.chain(
            (d for d in state.devices.live.values()),
            (
                state.devices.peek(i)
                for i in state.devices.indexes_with(_IMEI_CHANGED)
                if i not in state.devices.live
            ),
        )
        if body.get("devices") is not None:
            chosen: list[Device] = []
            pool = chosen
            for position, raw in enumerate(device_entries(body["devices"])):
                kind, value = check_device_id(raw, allowed={"iccid", "mdn"}, field=f"devices[{position}]")
                found = state.find(kind, value)
                if found is not None:
                    chosen.append(found)
        group = body.get("groupName")
        rows = []
        for device in pool:
            if device.imei_change is None or (group and group not in device.groups):
                continue
            pre, post, when = device.imei_change
            if (earliest and when < earliest) or (latest and when > latest):
                continue
            rows.append(
                {
                    "accountName": state.config.account,
                    "mdn": device.mdn,
                    "activationDate": iso(device.activated),
                    "iccid": device.iccid,
                    "preImei": pre,
                    "postImei": post,
                    "simOtaDate": iso(when),
                }
            )
        return {"devices": rows}


def account_info(state: SandboxState) -> dict[str, Any]:
    """``GET /accounts/{accountName}`` (``AccountDetails``)."""
    plans = [
        {"name": name, "code": code, "sizeKb": str(size), "carrierServicePlanCode": code}
        for code, (name, size) in PLANS.items()
    ]
    return {
        "accountName": state.config.account,
        "accountNumber": state.config.account,
        "organizationName": "Sandbox Fleet Co",
        "isProvisioningAllowed": True,
        "carriers": [{"carriers": "Verizon Wireless"}],
        "features": [
            {"features": "SMS"},
            {"features": "Reachability Monitoring"},
            {"features": "Cancel Location"},
        ],
        "servicePlans": plans,
    }


def _request(state: SandboxState, request_id: str) -> Any:
    try:
        uuid.UUID(request_id)
    except ValueError:
        raise field_invalid("requestId", f"{request_id!r} is not a request id (a GUID).") from None
    request = state.requests.get(request_id)
    if request is None:
        raise thingspace_error(REQUEST_NOT_FOUND, f"No request {request_id} for this account.")
    return request


def request_status_v1(state: SandboxState, request_id: str) -> dict[str, Any]:
    """``GET /m2m/v1/accounts/{a}/requests/{id}/status``: single-device provisioning only."""
    with state.lock:
        request = _request(state, request_id)
        if not request.provisioning or len(request.subs) != 1:
            raise thingspace_error(
                REQUEST_NOT_FOUND,
                "Request status is available only for single-device provisioning requests "
                "(activate, deactivate, suspend, restore); use /m2m/v2 for this request.",
            )
        return {"requestId": request.request_id, "status": request.status}


def request_status_v2(state: SandboxState, request_id: str) -> dict[str, Any]:
    """``GET /m2m/v2/accounts/{a}/requests/{id}/status``: overall and per-device status."""
    with state.lock:
        request = _request(state, request_id)
        subs = [{"ids": sub.ids, "status": sub.status} for sub in request.subs]
        # ``subrequests``: the spelling of the SDK's StatusResponse
        return {"requestId": request.request_id, "status": request.status, "subrequests": subs}
