"""Device identifiers as the API takes them: ``{"id": "...", "kind": "..."}``, validated per kind.

Formats follow Verizon's identifier tables (SDK ``DeviceId``; "Retrieve Device Connection
History"): ``kind`` is accepted in any letter case, ids must be JSON
strings (leading zeros matter), and an id that does not fit its kind is refused with
``INPUT_INVALID.Device.Identifier.Invalid`` naming what the kind looks like.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, Final

from bot.sandbox.errors import (
    DEVICE_KIND_INVALID,
    ID_INVALID,
    REQUEST_UNDEFINED,
    field_null,
    thingspace_error,
)

__all__ = [
    "ALL_KINDS",
    "CANCEL_LOCATION_KINDS",
    "DIAGNOSTICS_KINDS",
    "REACHABILITY_KINDS",
    "check_device_id",
    "device_entries",
    "normalize",
]

_FORMATS: Final[dict[str, tuple[re.Pattern[str], str]]] = {
    "esn": (re.compile(r"[0-9]{11}|[0-9A-F]{8}"), "11 decimal digits or 8 hex digits"),
    "meid": (re.compile(r"[0-9A-F]{14}"), "14 hex digits"),
    "imei": (re.compile(r"[0-9]{15,16}"), "15 or 16 decimal digits"),
    "iccid": (re.compile(r"[0-9]{19,20}"), "19 or 20 decimal digits"),
    "mdn": (re.compile(r"[0-9]{10}"), "10 decimal digits"),
    "msisdn": (re.compile(r"[0-9]{11}"), "11 decimal digits (the MDN with its country code)"),
    "eid": (re.compile(r"[0-9]{32}"), "32 decimal digits"),
    "imsi": (re.compile(r"[0-9]{6,15}"), "up to 15 decimal digits"),
    "min": (re.compile(r"[0-9]{10}"), "10 decimal digits"),
}

ALL_KINDS: Final = frozenset(_FORMATS)
DIAGNOSTICS_KINDS: Final = frozenset({"iccid", "imei", "mdn", "meid", "msisdn"})
REACHABILITY_KINDS: Final = frozenset({"imei", "mdn", "msisdn", "iccid"})
CANCEL_LOCATION_KINDS: Final = frozenset({"imei", "iccid", "mdn", "imsi", "eid", "msisdn", "min"})


def normalize(kind: str, value: str) -> tuple[str, str]:
    """Lower-case the kind; upper-case hex ids so lookups match whatever case was sent."""
    kind = kind.strip().lower()
    value = value.strip()
    if kind in ("meid", "esn"):
        value = value.upper()
    return kind, value


def check_device_id(
    obj: Any, *, allowed: Collection[str] = ALL_KINDS, field: str = "deviceId"
) -> tuple[str, str]:
    """Validate one ``{"id", "kind"}`` object and return ``(kind, id)`` normalised.

    Raises :class:`ApiError` (400) with the ThingSpace code for a missing field, an unknown or
    unaccepted kind, or an id that does not match its kind.
    """
    if not isinstance(obj, dict):
        raise thingspace_error(
            ID_INVALID, f'{field} must be an object like {{"id": "...", "kind": "iccid"}}.'
        )
    kind_raw, id_raw = obj.get("kind"), obj.get("id")
    if kind_raw is None or kind_raw == "":
        raise field_null(f"{field}.kind")
    if id_raw is None or id_raw == "":
        raise field_null(f"{field}.id")
    if not isinstance(kind_raw, str):
        raise thingspace_error(DEVICE_KIND_INVALID, f"{field}.kind must be a string.")
    if not isinstance(id_raw, str):
        raise thingspace_error(
            ID_INVALID,
            f"{field}.id must be a JSON string (leading zeros matter), not {type(id_raw).__name__}.",
        )
    kind, value = normalize(kind_raw, id_raw)
    if kind not in ALL_KINDS:
        raise thingspace_error(
            DEVICE_KIND_INVALID,
            f"Unknown device kind {kind_raw!r}; use one of {', '.join(sorted(ALL_KINDS))}.",
        )
    if kind not in allowed:
        raise thingspace_error(
            DEVICE_KIND_INVALID,
            f"Device kind {kind_raw!r} is not accepted here; use one of {', '.join(sorted(allowed))}.",
        )
    pattern, shape = _FORMATS[kind]
    if not pattern.fullmatch(value):
        raise thingspace_error(ID_INVALID, f"{kind.upper()} must be {shape}; got {len(value)} characters.")
    return kind, value


def device_entries(devices: Any, *, field: str = "devices") -> list[Any]:
    """Unwrap an ``AccountDeviceList[]`` (``[{"deviceIds": [...]}]``) into its first id objects.

    Only one identifier per device is needed (Verizon: "Suspend Devices"); the first one given is used.
    """
    if not isinstance(devices, list):
        raise thingspace_error(REQUEST_UNDEFINED, f'{field} must be a list like [{{"deviceIds": [...]}}].')
    entries: list[Any] = []
    for position, entry in enumerate(devices):
        ids = entry.get("deviceIds") if isinstance(entry, dict) else None
        if not isinstance(ids, list) or not ids:
            raise field_null(f"{field}[{position}].deviceIds")
        entries.append(ids[0])
    return entries
