"""Slack's documented Block Kit limits, checked on every payload the stand-in receives.

Slack rejects some payloads outright (``invalid_blocks``) and silently mangles others (a mention of
``<@system>`` shows as a broken link, a message without ``text`` notifies nobody with anything
readable, a ``chat.update`` that keeps its ``block_id`` values may keep stale input state). The
stand-in runs :func:`payload_problems` on every post, update, ephemeral, ``response_url`` reply
and view, and keeps what it found (:meth:`SlackStandIn.limit_problems`), so the end-to-end tests
can assert that nothing the bot sent broke a limit.

Sources: the blocks reference (https://docs.slack.dev/reference/block-kit/blocks: 50 blocks per
message, 100 in modals and App Home), the block and element pages under it (section text 1–3,000
characters, fields at most 10 of 2,000; header 150; context at most 10 elements; actions at most 25;
button text 75 and value 2,000; ``action_id`` and ``block_id`` at most 255 and unique), the
confirmation dialog object (title 100, text 300, confirm/deny 30), the view object (title, submit
and close 24), formatting (https://docs.slack.dev/messaging/formatting-message-text: ``<@U…>``,
``<#C…>``, ``<!subteam^S…>``, ``<!date^…^…|…>``), and ``chat.update`` ("a new ``block_id``
for each update", as the Slack message-update guidance asks, so clients drop stale state).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["payload_problems", "text_problems"]

MAX_BLOCKS = 50
MAX_BLOCKS_VIEW = 100
MAX_TEXT = 3000
MAX_HEADER = 150
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_CONTEXT = 10
MAX_ACTIONS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ID = 255
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_VIEW_TITLE = 24
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_INPUT_LABEL = 2000
MAX_PLACEHOLDER = 150

_ANGLE = re.compile(r"<([^<>]*)>")
_VALID_TOKEN = re.compile(
    r"^(?:@[UW][A-Z0-9]{2,}(?:\|[^|]*)?"
    r"|#[CG][A-Z0-9]{2,}(?:\|[^|]*)?"
    r"|!subteam\^S[A-Z0-9]{2,}(?:\|[^|]*)?"
    r"|!date\^\d+\^[^|^]+(?:\^[^|]+)?\|[^|]+"
    r"|(?:https?|mailto):[^|]+(?:\|[^|]*)?)$"
)


def text_problems(text: str, where: str) -> list[str]:
    """Angle-bracket tokens in *text* that are not a valid user, channel, user-group, date or link."""
    return [
        f"{where}: invalid token <{m.group(1)}>"
        for m in _ANGLE.finditer(text)
        if not _VALID_TOKEN.match(m.group(1))
    ]


def _text_obj(obj: object, where: str, *, limit: int, plain: bool = False) -> list[str]:
    if not isinstance(obj, Mapping):
        return [f"{where}: missing text object"]
    kind = obj.get("type")
    text = obj.get("text")
    out: list[str] = []
    if kind not in ("plain_text", "mrkdwn") or (plain and kind != "plain_text"):
        out.append(f"{where}: text type {kind!r}")
    if not isinstance(text, str) or not text:
        return [*out, f"{where}: empty text"]
    if len(text) > limit:
        out.append(f"{where}: {len(text)} characters (limit {limit})")
    if kind == "mrkdwn":
        out += text_problems(text, where)
    return out


def _confirm(obj: object, where: str) -> list[str]:
    if obj is None:
        return []
    if not isinstance(obj, Mapping):
        return [f"{where}: confirm is not an object"]
    out = _text_obj(obj.get("title"), f"{where}/title", limit=MAX_CONFIRM_TITLE, plain=True)
    out += _text_obj(obj.get("text"), f"{where}/text", limit=MAX_CONFIRM_TEXT)
    for key in ("confirm", "deny"):
        out += _text_obj(obj.get(key), f"{where}/{key}", limit=MAX_CONFIRM_BUTTON, plain=True)
    return out


def _element(element: object, where: str, action_ids: set[str]) -> list[str]:
    if not isinstance(element, Mapping):
        return [f"{where}: not an object"]
    out: list[str] = []
    action_id = element.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or not action_id or len(action_id) > MAX_ID:
            out.append(f"{where}/action_id: must be 1 to {MAX_ID} characters")
        elif action_id in action_ids:
            out.append(f"{where}/action_id: {action_id!r} is not unique")
        else:
            action_ids.add(action_id)
    kind = element.get("type")
    if kind == "button":
        out += _text_obj(element.get("text"), f"{where}/text", limit=MAX_BUTTON_TEXT, plain=True)
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE):
            out.append(f"{where}/value: more than {MAX_BUTTON_VALUE} characters")
        if element.get("style") not in (None, "primary", "danger"):
            out.append(f"{where}/style: {element.get('style')!r}")
    elif kind in ("overflow", "static_select"):
        options = element.get("options")
        if not isinstance(options, list) or not options:
            out.append(f"{where}/options: empty")
        else:
            limit = 5 if kind == "overflow" else 100
            if len(options) > limit:
                out.append(f"{where}/options: {len(options)} (limit {limit})")
            for i, option in enumerate(options):
                if not isinstance(option, Mapping):
                    out.append(f"{where}/options/{i}: not an object")
                    continue
                out += _text_obj(
                    option.get("text"), f"{where}/options/{i}/text", limit=MAX_OPTION_TEXT, plain=True
                )
                value = option.get("value")
                if not isinstance(value, str) or len(value) > MAX_OPTION_VALUE:
                    out.append(f"{where}/options/{i}/value: must be at most {MAX_OPTION_VALUE} characters")
    elif kind == "plain_text_input":
        if element.get("placeholder") is not None:
            out += _text_obj(
                element.get("placeholder"), f"{where}/placeholder", limit=MAX_PLACEHOLDER, plain=True
            )
        max_length = element.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or not 1 <= max_length <= 3000):
            out.append(f"{where}/max_length: {max_length!r}")
    out += _confirm(element.get("confirm"), f"{where}/confirm")
    return out


def _block(block: object, where: str, action_ids: set[str]) -> list[str]:
    if not isinstance(block, Mapping):
        return [f"{where}: not an object"]
    kind = block.get("type")
    out: list[str] = []
    if kind == "section":
        if block.get("text") is None and not block.get("fields"):
            out.append(f"{where}: neither text nor fields")
        if block.get("text") is not None:
            out += _text_obj(block.get("text"), f"{where}/text", limit=MAX_TEXT)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                out.append(f"{where}/fields: more than {MAX_FIELDS}")
            else:
                for i, item in enumerate(fields):
                    out += _text_obj(item, f"{where}/fields/{i}", limit=MAX_FIELD)
        if block.get("accessory") is not None:
            out += _element(block.get("accessory"), f"{where}/accessory", action_ids)
    elif kind == "header":
        out += _text_obj(block.get("text"), f"{where}/text", limit=MAX_HEADER, plain=True)
    elif kind in ("context", "actions"):
        limit = MAX_CONTEXT if kind == "context" else MAX_ACTIONS
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > limit:
            out.append(f"{where}/elements: must be 1 to {limit}")
        else:
            for i, element in enumerate(elements):
                if (
                    kind == "context"
                    and isinstance(element, Mapping)
                    and element.get("type") in ("mrkdwn", "plain_text")
                ):
                    out += _text_obj(element, f"{where}/elements/{i}", limit=MAX_TEXT)
                else:
                    out += _element(element, f"{where}/elements/{i}", action_ids)
    elif kind == "input":
        out += _text_obj(block.get("label"), f"{where}/label", limit=MAX_INPUT_LABEL, plain=True)
        out += _element(block.get("element"), f"{where}/element", action_ids)
    elif kind not in (
        "divider",
        "image",
        "rich_text",
        "markdown",
        "file",
        "video",
        "table",
        "context_actions",
    ):
        out.append(f"{where}: unknown block type {kind!r}")
    return out


def blocks_problems(blocks: Sequence[object], *, limit: int = MAX_BLOCKS, where: str = "blocks") -> list[str]:
    """Every limit broken by *blocks* (block count, texts, elements, ids)."""
    out: list[str] = []
    if len(blocks) > limit:
        out.append(f"{where}: {len(blocks)} blocks (limit {limit})")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        here = f"{where}/{i}"
        out += _block(block, here, action_ids)
        block_id = block.get("block_id") if isinstance(block, Mapping) else None
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id or len(block_id) > MAX_ID:
                out.append(f"{here}/block_id: must be 1 to {MAX_ID} characters")
            elif block_id in block_ids:
                out.append(f"{here}/block_id: {block_id!r} is not unique")
            else:
                block_ids.add(block_id)
    return out


def _ids(blocks: Iterable[object]) -> set[str]:
    return {str(b["block_id"]) for b in blocks if isinstance(b, Mapping) and b.get("block_id")}


def payload_problems(
    method: str,
    payload: Mapping[str, Any],
    *,
    previous_blocks: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """Every Block Kit limit *payload* breaks. *method* is the Web API method, ``response_url`` or
    ``views.open``/``views.update``/``views.publish``. *previous_blocks*: for an update (or a
    ``response_url`` reply replacing the original), the blocks of the version it replaces."""
    if method.startswith("views."):
        view = payload.get("view")
        if not isinstance(view, Mapping):
            return [f"{method}: no view"]
        out = blocks_problems(
            list(view.get("blocks") or []), limit=MAX_BLOCKS_VIEW, where=f"{method}/view/blocks"
        )
        if view.get("type") == "modal":
            for key in ("title", "submit", "close"):
                if view.get(key) is not None or key == "title":
                    out += _text_obj(view.get(key), f"{method}/view/{key}", limit=MAX_VIEW_TITLE, plain=True)
        for key in ("callback_id", "private_metadata"):
            value = view.get(key)
            if isinstance(value, str) and len(value) > (MAX_ID if key == "callback_id" else 3000):
                out.append(f"{method}/view/{key}: too long")
        return out
    if payload.get("delete_original"):
        return []
    blocks = payload.get("blocks")
    blocks = list(blocks) if isinstance(blocks, list) else []
    text = payload.get("text")
    out = blocks_problems(blocks, where=f"{method}/blocks")
    if blocks and not (isinstance(text, str) and text.strip()):
        out.append(f"{method}: blocks without a top-level text fallback")
    if isinstance(text, str):
        out += text_problems(text, f"{method}/text")
    if previous_blocks is not None and blocks:
        kept = _ids(blocks) & _ids(previous_blocks)
        if kept:
            out.append(f"{method}: block_id reused across an update: {sorted(kept)[:3]}")
    return out
