"""Masking of device identifiers and secrets for logs and exports.

MDNs, MSISDNs, ICCIDs, IMEIs, IMSIs and EIDs are personal data: logs show only the last four
digits (``…9708``). Secrets are never logged at all; :func:`mask_secret` exists for the rare
message that must say *which* secret is wrong.
"""

from __future__ import annotations

import re

__all__ = ["mask_id", "mask_secret", "mask_text"]

# 8+ consecutive hex/decimal characters that contain at least 8 digits: phone numbers, ICCIDs,
# IMEIs, IMSIs, MEIDs, EIDs. Request ids (UUIDs) are split by hyphens and stay readable.
_LONG_ID = re.compile(
    r"(?<![0-9A-Za-z-])(?=(?:[A-Fa-f]*\d){8})[0-9A-Fa-f]{8,32}(?![0-9A-Za-z])(?!-[0-9A-Fa-f]{4}-)"
)
# North American numbers as people write them: 555-123-4567, (555) 123-4567, +1 555.123.4567
_PHONE = re.compile(r"(?<![\w-])(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\w-])")
# IMEIs and ICCIDs in groups with one kind of separator: 35-209900-176148-1, 8914 8000 0008 0013 9708
_GROUPED = re.compile(r"(?<![\w.-])\d{1,8}([ .-])\d{1,8}(?:\1\d{1,8})+(?![\w-])")
_GROUPED_MIN_DIGITS = 14  # fewer is a date, a time or an address, not a device id


def _grouped(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return mask_id(digits) if len(digits) >= _GROUPED_MIN_DIGITS else match.group(0)


def mask_id(value: str) -> str:
    """``89148000000800139708`` -> ``…9708``; short values are fully hidden."""
    value = str(value)
    if len(value) <= 4:
        return "…"
    return "…" + value[-4:]


def mask_secret(value: str) -> str:
    """Say whether a secret is set, never what it is."""
    return "(set)" if value else "(empty)"


def mask_text(text: str) -> str:
    """Mask every identifier-looking run of digits in free text (log messages, errors)."""
    text = _PHONE.sub(lambda m: mask_id(re.sub(r"\D", "", m.group(0))), text)
    text = _GROUPED.sub(_grouped, text)
    return _LONG_ID.sub(lambda m: mask_id(m.group(0)), text)
