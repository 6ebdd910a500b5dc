"""Device identifiers: ``DeviceId(kind, id)``, validated per kind, and parsing of what people type.

ThingSpace names a line by any of its identifiers, ``{"id": "...", "kind": "..."}`` (SDK
``DeviceId``; the formats are listed on Verizon's "Retrieve Device Connection History" and "Get
Device List" pages). The formats checked here:

======== ========================================= ==========================
kind     format                                    example
======== ========================================= ==========================
mdn      10 digits                                 ``mdn:5551234567``
msisdn   11 digits (MDN with country code)         ``msisdn:15551234567``
imei     15 or 16 digits (IMEI / IMEISV)           ``imei:990013907835573``
iccid    19 or 20 digits                           ``iccid:89148000000800139708``
meid     14 hexadecimal characters                 ``meid:A100008385E561``
esn      11 digits, or 8 hexadecimal characters    ``esn:09623489171``
eid      32 digits                                 ``eid:890490320...``
imsi     6 to 15 digits                            ``imsi:311480123456789``
min      10 digits                                 ``min:5551234567``
======== ========================================= ==========================

``kind`` is case-insensitive on input and stored lower-case; hexadecimal ids are stored upper-case.

Parsing user text (:func:`parse_device_id`), decisions:

* ``kind:id`` is always accepted (spaces around the colon are ignored).
* A bare id is accepted when exactly one kind fits its format. Bare ids are matched against every
  kind **except imsi**: an IMSI's 6–15 digits overlap nearly every other kind, so it must be typed
  as ``imsi:…``. Everything else that fits two kinds is ambiguous and refused with an error
  naming the candidates: 10 digits (mdn or min) and 11 digits (msisdn or esn).
* Separators people paste are removed from the id: spaces, ``-``, ``.``, ``(`` and ``)``
  (``555-123-4567``, ``(555) 123 4567``), and a leading ``+`` (``+1 555 123 4567``). Nothing else
  is corrected.

Identifiers that come *from* ThingSpace (:meth:`DeviceId.from_wire`) are taken as sent (kind
lower-cased, id stripped): Verizon is the authority on its own ids, and a real ICCID outside the
documented lengths must not make a device list or a callback unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bot.core.redact import mask_id

__all__ = [
    "BARE_KINDS",
    "KINDS",
    "KIND_EXAMPLES",
    "KIND_FORMATS",
    "DeviceId",
    "InvalidDeviceId",
    "check_digit_problem",
    "luhn_digit",
    "parse_device_id",
]

#: kind -> what a valid id of that kind looks like, for error messages and help.
KIND_FORMATS: Final[dict[str, str]] = {
    "mdn": "10 digits",
    "msisdn": "11 digits (the MDN with country code)",
    "imei": "15 or 16 digits",
    "iccid": "19 or 20 digits",
    "meid": "14 hexadecimal characters",
    "esn": "11 digits or 8 hexadecimal characters",
    "eid": "32 digits",
    "imsi": "6 to 15 digits",
    "min": "10 digits",
}

#: kind -> a well-formed example, shown in error messages.
KIND_EXAMPLES: Final[dict[str, str]] = {
    "mdn": "5551234567",
    "msisdn": "15551234567",
    "imei": "990013907835573",
    "iccid": "89148000000800139708",
    "meid": "A100008385E561",
    "esn": "09623489171",
    "eid": "89049032000001000000012345678901",
    "imsi": "311480123456789",
    "min": "5551234567",
}

#: Every kind this module knows, in the order used in messages.
KINDS: Final = tuple(KIND_FORMATS)

#: Kinds a bare id (no ``kind:`` prefix) may be recognised as; imsi needs its prefix.
BARE_KINDS: Final = tuple(k for k in KINDS if k != "imsi")

_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "mdn": re.compile(r"[0-9]{10}"),
    "msisdn": re.compile(r"[0-9]{11}"),
    "imei": re.compile(r"[0-9]{15,16}"),
    "iccid": re.compile(r"[0-9]{19,20}"),
    "meid": re.compile(r"[0-9A-F]{14}"),
    "esn": re.compile(r"[0-9]{11}|[0-9A-F]{8}"),
    "eid": re.compile(r"[0-9]{32}"),
    "imsi": re.compile(r"[0-9]{6,15}"),
    "min": re.compile(r"[0-9]{10}"),
}
_HEX_KINDS: Final = frozenset({"meid", "esn"})
_SEPARATORS: Final = re.compile(r"[\s\-.()]")
_MAX_INPUT: Final = 100


class InvalidDeviceId(ValueError):
    """The text is not a device identifier; the message says what is accepted.

    ``candidates`` holds the kinds that were possible (several for an ambiguous bare id, none
    when nothing fits).
    """

    def __init__(self, message: str, *, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


def _describe(kinds: tuple[str, ...]) -> str:
    return "; ".join(f"{k}: {KIND_FORMATS[k]}, e.g. {k}:{KIND_EXAMPLES[k]}" for k in kinds)


def _normalise_kind(kind: object) -> str:
    if not isinstance(kind, str) or not kind.strip():
        raise InvalidDeviceId(f"a device identifier needs a kind, one of: {', '.join(KINDS)}")
    return kind.strip().lower()


def _clean(text: str) -> str:
    cleaned = _SEPARATORS.sub("", text)
    return cleaned.removeprefix("+")


def _shown(text: str) -> str:
    """The user's text for an error message: short, and masked if it looks like a real id."""
    text = text.strip()
    if len(text) > 40:
        text = text[:37] + "..."
    digits = sum(c.isdigit() for c in text)
    return mask_id(text) if digits >= 8 else text


@dataclass(frozen=True)
class DeviceId:
    """One identifier of one line. ``DeviceId("ICCID", "8914…")`` stores kind ``iccid``.

    Raises :class:`InvalidDeviceId` when the kind is unknown or the id does not fit its kind.
    """

    kind: str
    id: str

    def __post_init__(self) -> None:
        kind = _normalise_kind(self.kind)
        if kind not in _PATTERNS:
            raise InvalidDeviceId(
                f"{self.kind!r} is not a device id kind; use one of: {', '.join(KINDS)}",
                candidates=(),
            )
        if not isinstance(self.id, str):
            raise InvalidDeviceId(f"a {kind} must be given as text, not {type(self.id).__name__}")
        value = self.id.strip()
        if kind in _HEX_KINDS:
            value = value.upper()
        if not _PATTERNS[kind].fullmatch(value):
            raise InvalidDeviceId(
                f"{_shown(self.id)!r} is not a valid {kind}: expected {KIND_FORMATS[kind]}, "
                f"e.g. {kind}:{KIND_EXAMPLES[kind]}",
                candidates=(kind,),
            )
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "id", value)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> DeviceId:
        """An identifier as ThingSpace sent it: ``{"id": ..., "kind": ...}``, any kind case.

        Only the shape is checked (both present, non-empty text); the id is not held to the
        documented format, see the module docstring. Raises :class:`InvalidDeviceId` otherwise.
        """
        if not isinstance(data, Mapping):
            raise InvalidDeviceId(
                f"a device id must be an object with id and kind, not {type(data).__name__}"
            )
        kind, value = data.get("kind"), data.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise InvalidDeviceId("a device id object has no id")
        normal = _normalise_kind(kind)
        new = object.__new__(cls)
        object.__setattr__(new, "kind", normal)
        object.__setattr__(new, "id", value.strip().upper() if normal in _HEX_KINDS else value.strip())
        return new

    def to_wire(self) -> dict[str, str]:
        """The request form: ``{"id": "8914…", "kind": "iccid"}``."""
        return {"id": self.id, "kind": self.kind}

    def masked(self) -> str:
        """``iccid:…9708``: safe for logs."""
        return f"{self.kind}:{mask_id(self.id)}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def luhn_digit(body: str) -> int:
    """The Luhn check digit that completes the digits *body* (ITU-T E.118 for ICCIDs, 3GPP TS
    23.003 for IMEIs)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def check_digit_problem(device: DeviceId) -> str | None:
    """Why an ICCID (19–20 digits) or IMEI (15 digits) cannot be right — its last digit is not the
    Luhn check digit of the others — or None (other kinds and lengths have no check digit)."""
    value = device.id
    if not value.isdigit():
        return None
    if not (
        (device.kind == "iccid" and len(value) in (19, 20)) or (device.kind == "imei" and len(value) == 15)
    ):
        return None
    expected = luhn_digit(value[:-1])
    if int(value[-1]) == expected:
        return None
    return (
        f"{device.kind}:{mask_id(value)} fails its check digit: an {device.kind.upper()} ends in a Luhn check digit, "
        f"and for these digits it would be {expected}, not {value[-1]}. Check the number for a typo."
    )


def parse_device_id(text: str) -> DeviceId:
    """Parse ``kind:id`` or a bare id whose kind is unambiguous (see the module docstring).

    Raises :class:`InvalidDeviceId` saying which kinds were possible and what each looks like.
    """
    if not isinstance(text, str):
        raise InvalidDeviceId(f"a device identifier must be text, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise InvalidDeviceId(f"no device identifier given; use kind:id, e.g. iccid:{KIND_EXAMPLES['iccid']}")
    if len(stripped) > _MAX_INPUT:
        raise InvalidDeviceId(f"{_shown(stripped)!r} is too long to be a device identifier")
    if ":" in stripped:
        kind_text, _, value = stripped.partition(":")
        kind = kind_text.strip().lower()
        if kind not in _PATTERNS:
            raise InvalidDeviceId(
                f"{kind_text.strip()!r} is not a device id kind; use one of: {', '.join(KINDS)}"
            )
        return DeviceId(kind, _clean(value))
    value = _clean(stripped)
    upper = value.upper()
    fits = tuple(k for k in BARE_KINDS if _PATTERNS[k].fullmatch(upper))
    if len(fits) == 1:
        return DeviceId(fits[0], value)
    if fits:
        raise InvalidDeviceId(
            f"{_shown(stripped)!r} could be {' or '.join(fits)}; say which with a prefix. {_describe(fits)}",
            candidates=fits,
        )
    raise InvalidDeviceId(
        f"{_shown(stripped)!r} does not look like a device identifier. "
        f"Use kind:id or a bare ICCID, IMEI, MEID or EID. Accepted: {_describe(KINDS)}",
        candidates=(),
    )
