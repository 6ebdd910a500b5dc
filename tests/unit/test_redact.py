"""Identifier masking for logs: the last four digits only, request ids and dates left readable."""

from __future__ import annotations

import uuid

import pytest

from bot.core.redact import mask_id, mask_secret, mask_text


@pytest.mark.parametrize(
    ("text", "hidden", "shown"),
    [
        ("iccid 89148000000800139708 failed", "89148000000800139708", "…9708"),
        ("mdn:5551234567", "5551234567", "…4567"),
        ("imei 990013907835573", "990013907835573", "…5573"),
        ("meid A100008385E561", "A100008385E561", "…E561"),
        ("call 555-123-4567 now", "555-123-4567", "…4567"),
        ("call (555) 123-4567 now", "123-4567", "…4567"),
        ("call +1 555.123.4567", "555.123.4567", "…4567"),
        ("imei 35-209900-176148-1 changed", "209900-176148", "…1481"),
        ("iccid 8914 8000 0008 0013 9708.", "8914 8000 0008 0013", "…9708"),
        ("imei 35.209900.176148.1", "209900.176148", "…1481"),
    ],
)
def test_identifiers_are_masked(text: str, hidden: str, shown: str) -> None:
    """Phone numbers, ICCIDs, IMEIs and MEIDs keep only their last four characters."""
    masked = mask_text(text)
    assert hidden not in masked and shown in masked


def test_request_ids_dates_and_times_stay_readable() -> None:
    """UUIDs (even with an all-digit first block), dates and times are not identifiers."""
    request_id = "12345678-c31c-4552-8670-020a1545a84d"
    text = f"request {request_id} at 2026-11-25 18:06:12 from 192.168.100.200 took 1234 ms (v1.2.3)"
    assert mask_text(text) == text
    for _ in range(200):
        value = str(uuid.uuid4())
        assert mask_text(value) == value


def test_short_values_and_secrets() -> None:
    """Short values are hidden whole; secrets are only said to be set or not."""
    assert mask_id("123") == "…"
    assert mask_secret("x") == "(set)" and mask_secret("") == "(empty)"
