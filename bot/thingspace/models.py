"""Typed, frozen views of ThingSpace's JSON answers (field names as in Verizon's Python SDK models).

Every ``from_wire`` is tolerant: unknown keys are ignored, missing ones get an empty default,
``kind`` may arrive in any case, dates that do not parse become ``None``. A body that is not even
the right JSON type raises ``TypeError`` (the client turns that into ``UnexpectedResponse``).
Dates are timezone-aware ``datetime`` objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bot.thingspace import shapes
from bot.thingspace.ids import DeviceId, InvalidDeviceId
from bot.thingspace.sms import SMS_ENCODINGS

__all__ = [
    "DEVICE_STATES",
    "SMS_ENCODINGS",
    "Account",
    "CallbackListener",
    "ConnectionEvent",
    "Device",
    "DevicePage",
    "Diagnostics",
    "ImeiIccidMismatch",
    "MoSms",
    "ProvisioningEvent",
    "RequestAccepted",
    "RequestStatus",
    "SubRequest",
    "UsageRecord",
    "normalise_state",
    "parse_datetime",
    "to_wire_datetime",
]

logger = logging.getLogger(__name__)

#: Device states as the models report them, normalised lower-case (Verizon: "About Device States":
#: ACTIVE, SUSPEND, DEACTIVE, PRE-ACTIVE, PENDING ACTIVATION; list answers spell them lower-case).
DEVICE_STATES: Final = ("active", "suspend", "deactive", "pre-active", "pending activation")

_STATE_ALIASES: Final = {
    "active": "active",
    "activate": "active",
    "activated": "active",
    "suspend": "suspend",
    "suspended": "suspend",
    "deactive": "deactive",
    "deactivate": "deactive",
    "deactivated": "deactive",
    "preactive": "pre-active",
    "pre active": "pre-active",
    "pendingactivation": "pending activation",
    "pending activation": "pending activation",
    "pending": "pending activation",
}

# -- small parsing helpers -----------------------------------------------------------------------


def parse_datetime(value: object) -> datetime | None:
    """ISO-8601 text -> aware datetime (UTC when no offset is given); ``None`` if unusable.

    Accepts ``Z``, offsets, and the SDK's odd ``2019-12-02T15:00:00-08:00Z``.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) > 6 and text.endswith("Z") and text[-7] in "+-" and text[-4] == ":":
        text = text[:-1]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def to_wire_datetime(value: datetime) -> str:
    """A datetime as ThingSpace reads it: ISO-8601 with an offset (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def normalise_state(value: object) -> str:
    """``"Active"``, ``"SUSPENDED"``, ``"Pre_Active"`` -> ``active``, ``suspend``, ``pre-active``."""
    if not isinstance(value, str):
        return ""
    text = value.strip().lower().replace("_", " ")
    key = text.replace("-", "")
    return _STATE_ALIASES.get(text) or _STATE_ALIASES.get(key) or text


def _str(value: object) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _key_values(value: object) -> dict[str, str]:
    """``[{"key": k, "value": v}, ...]`` -> ``{k: v}`` (also accepts a plain object)."""
    if isinstance(value, dict):
        return {str(k): _str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in _list(value):
        if isinstance(item, dict) and "key" in item:
            out[str(item["key"])] = _str(item.get("value"))
    return out


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def device_ids_from_wire(value: object) -> tuple[DeviceId, ...]:
    """``deviceIds`` -> DeviceIds, skipping entries without an id or kind."""
    out: list[DeviceId] = []
    for item in _list(value):
        try:
            out.append(DeviceId.from_wire(item))
        except InvalidDeviceId:
            logger.debug("skipping a malformed deviceIds entry")
    return tuple(out)


# -- devices --------------------------------------------------------------------------------------

_PREFERRED_KINDS: Final = ("iccid", "imei", "mdn", "msisdn", "meid", "esn", "eid", "imsi", "min")


@dataclass(frozen=True)
class Device:
    """One line from ``POST /devices/actions/list`` (SDK ``ThingspaceDevice``)."""

    ids: Mapping[str, str]
    state: str = ""
    service_plan: str = ""
    carrier: str = ""
    account: str = ""
    groups: tuple[str, ...] = ()
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    connected: bool | None = None
    last_connection: datetime | None = None
    created_at: datetime | None = None
    last_activation_date: datetime | None = None
    last_activation_by: str = ""
    ip_address: str = ""
    billing_cycle_end: datetime | None = None
    extended_attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: object) -> Device:
        obj = _object(data, "device")
        ids: dict[str, str] = {}
        for device_id in device_ids_from_wire(obj.get("deviceIds")):
            ids.setdefault(device_id.kind, device_id.id)
        carriers = [c for c in _list(obj.get("carrierInformations")) if isinstance(c, dict)]
        carrier = carriers[0] if carriers else {}
        return cls(
            ids=ids,
            state=normalise_state(carrier.get("state")),
            service_plan=_str(carrier.get("servicePlan")),
            carrier=_str(carrier.get("carrierName")),
            account=_str(obj.get("accountName")),
            groups=tuple(_str(g) for g in _list(obj.get("groupNames")) if _str(g)),
            custom_fields=_key_values(obj.get("customFields")),
            connected=_bool(obj.get("connected")),
            last_connection=parse_datetime(obj.get("lastConnectionDate")),
            created_at=parse_datetime(obj.get("createdAt")),
            last_activation_date=parse_datetime(obj.get("lastActivationDate")),
            last_activation_by=_str(obj.get("lastActivationBy")),
            ip_address=_str(obj.get("ipAddress") or obj.get("ipaddress")),
            billing_cycle_end=parse_datetime(obj.get("billingCycleEndDate")),
            extended_attributes=_key_values(obj.get("extendedAttributes")),
        )

    @property
    def iccid(self) -> str | None:
        return self.ids.get("iccid")

    @property
    def mdn(self) -> str | None:
        return self.ids.get("mdn")

    @property
    def imei(self) -> str | None:
        return self.ids.get("imei")

    @property
    def msisdn(self) -> str | None:
        return self.ids.get("msisdn")

    @property
    def device_id(self) -> DeviceId:
        """The best identifier to address this line with (ICCID first, then IMEI, MDN...)."""
        for kind in _PREFERRED_KINDS:
            if kind in self.ids:
                return DeviceId.from_wire({"kind": kind, "id": self.ids[kind]})
        kind, value = next(iter(self.ids.items()))
        return DeviceId.from_wire({"kind": kind, "id": value})

    @property
    def device_ids(self) -> tuple[DeviceId, ...]:
        return tuple(DeviceId.from_wire({"kind": k, "id": v}) for k, v in self.ids.items())

    @property
    def label(self) -> str:
        """``CustomField1``, the conventional label (``tracker-0042``), or ``""``."""
        return self.custom_fields.get("CustomField1", "")


@dataclass(frozen=True)
class DevicePage:
    """One page of a device list: up to 2,000 devices; ``has_more`` came with HTTP 202."""

    devices: tuple[Device, ...]
    has_more: bool

    @classmethod
    def from_wire(cls, data: object) -> DevicePage:
        obj = _object(data, "device list")
        devices = tuple(Device.from_wire(d) for d in _list(obj.get("devices")) if isinstance(d, dict))
        return cls(devices=devices, has_more=_bool(obj.get("hasMoreData")) is True)


# -- diagnostics and history -----------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostics:
    """Extended diagnostics: category name -> {key: value} (values are strings).

    SDK ``DeviceExtendedDiagnosticsResult`` / ``DiagnosticsCategory``.
    """

    categories: Mapping[str, Mapping[str, str]]

    @classmethod
    def from_wire(cls, data: object) -> Diagnostics:
        obj = _object(data, "extended diagnostics")
        categories: dict[str, dict[str, str]] = {}
        for category in _list(obj.get("categories")):
            if not isinstance(category, dict):
                continue
            name = _str(category.get("categoryName"))
            categories.setdefault(name, {}).update(_key_values(category.get("extendedAttributes")))
        return cls(categories=categories)

    def get(self, key: str, category: str | None = None) -> str | None:
        """The value of ``key`` in ``category``, or in any category when none is named.

        Keys compare case-insensitively.
        """
        wanted = key.lower()
        for name, values in self.categories.items():
            if category is not None and name.lower() != category.lower():
                continue
            for k, v in values.items():
                if k.lower() == wanted:
                    return v
        return None

    def category(self, name: str) -> Mapping[str, str]:
        for cat, values in self.categories.items():
            if cat.lower() == name.lower():
                return values
        return {}

    @property
    def identifiers(self) -> dict[str, str]:
        """kind (lower-case) -> id, from the identifier category."""
        ids = dict(self.category(shapes.DIAG_CATEGORY_IDENTIFIERS_OLD))
        ids.update(self.category(shapes.DIAG_CATEGORY_IDENTIFIERS))
        return {k.lower(): v for k, v in ids.items() if v}

    @property
    def state(self) -> str:
        return normalise_state(self.get("DeviceState"))

    @property
    def connected(self) -> bool | None:
        """``Connectivity``/``Connected``, the one connectivity key a public source names."""
        return _bool(self.get(shapes.DIAG_KEY_CONNECTED))

    def flag(self, key: str) -> bool | None:
        """``key`` read as true/false; ``None`` when absent or neither (e.g. a proposed key)."""
        return _bool(self.get(key))

    def moment(self, key: str) -> datetime | None:
        """``key`` read as a date-time; ``None`` when absent or unreadable."""
        return parse_datetime(self.get(key))

    @property
    def resume_date(self) -> datetime | None:
        return parse_datetime(self.get("ResumeDate"))

    @property
    def last_suspended(self) -> datetime | None:
        return parse_datetime(self.get("LastDateSuspended"))


@dataclass(frozen=True)
class ConnectionEvent:
    """One connection-history record (SDK ``ConnectionEvent``): ``event`` is ``Start`` or ``Stop``.

    A data session opening or closing; ``bytes_used`` is carried by Stop events (Verizon's key
    attributes page), ``None`` when the event has none.
    """

    occurred_at: datetime | None
    event: str
    bytes_used: int | None
    attributes: Mapping[str, str]
    extended_attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: object) -> ConnectionEvent:
        obj = _object(data, "connection event")
        attributes = _key_values(obj.get("connectionEventAttributes"))
        return cls(
            occurred_at=parse_datetime(obj.get("occurredAt")),
            event=attributes.get(shapes.HISTORY_EVENT, ""),
            bytes_used=_int(attributes.get(shapes.HISTORY_BYTES)),
            attributes=attributes,
            extended_attributes=_key_values(obj.get("extendedAttributes")),
        )

    @property
    def is_start(self) -> bool:
        return self.event.strip().lower() == shapes.HISTORY_START.lower()

    @property
    def ip_address(self) -> str:
        """``FramedIpAddress``: the address the session was given, or ``""``."""
        return self.attributes.get(shapes.HISTORY_IP_ADDRESS, "")


@dataclass(frozen=True)
class UsageRecord:
    """One usage-history record (SDK ``Usage``, in ``DeviceUsageListResult``)."""

    timestamp: datetime | None
    bytes_used: int
    sms_used: int
    service_plan: str = ""
    source: str = ""
    extended_attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: object) -> UsageRecord:
        obj = _object(data, "usage record")
        return cls(
            timestamp=parse_datetime(obj.get("timestamp")),
            bytes_used=_int(obj.get("bytesUsed")) or 0,
            sms_used=_int(obj.get("smsUsed")) or 0,
            service_plan=_str(obj.get("servicePlan")),
            source=_str(obj.get("source")),
            extended_attributes=_key_values(obj.get("extendedAttributes")),
        )

    @property
    def mo_sms(self) -> int | None:
        return _int(self.extended_attributes.get("MoSms"))

    @property
    def mt_sms(self) -> int | None:
        return _int(self.extended_attributes.get("MtSms"))

    @property
    def domestic_bytes(self) -> int | None:
        """Data used at home, where ThingSpace splits it (proposed key, see :mod:`shapes`)."""
        return _int(self.extended_attributes.get(shapes.USAGE_DOMESTIC_BYTES))

    @property
    def international_bytes(self) -> int | None:
        return _int(self.extended_attributes.get(shapes.USAGE_INTERNATIONAL_BYTES))

    @property
    def domestic_sms(self) -> int | None:
        return _int(self.extended_attributes.get(shapes.USAGE_DOMESTIC_SMS))

    @property
    def international_sms(self) -> int | None:
        return _int(self.extended_attributes.get(shapes.USAGE_INTERNATIONAL_SMS))


#: provisioning-history ``eventType`` (SDK ``ProvisioningHistory``: "Activate, Suspend, Restore,
#: Deactivate, Device Move") -> the bot's word for it; other spellings are kept lower-cased
_EVENT_TYPES: Final = {
    "activate": "activate",
    "activation": "activate",
    "suspend": "suspend",
    "restore": "restore",
    "resume": "restore",
    "deactivate": "deactivate",
    "deactivation": "deactivate",
    "device move": "move",
    "devicemove": "move",
}


@dataclass(frozen=True)
class ProvisioningEvent:
    """One provisioning-history record (SDK ``ProvisioningHistory``).

    ``action`` is ``activate``, ``suspend``, ``restore``, ``deactivate``, ``move`` (or the
    ``eventType`` lower-cased when it is none of those); ``failed`` is true when ``status`` says
    the event failed (its values are not documented: see ``shapes.HISTORY_FAILED_STATUSES``).
    """

    occurred_at: datetime | None
    event_type: str
    status: str
    event_by: str = ""
    mdn: str = ""
    msisdn: str = ""
    service_plan: str = ""
    extended_attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: object) -> ProvisioningEvent:
        obj = _object(data, "provisioning event")
        return cls(
            occurred_at=parse_datetime(obj.get("occurredAt")),
            event_type=_str(obj.get("eventType")).strip(),
            status=_str(obj.get("status")).strip(),
            event_by=_str(obj.get("eventBy")),
            mdn=_str(obj.get("mdn")),
            msisdn=_str(obj.get("msisdn")),
            service_plan=_str(obj.get("servicePlan")),
            extended_attributes=_key_values(obj.get("extendedAttributes")),
        )

    @property
    def action(self) -> str:
        text = " ".join(self.event_type.lower().replace("_", " ").split())
        return _EVENT_TYPES.get(text) or _EVENT_TYPES.get(text.replace(" ", "")) or text

    @property
    def failed(self) -> bool:
        return self.status.strip().lower() in shapes.HISTORY_FAILED_STATUSES


@dataclass(frozen=True)
class MoSms:
    """One device-originated SMS from ``GET /sms/{account}/history`` (SDK ``SMSMessage``).
    ``wire`` is the message object exactly as it came (what the inbox stores)."""

    device_ids: tuple[DeviceId, ...]
    text: str
    timestamp: datetime | None
    wire: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: object) -> MoSms:
        obj = _object(data, "SMS message")
        ids = obj.get("deviceIds")
        if isinstance(ids, dict):
            ids = [ids]
        return cls(
            device_ids=device_ids_from_wire(ids),
            text=_str(obj.get("message")),
            timestamp=parse_datetime(obj.get("timestamp")),
            wire=dict(obj),
        )


# -- asynchronous requests -------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestAccepted:
    """The synchronous answer of an asynchronous operation: results follow by callback."""

    request_id: str

    @classmethod
    def from_wire(cls, data: object) -> RequestAccepted:
        obj = _object(data, "request answer")
        request_id = _str(obj.get("requestId")).strip()
        if not request_id:
            raise ValueError("the answer has no requestId")
        return cls(request_id=request_id)


def _status(value: object) -> str:
    """``Pending``/``Success``/``Failed``; the SDK's ``Failure`` is read as ``Failed``."""
    text = _str(value).strip()
    lowered = text.lower()
    if lowered in ("failed", "failure", "fail"):
        return "Failed"
    if lowered in ("success", "succeeded", "successful"):
        return "Success"
    if lowered in ("pending", "in progress", "inprogress", "queued"):
        return "Pending"
    return text


@dataclass(frozen=True)
class SubRequest:
    """The per-device part of a v2 request status."""

    device_ids: tuple[DeviceId, ...]
    status: str

    @classmethod
    def from_wire(cls, data: object) -> SubRequest:
        obj = _object(data, "sub-request")
        ids = obj.get("ids")
        if isinstance(ids, dict):  # the SDK models ``ids`` as a single object
            ids = [ids]
        return cls(device_ids=device_ids_from_wire(ids), status=_status(obj.get("status")))


@dataclass(frozen=True)
class RequestStatus:
    """``GET .../requests/{id}/status``: ``Pending``, ``Success`` or ``Failed``.

    Verizon: "Get Request Status" (the SDK's ``RequestStatusEnum`` spells the failure ``Failure``;
    both are read as ``Failed``).
    """

    request_id: str
    status: str
    sub_requests: tuple[SubRequest, ...] = ()

    @classmethod
    def from_wire(cls, data: object) -> RequestStatus:
        obj = _object(data, "request status")
        # The SDK's StatusResponse spells it ``subrequests``, the staging reference page
        # ``subRequests``: read whichever came.
        raw = obj.get("subrequests") if obj.get("subrequests") is not None else obj.get("subRequests")
        subs = tuple(SubRequest.from_wire(s) for s in _list(raw) if isinstance(s, dict))
        return cls(
            request_id=_str(obj.get("requestId")), status=_status(obj.get("status")), sub_requests=subs
        )

    @property
    def pending(self) -> bool:
        return self.status == "Pending"

    @property
    def succeeded(self) -> bool:
        return self.status == "Success"

    @property
    def failed(self) -> bool:
        return self.status == "Failed"


# -- callbacks, account, mismatches ---------------------------------------------------------------


@dataclass(frozen=True)
class CallbackListener:
    """A registered callback listener (SDK ``ConnectivityManagementCallback``).

    The password is never shown in ``repr``.
    """

    account: str
    service: str
    url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def from_wire(cls, data: object) -> CallbackListener:
        obj = _object(data, "callback listener")
        return cls(
            account=_str(obj.get("accountName")),
            service=_str(obj.get("serviceName") or obj.get("name")),
            url=_str(obj.get("url")),
            username=_str(obj.get("username")),
            password=_str(obj.get("password")),
        )


def _names(value: object, key: str) -> tuple[str, ...]:
    """``["a"]`` or ``[{"<key>": "a"}]`` or ``[{"name": "a"}]`` -> ``("a",)``."""
    out: list[str] = []
    for item in _list(value):
        if isinstance(item, dict):
            name = _str(item.get(key) or item.get("name") or item.get("code"))
        else:
            name = _str(item)
        if name:
            out.append(name)
    return tuple(out)


def _plan_sizes(value: object) -> dict[str, int]:
    """``servicePlans[]`` -> {name, code and billing code of each plan: allowance in bytes}.

    ``sizeKb`` arrives as a string of digits (SDK ``CarrierServicePlan``) or a number; a plan
    without a usable size is left out. The first plan to claim a spelling keeps it.
    """
    sizes: dict[str, int] = {}
    for item in _list(value):
        if not isinstance(item, dict):
            continue
        size_kb = _int(item.get("sizeKb"))
        if size_kb is None or size_kb <= 0:
            continue
        for key in ("code", "name", "carrierServicePlanCode"):
            spelling = _str(item.get(key)).strip()
            if spelling:
                sizes.setdefault(spelling, size_kb * 1024)
    return sizes


@dataclass(frozen=True)
class Account:
    """``GET /accounts/{aname}`` (SDK ``AccountDetails``).

    ``plan_sizes`` maps each service plan's code, name and billing code to the data it includes
    (``servicePlans[].sizeKb``, in bytes); :meth:`plan_allowance` looks a line's plan up in it.
    """

    name: str
    number: str = ""
    organization_name: str = ""
    provisioning_allowed: bool | None = None
    carriers: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    service_plans: tuple[str, ...] = ()
    plan_sizes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, data: object) -> Account:
        obj = _object(data, "account")
        return cls(
            name=_str(obj.get("accountName")),
            number=_str(obj.get("accountNumber")),
            organization_name=_str(obj.get("organizationName")),
            provisioning_allowed=_bool(obj.get("isProvisioningAllowed")),
            carriers=_names(obj.get("carriers"), "carriers"),
            features=_names(obj.get("features"), "features"),
            service_plans=_names(obj.get("servicePlans"), "name"),
            plan_sizes=_plan_sizes(obj.get("servicePlans")),
        )

    def plan_allowance(self, plan: str) -> int | None:
        """Bytes included in ``plan`` (a line's ``servicePlan``: code or name, any case), or ``None``."""
        wanted = (plan or "").strip()
        if not wanted:
            return None
        if wanted in self.plan_sizes:
            return self.plan_sizes[wanted]
        folded = wanted.casefold()
        for spelling, size in self.plan_sizes.items():
            if spelling.casefold() == folded:
                return size
        return None


@dataclass(frozen=True)
class ImeiIccidMismatch:
    """A SIM that was activated with other hardware than expected (SDK ``MismatchedDevice``)."""

    account: str
    iccid: str
    mdn: str
    pre_imei: str
    post_imei: str
    activation_date: datetime | None = None
    sim_ota_date: datetime | None = None

    @classmethod
    def from_wire(cls, data: object) -> ImeiIccidMismatch:
        obj = _object(data, "mismatched device")
        return cls(
            account=_str(obj.get("accountName")),
            iccid=_str(obj.get("iccid")),
            mdn=_str(obj.get("mdn")),
            pre_imei=_str(obj.get("preImei")),
            post_imei=_str(obj.get("postImei")),
            activation_date=parse_datetime(obj.get("activationDate")),
            sim_ota_date=parse_datetime(obj.get("simOtaDate")),
        )


def wire_device_list(devices: Sequence[DeviceId]) -> list[dict[str, list[dict[str, str]]]]:
    """``[DeviceId, ...]`` -> ``[{"deviceIds": [{"id", "kind"}]}, ...]`` (AccountDeviceList)."""
    return [{"deviceIds": [d.to_wire()]} for d in devices]
