"""Message text for what devices send and for NIDD: MO SMS and NIDD posts, NIDD payloads shown
as text or hex, the NIDD thread replies and ``sms-history`` listings.

Everything read from outside (labels, SMS text, NIDD data, ThingSpace's event fields) goes
through :func:`bot.render.blocks.escape`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from bot.core.redact import mask_id
from bot.render import blocks, times
from bot.render.blocks import Block

__all__ = [
    "device_message_post",
    "nidd_reply",
    "payload_text",
    "sms_event_lines",
    "when",
]

#: hex digits shown of binary NIDD data before "…"
_HEX_SHOWN = 512


def when(moment: datetime, tz: tzinfo) -> str:
    """A date token: the reader's own zone in Slack, the configured zone as the fallback."""
    return times.at(moment, tz, now=datetime.now(UTC))


def payload_text(data: bytes) -> tuple[str, bool]:
    """(how to show *data*, whether it is text): printable UTF-8 as itself, anything else as hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return text, True
    shown = data.hex()
    if len(shown) > _HEX_SHOWN:
        shown = shown[:_HEX_SHOWN] + "…"
    return shown, False


def device_message_post(
    *,
    source: str,
    label: str,
    body: str,
    is_text: bool,
    at: datetime,
    tz: tzinfo,
    in_reply_to: str | None,
    window: str,
) -> tuple[str, list[Block]]:
    """The post for a device-originated SMS or NIDD message (*label* as stored; escaped here).

    *in_reply_to* describes what the bot sent last (None: posted in the ops channel, nothing sent
    within *window*)."""
    label = blocks.escape(label)
    what = "SMS" if source == "sms" else "NIDD data"
    shown = f"“{blocks.escape(body)}”" if is_text else f"`{body}` (hex)"
    if in_reply_to is not None:
        head = f":incoming_envelope: {label} answered by {what}: {shown}"
        tail = f"{what} from the device at {when(at, tz)} · in reply to {in_reply_to}"
    else:
        head = f":incoming_envelope: {label} sent {what}: {shown}"
        tail = f"{what} from the device at {when(at, tz)} · the bot sent it nothing in the last {window}"
    text = blocks.truncate(head, 3000)
    return text, [blocks.section(text), blocks.context(tail)]


def nidd_reply(status: str, detail: Mapping[str, Any], label: str, *, at_text: str) -> str | None:
    """The thread reply for a NIDD outcome (*label* already escaped), or None when the general
    wording fits."""
    if status == "queued":
        return (
            f":inbox_tray: NIDD data for {label} queued at {at_text}: ThingSpace holds it until the "
            "device is reachable (up to the --ttl given)."
        )
    if status == "delivered":
        return f":white_check_mark: NIDD data delivered to {label} at {at_text}."
    return None


def sms_event_lines(events: Sequence[Mapping[str, str]], *, limit: int = 30) -> list[str]:
    """ThingSpace's SMS events (oldest first as sent) as lines, newest first."""
    lines: list[str] = []
    for event in list(reversed(events))[:limit]:
        kind = event.get("smsType", "")
        arrow = {"MoSms": "device → network", "MtSms": "network → device"}.get(kind, kind or "SMS")
        stamp = blocks.escape(event.get("timestamp", "") or "time unknown")
        extra = event.get("sentTo", "")
        to = f" · to {blocks.escape(mask_id(extra))}" if extra else ""
        lines.append(f"• {stamp} · {blocks.escape(arrow)}{to}")
    if len(events) > limit:
        lines.append(f"…and {len(events) - limit:,} older")
    return lines
