"""Block Kit as plain terminal text, for ``tsbot demo``.

``render_blocks(blocks)`` turns a message's blocks into lines: headers, section text and
fields (two columns), context, dividers, images (alt text), rich text, and buttons as
``[ Confirm ] (primary)  [ Cancel ]``. mrkdwn is kept mostly as written; only Slack's angle
bracket escapes are made readable (``<url|label>`` -> ``label``, ``<@U123>`` -> ``@U123``).
``render_message(event)`` adds a first line saying where the message is and what happened::

    #C0OPS › thread 1732550000.000100 · updated
      Suspended …9708 until 2026-12-02.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.console.records import Message, StandInEvent

__all__ = ["mrkdwn_to_text", "render_blocks", "render_message"]

_ANGLE = re.compile(r"<([^<>]+)>")
_DIVIDER = "─" * 40
_FIELD_COLUMN = 38
_INDENT = "  "


def _angle(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!subteam^"):
        return label or "@" + target[len("!subteam^") :]
    if target.startswith("!date^"):
        return label or target.split("^")[1]
    if target.startswith("!"):
        return "@" + target[1:]
    return label or target


#: The emoji shortcodes the bot uses, as a terminal shows them.
EMOJI = {
    "warning": "⚠️",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "red_circle": "🔴",
    "white_circle": "⚪",
    "white_check_mark": "✅",
    "satellite_antenna": "📡",
    "hourglass_flowing_sand": "⏳",
    "incoming_envelope": "📨",
    "package": "📦",
    "inbox_tray": "📥",
    "globe_with_meridians": "🌐",
    "scroll": "📜",
    "hourglass": "⌛",
    "no_entry": "⛔",
    "double_vertical_bar": "⏸",
    "arrow_forward": "▶️",
    "x": "❌",
    "information_source": "ℹ️",
    "alarm_clock": "⏰",
    "heavy_minus_sign": "➖",
    "grey_question": "❔",
    "eyes": "👀",
    "busts_in_silhouette": "👥",
    "zzz": "💤",
    "speech_balloon": "💬",
    "rotating_light": "🚨",
    "outbox_tray": "📤",
    "no_bell": "🔕",
    "crescent_moon": "🌙",
    "bar_chart": "📊",
}
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")


def mrkdwn_to_text(text: str) -> str:
    """Slack mrkdwn made readable: links, mentions, emoji shortcodes and ``&lt;``-style escapes."""
    converted = _ANGLE.sub(_angle, text)
    converted = _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), converted)
    return converted.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: object) -> str:
    """A text object (plain_text or mrkdwn) as readable text."""
    if isinstance(obj, Mapping):
        text = str(obj.get("text", ""))
        return mrkdwn_to_text(text) if obj.get("type") == "mrkdwn" else text
    if isinstance(obj, str):
        return mrkdwn_to_text(obj)
    return ""


def _element(element: Mapping[str, Any]) -> str:
    """An interactive element or context element as a short inline token."""
    kind = element.get("type")
    if kind == "button":
        token = f"[ {_text(element.get('text'))} ]"
        if element.get("style"):
            token += f" ({element['style']})"
        if element.get("url"):
            token += f" → {element['url']}"
        return token
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("plain_text", "mrkdwn"):
        return _text(element)
    if kind == "overflow":
        return "[ ⋯ ]"
    placeholder = _text(element.get("placeholder")) or str(kind or "element").replace("_", " ")
    return f"[ {placeholder} ▾ ]"


def _fields(fields: Sequence[object]) -> list[str]:
    cells = [" ".join(_text(f).split("\n")) for f in fields]
    width = min(max((len(c) for c in cells[0::2]), default=0), _FIELD_COLUMN)
    lines = []
    for index in range(0, len(cells), 2):
        pair = cells[index : index + 2]
        lines.append((pair[0].ljust(width) + "   " + pair[1]).rstrip() if len(pair) == 2 else pair[0])
    return lines


def _rich_inline(elements: Iterable[object]) -> str:
    parts: list[str] = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        if kind == "text":
            parts.append(str(element.get("text", "")))
        elif kind == "link":
            parts.append(str(element.get("text") or element.get("url", "")))
        elif kind == "user":
            parts.append("@" + str(element.get("user_id", "")))
        elif kind == "usergroup":
            parts.append("@" + str(element.get("usergroup_id", "")))
        elif kind == "channel":
            parts.append("#" + str(element.get("channel_id", "")))
        elif kind == "emoji":
            parts.append(f":{element.get('name', '')}:")
        elif kind == "broadcast":
            parts.append("@" + str(element.get("range", "here")))
        elif kind == "date":
            parts.append(str(element.get("fallback") or element.get("timestamp", "")))
    return "".join(parts)


def _rich_text(block: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for element in block.get("elements") or ():
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        inner = element.get("elements") or ()
        if kind == "rich_text_section":
            lines.extend(_rich_inline(inner).split("\n"))
        elif kind == "rich_text_preformatted":
            lines.extend(["```", *_rich_inline(inner).split("\n"), "```"])
        elif kind == "rich_text_quote":
            lines.extend("> " + line for line in _rich_inline(inner).split("\n"))
        elif kind == "rich_text_list":
            indent = "  " * int(element.get("indent", 0) or 0)
            ordered = element.get("style") == "ordered"
            for number, item in enumerate(inner, start=1):
                if isinstance(item, Mapping):
                    bullet = f"{number}." if ordered else "•"
                    lines.append(f"{indent}{bullet} {_rich_inline(item.get('elements') or ())}")
    return lines


def _block(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        return [f"== {_text(block.get('text'))} =="]
    if kind == "divider":
        return [_DIVIDER]
    if kind == "section":
        lines: list[str] = []
        if block.get("text") is not None:
            lines.extend(_text(block.get("text")).split("\n"))
        lines.extend(_fields(block.get("fields") or ()))
        accessory = block.get("accessory")
        if isinstance(accessory, Mapping):
            lines.append(_element(accessory))
        return lines
    if kind == "context":
        parts = [_element(e) for e in block.get("elements") or () if isinstance(e, Mapping)]
        return "  ".join(parts).split("\n")
    if kind == "actions":
        return ["  ".join(_element(e) for e in block.get("elements") or () if isinstance(e, Mapping))]
    if kind == "image":
        title = _text(block.get("title"))
        return [f"[image: {block.get('alt_text', '')}]" + (f" {title}" if title else "")]
    if kind == "rich_text":
        return _rich_text(block)
    if kind == "markdown":
        return str(block.get("text", "")).split("\n")
    if kind == "input":
        return [f"[input: {_text(block.get('label'))}]"]
    return [f"[{kind}]"]


def render_blocks(blocks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The lines a reader would see for ``blocks``."""
    lines: list[str] = []
    for block in blocks:
        lines.extend(_block(block))
    return lines


def _status(kind: str, message: Message) -> str:
    words = {"post": "new", "update": "updated", "delete": "deleted", "ephemeral": "new", "response": "new"}
    status = words.get(kind, kind)
    if message.ephemeral:
        status += f" · only @{message.user} sees this"
    return status


def render_message(event: StandInEvent | Message) -> str:
    """A header line (channel, thread, what happened) and the message's body, indented."""
    if isinstance(event, StandInEvent):
        message, kind = event.message, event.kind
    else:
        message, kind = event, "update" if event.updated else "post"
    if message.deleted:
        kind = "delete"
    where = f"thread {message.thread_ts}" if message.thread_ts else message.ts
    head = f"#{message.channel} › {where} · {_status(kind, message)}"
    if kind == "delete":
        return head
    body = render_blocks(message.blocks) if message.blocks else mrkdwn_to_text(message.text).split("\n")
    return "\n".join([head, *(_INDENT + line if line else "" for line in body)])
