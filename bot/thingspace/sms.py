"""How long an SMS is for ThingSpace: GSM 7-bit septets or 8-bit units.

Verizon: "Send SMS Messages to Devices"; SDK ``SMSSendRequest``.

``smsMessage`` may hold 160 units in ``7-bit`` (the default) and 140 in the 8-bit encodings. In
7-bit every character of the GSM 03.38 basic alphabet is one septet and each character of its
extension table (``^ { } \\ [ ~ ] | €`` and form feed) is two; other characters cannot be sent
in 7-bit at all. ``8-bit-UTF-8`` counts bytes, ``8-bit-ASCII`` accepts ASCII only.
"""

from __future__ import annotations

from typing import Final

__all__ = ["GSM7_BASIC", "GSM7_EXTENDED", "SMS_ENCODINGS", "SmsTextError", "sms_length"]

#: ``dataEncoding`` value -> the longest message ThingSpace accepts, in that encoding's units.
SMS_ENCODINGS: Final[dict[str, int]] = {
    "7-bit": 160,
    "8-bit-ASCII": 140,
    "8-bit-UTF-8": 140,
    "8-bit-DATA": 140,
}

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED: Final = frozenset("^{}\\[~]|€\f")


class SmsTextError(ValueError):
    """The text cannot be sent in the chosen encoding; the message says why and what to use."""


def sms_length(text: str, encoding: str = "7-bit") -> tuple[int, int]:
    """``(length in the encoding's units, the limit)``; raises :class:`SmsTextError` when the text
    cannot be encoded (a non-GSM character in 7-bit, non-ASCII in 8-bit-ASCII) or the encoding is
    unknown."""
    if encoding not in SMS_ENCODINGS:
        raise SmsTextError(f"unknown SMS encoding {encoding!r}; use one of: {', '.join(SMS_ENCODINGS)}")
    limit = SMS_ENCODINGS[encoding]
    if encoding == "7-bit":
        length = 0
        for char in text:
            if char in GSM7_BASIC:
                length += 1
            elif char in GSM7_EXTENDED:
                length += 2
            else:
                raise SmsTextError(
                    f"{char!r} is not in the GSM 7-bit alphabet; send it with encoding 8-bit-UTF-8"
                )
        return length, limit
    if encoding == "8-bit-ASCII":
        if not text.isascii():
            raise SmsTextError("8-bit-ASCII messages may contain ASCII characters only; use 8-bit-UTF-8")
        return len(text), limit
    if encoding == "8-bit-UTF-8":
        return len(text.encode("utf-8")), limit
    return len(text.encode("latin-1", "replace")), limit
