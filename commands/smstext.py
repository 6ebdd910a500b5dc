"""SMS length rules for the ``sms`` verb, with messages a person can act on.

The counting itself is :func:`bot.thingspace.sms.sms_length`, the same the client and the sandbox
use: 160 septets in the GSM 7-bit alphabet (extension characters count two), 140 bytes in
8-bit UTF-8 for anything outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.thingspace.sms import GSM7_BASIC, GSM7_EXTENDED, SmsTextError, sms_length

__all__ = ["SmsCheck", "check_sms"]


@dataclass(frozen=True)
class SmsCheck:
    ok: bool
    encoding: str  # ThingSpace dataEncoding: "7-bit" or "8-bit-UTF-8"
    size: int
    limit: int
    message: str


def check_sms(text: str) -> SmsCheck:
    if not text.strip():
        return SmsCheck(False, "7-bit", 0, 160, "The SMS text is empty: put it in quotes after the target.")
    try:
        size, limit = sms_length(text, "7-bit")
    except SmsTextError:
        size, limit = sms_length(text, "8-bit-UTF-8")
        if size <= limit:
            return SmsCheck(True, "8-bit-UTF-8", size, limit, "")
        odd = sorted({c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED})[:5]
        return SmsCheck(
            False,
            "8-bit-UTF-8",
            size,
            limit,
            f"The SMS is {size} bytes in UTF-8 (it contains {' '.join(odd)}, outside the GSM 7-bit alphabet); "
            f"ThingSpace accepts at most {limit} bytes for 8-bit messages. Shorten it by {size - limit} "
            "bytes, or use only plain letters, digits and punctuation for up to 160 characters.",
        )
    if size <= limit:
        return SmsCheck(True, "7-bit", size, limit, "")
    return SmsCheck(
        False,
        "7-bit",
        size,
        limit,
        f"The SMS is {size} characters long; ThingSpace accepts at most {limit} in the GSM 7-bit "
        f"alphabet. Shorten it by {size - limit}.",
    )
