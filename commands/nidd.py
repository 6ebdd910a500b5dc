"""``/ts nidd TARGETS "TEXT" | --base64 DATA | --hex DATA [--ttl 1h]``: non-IP data to NB-IoT lines.

The payload is given once: as quoted text (sent as its UTF-8 bytes), as base64, or as hex. It
must be 1 to :data:`MAX_BYTES` bytes (ThingSpace's limit, crate ``thingspace-sdk-rust``
``MAX_NIDD_BYTES``); ``--ttl`` is how long ThingSpace keeps trying while the device sleeps (its
``maximumDeliveryTime``: 2 s to 30 days, default 1 h). Everything else — resolution, the
confirmation card, four eyes above the approval size, the job, the results thread — is the
``sms`` flow of :mod:`commands.actions`.

Only NB-IoT lines with a NIDD plan take NIDD. The bot tells them by the plan in its device
directory (:func:`is_nidd_plan`): ``[nidd] plans`` when set, else any plan whose code or name says
NB-IoT, NBIOT or NIDD. Other lines are refused before anything is sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from bot.core.durations import format_duration, parse_duration
from bot.thingspace.client import NIDD_MAX_BYTES, ThingSpaceClient
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import RequestAccepted
from commands.grammar import Invocation, UsageError

__all__ = ["MAX_BYTES", "is_nidd_plan", "options_for", "submit_nidd"]

MAX_BYTES: Final = NIDD_MAX_BYTES
DEFAULT_TTL: Final = timedelta(hours=1)
MIN_TTL: Final = timedelta(seconds=2)
MAX_TTL: Final = timedelta(days=30)
_SHOWN: Final = 60
_NIDD_WORDS: Final = re.compile(r"nbiot|nidd", re.IGNORECASE)
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def is_nidd_plan(plan: str, plans: Sequence[str] = ()) -> bool:
    """Whether a line on *plan* takes NIDD: listed in *plans* (any case), or — with no list — a
    plan whose code or name says NB-IoT, NBIOT or NIDD."""
    plan = (plan or "").strip()
    if not plan:
        return False
    if plans:
        return plan.casefold() in {p.casefold() for p in plans}
    return bool(_NIDD_WORDS.search(re.sub(r"[^A-Za-z0-9]", "", plan)))


def _usage(message: str) -> UsageError:
    return UsageError(message, verb="nidd")


def _decode(inv: Invocation) -> tuple[bytes, str]:
    """(the data, how it was given: ``text``, ``base64`` or ``hex``)."""
    given = [
        (form, value)
        for form, value in (("base64", inv.options.get("base64")), ("hex", inv.options.get("hex")))
        if value is not None
    ]
    if inv.text:
        given.insert(0, ("text", inv.text))
    if not given:
        raise _usage(
            'The NIDD message is empty: give the data to send as "TEXT" in quotes after the devices, '
            f"or --base64 DATA, or --hex DATA (1 to {MAX_BYTES:,} bytes)."
        )
    if len(given) > 1:
        forms = " and ".join("quoted text" if f == "text" else f"--{f}" for f, _ in given)
        raise _usage(f"Give the data once: {forms} were both given. Use one of them.")
    form, value = given[0]
    if not isinstance(value, str) or not value.strip():
        what = "the text" if form == "text" else f"--{form}"
        raise _usage(f"The NIDD message is empty: {what} has no data. Send 1 to {MAX_BYTES:,} bytes.")
    if form == "text":
        return value.encode("utf-8"), form
    cleaned = "".join(value.split())
    if form == "hex":
        digits = cleaned[2:] if cleaned.lower().startswith("0x") else cleaned
        if len(digits) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
            raise _usage(
                "--hex must be pairs of hexadecimal digits (0-9, a-f), e.g. --hex 48656c6c6f; "
                f"“{cleaned[:_SHOWN]}” is not."
            )
        return bytes.fromhex(digits), form
    if len(cleaned) % 4 or not _BASE64.fullmatch(cleaned):
        raise _usage(
            "--base64 is not valid base64 (A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4 "
            f"characters), e.g. --base64 SGVsbG8=; “{cleaned[:_SHOWN]}” is not."
        )
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise _usage("--base64 is not valid base64, e.g. --base64 SGVsbG8=.") from None
    if not data:
        raise _usage(
            f"The NIDD message is empty: --base64 decodes to no data. Send 1 to {MAX_BYTES:,} bytes."
        )
    return data, form


def _ttl(inv: Invocation) -> timedelta:
    raw = inv.options.get("ttl")
    if raw is None:
        return DEFAULT_TTL
    try:
        ttl = parse_duration(str(raw))
    except ValueError:
        raise _usage(f"--ttl takes a duration such as 30s, 1h or 7d, not “{str(raw)[:_SHOWN]}”.") from None
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise _usage(
            f"--ttl must be between 2 seconds and 30 days (ThingSpace's maximumDeliveryTime), not {format_duration(ttl)}."
        )
    return ttl


def shown(data: bytes) -> str:
    """The data for a card: the text when it is printable UTF-8, else hex (cut at 60 characters)."""
    try:
        text = data.decode("utf-8")
        printable = all(c.isprintable() for c in text)
    except UnicodeDecodeError:
        text, printable = "", False
    out = text if printable else "hex " + data.hex()
    return out if len(out) <= _SHOWN else out[: _SHOWN - 1] + "…"


def options_for(inv: Invocation) -> dict[str, Any]:
    """The pending action's options for a ``nidd`` command, or :class:`UsageError` saying what
    is wrong with the data or the ttl."""
    data, form = _decode(inv)
    if len(data) > MAX_BYTES:
        raise _usage(
            f"The NIDD message is {len(data):,} bytes; ThingSpace takes at most {MAX_BYTES:,}. Send less data."
        )
    ttl = _ttl(inv)
    return {
        "data": base64.b64encode(data).decode("ascii"),
        "form": form,
        "bytes": len(data),
        "ttl": int(ttl.total_seconds()),
        # what the cards, the thread and sms-history show
        "text": shown(data),
    }


def describe(options: Mapping[str, Any]) -> str:
    """``5 bytes (text “ping”), delivered within 1 h`` for cards (the caller escapes)."""
    n = int(options.get("bytes", 0))
    ttl = format_duration(timedelta(seconds=int(options.get("ttl", 0))))
    return f"{n:,} byte{'s' if n != 1 else ''} ({options.get('form', '')} “{options.get('text', '')}”), delivered within {ttl}"


def submit_nidd(
    client: ThingSpaceClient, devices: Sequence[DeviceId], options: Mapping[str, Any]
) -> RequestAccepted:
    data = base64.b64decode(str(options["data"]))
    return client.send_nidd(devices, data, timedelta(seconds=int(options["ttl"])))
