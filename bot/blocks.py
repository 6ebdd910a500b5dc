"""Block Kit building blocks: small pure functions returning dicts within Slack's limits.

Limits (chatops-anchors.md §4): 50 blocks per message, section text ≤ 3000 characters, ≤ 10
fields, button text ≤ 75, confirm dialog title ≤ 100 / text ≤ 300. Helpers truncate rather than
let Slack reject a message at 3 a.m.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_BLOCKS",
    "actions",
    "button",
    "context",
    "divider",
    "fields",
    "header",
    "limit_blocks",
    "progress_bar",
    "section",
    "truncate",
]

Block = dict[str, Any]
_serial = itertools.count(1)
MAX_BLOCKS = 50


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": truncate(text, 150), "emoji": True}}


def section(text: str, *, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}
    if accessory:
        block["accessory"] = accessory
    return block


def fields(pairs: Sequence[tuple[str, str]]) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": truncate(f"*{k}*\n{v}", 2000)} for k, v in pairs[:10]],
    }


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(t, 3000)} for t in texts[:10]],
    }


def divider() -> Block:
    return {"type": "divider"}


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: str | None = None,
    confirm: tuple[str, str, str] | None = None,
) -> Block:
    """A button; *confirm* is (title, text, confirm label) for Slack's own confirm dialog.

    Slack requires action ids to be unique within a message, so each button gets a serial
    suffix: ``ts:run`` becomes ``ts:run:17``. Handlers route on the first two parts.
    """
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, 75), "emoji": True},
        "action_id": f"{action_id}:{next(_serial)}",
        "value": truncate(value, 2000),
    }
    if style:
        element["style"] = style
    if confirm:
        title, body, ok = confirm
        element["confirm"] = {
            "title": {"type": "plain_text", "text": truncate(title, 100)},
            "text": {"type": "mrkdwn", "text": truncate(body, 300)},
            "confirm": {"type": "plain_text", "text": truncate(ok, 30)},
            "deny": {"type": "plain_text", "text": "Back"},
            "style": "danger" if style == "danger" else "primary",
        }
    return element


def actions(*elements: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:25])}
    if block_id:
        block["block_id"] = block_id
    return block


def limit_blocks(blocks: list[Block], *, more_text: str = "…and more (list truncated)") -> list[Block]:
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    return [*blocks[: MAX_BLOCKS - 1], context(more_text)]


def progress_bar(done: int, total: int, *, failed: int = 0, width: int = 10) -> str:
    """``▓▓▓▓▓▓░░░░ 62% · 2,480 of 4,000 · 12 failed``."""
    share = 0.0 if total <= 0 else min(done / total, 1.0)
    filled = round(share * width)
    text = f"{'▓' * filled}{'░' * (width - filled)} {int(share * 100)}% · {done:,} of {total:,}"
    if failed:
        text += f" · {failed:,} failed"
    return text
