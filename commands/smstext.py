"""SMS length rules: 160 characters in the GSM 7-bit alphabet, 140 bytes otherwise."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SmsCheck", "check_sms"]

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€\f")  # each takes two septets
LIMIT_7BIT = 160
LIMIT_8BIT = 140


@dataclass(frozen=True)
class SmsCheck:
    ok: bool
    encoding: str  # ThingSpace dataEncoding: "7-bit" or "8-bit-UTF-8"
    size: int
    limit: int
    message: str


def check_sms(text: str) -> SmsCheck:
    if not text.strip():
        return SmsCheck(
            False, "7-bit", 0, LIMIT_7BIT, "The SMS text is empty: put it in quotes after the target."
        )
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        size = sum(2 if c in _GSM7_EXT else 1 for c in text)
        if size <= LIMIT_7BIT:
            return SmsCheck(True, "7-bit", size, LIMIT_7BIT, "")
        return SmsCheck(
            False,
            "7-bit",
            size,
            LIMIT_7BIT,
            f"The SMS is {size} characters long; ThingSpace accepts at most {LIMIT_7BIT} in the GSM 7-bit "
            f"alphabet. Shorten it by {size - LIMIT_7BIT}.",
        )
    size = len(text.encode("utf-8"))
    if size <= LIMIT_8BIT:
        return SmsCheck(True, "8-bit-UTF-8", size, LIMIT_8BIT, "")
    odd = sorted({c for c in text if c not in _GSM7 and c not in _GSM7_EXT})[:5]
    return SmsCheck(
        False,
        "8-bit-UTF-8",
        size,
        LIMIT_8BIT,
        f"The SMS is {size} bytes in UTF-8 (it contains {' '.join(odd)}, outside the GSM 7-bit alphabet); "
        f"ThingSpace accepts at most {LIMIT_8BIT} bytes for 8-bit messages. Shorten it, or use only plain "
        "letters, digits and punctuation for up to 160 characters.",
    )
