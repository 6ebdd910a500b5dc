"""Block Kit building blocks: small pure functions returning dicts within Slack's limits.

Limits (Slack: "Blocks" reference and "Confirmation dialog object"): 50 blocks per message,
section text ≤ 3000 characters, ≤ 10 fields, button text ≤ 75, confirm dialog title ≤ 100 /
text ≤ 300. Helpers truncate rather than
let Slack reject a message at 3 a.m.

Text people typed (a reason, an SMS, a search) and text from outside (a device label, an error
message from ThingSpace) goes into ``mrkdwn`` and into a message's ``text`` only through
:func:`escape`, so ``<!channel>`` or ``<https://evil|runbook>`` shows as those characters instead
of pinging the channel or hiding a link. :func:`from_slack` is the way in: what Slack sends for a
slash command (``should_escape``) back to what the person typed. ``plain_text`` objects (headers,
button labels, dialog titles) are never parsed by Slack and take text as it is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MAX_BLOCKS",
    "actions",
    "button",
    "context",
    "divider",
    "escape",
    "fields",
    "from_slack",
    "header",
    "limit_blocks",
    "progress_bar",
    "section",
    "truncate",
]

Block = dict[str, Any]
_serial = itertools.count(1)
MAX_BLOCKS = 50


#: Slack's formatting in command text: ``<!channel>``, ``<!subteam^S…|@team>``, links and
#: ``mailto:``. Mentions of users and channels and ``tel:`` links are left for the parsers
#: (``--user <@U…>``, ``--channel <#C…>``, phone numbers as targets).
_SLACK_FORMAT = re.compile(r"<(![^<>|]*|(?:https?|mailto):[^<>|]*)(?:\|([^<>]*))?>")


#: Characters that change what readers see without being seen: bidirectional embeddings,
#: overrides and isolates (Unicode UAX #9; "Trojan Source", CVE-2021-42574), and control
#: characters other than tab and newline. :func:`escape` shows each as U+FFFD.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """*text* shown literally in mrkdwn or a message's ``text``: ``&``, ``<`` and ``>`` escaped,
    the only three characters Slack's parser gives a meaning to, and every bidirectional override
    or control character (:data:`_HIDDEN`) shown as U+FFFD, so ``U+202E`` cannot reverse the
    rest of a line.

    The one way outside text (what people typed, what ThingSpace sent: labels, groups, custom
    fields, plan names, fault messages) enters mrkdwn."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _HIDDEN.sub("\ufffd", text)


def from_slack(text: str) -> str:
    """What the person typed, from command text as Slack sends it.

    Slack turns what people type into its own markup before sending it (``@channel`` becomes
    ``<!channel>``, a URL becomes ``<https://…>`` or ``<https://…|label>``) and escapes the
    ``&``, ``<`` and ``>`` they typed literally. Special mentions become ``@name`` again, links
    their label (or address), and the escapes the characters; so ``&lt;!here&gt;`` typed by hand
    stays the text ``<!here>``, which :func:`escape` keeps literal wherever it is shown. A link whose
    label is not its address keeps both (``runbook (https://…)``), so the address reaches the post
    and the audit log.
    """

    def typed(m: re.Match[str]) -> str:
        inner, label = m.group(1), m.group(2)
        if inner.startswith("!"):
            if label:
                return label if label.startswith("@") or not inner[1:].isalpha() else f"@{label}"
            return "@" + inner[1:].split("^", 1)[0]
        address = inner.removeprefix("mailto:")
        # a link keeps its address as text: "runbook (https://…)" unless the label is the address
        if label and label not in (inner, address, inner.split("://", 1)[-1]):
            return f"{label} ({address})"
        return label or address

    converted = _SLACK_FORMAT.sub(typed, text)
    return converted.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def channel_ref(channel: str) -> str:
    """A channel as Slack renders a link to it (``<#C…>``); a DM or an unknown id as words, since
    ``<#D…>`` is no channel mention."""
    return f"<#{channel}>" if channel[:1] in ("C", "G") else "that conversation"


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


def static_select(placeholder: str, action_id: str, options: Sequence[tuple[str, str]]) -> Block:
    """A menu of ``(text, value)`` options (at most 100; text 75, value 150 characters), with the
    same serial action id as :func:`button`."""
    return {
        "type": "static_select",
        "placeholder": {"type": "plain_text", "text": truncate(placeholder, 150), "emoji": True},
        "action_id": f"{action_id}:{next(_serial)}",
        "options": [
            {"text": {"type": "plain_text", "text": truncate(text, 75), "emoji": True}, "value": value[:150]}
            for text, value in options[:100]
        ],
    }


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
