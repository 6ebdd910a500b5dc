"""Block Kit checks the stand-in applies, the way Slack rejects a message with ``invalid_blocks``.

Not the whole of Block Kit: the limits a bot is likely to hit (block count, section text and
fields, header length, button text/value/style, duplicate ids, unknown block types). Each
problem is reported as Slack reports it in ``response_metadata.messages``:
``[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BLOCK_TYPES",
    "MAX_BLOCKS_HOME",
    "MAX_BLOCKS_MESSAGE",
    "BlocksFormatError",
    "assign_block_ids",
    "parse_blocks",
    "validate_blocks",
]

MAX_BLOCKS_MESSAGE = 50
MAX_BLOCKS_HOME = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_MARKDOWN_TEXT = 12000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ID = 255

#: Block types Slack accepts in messages and App Home views.
BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
_BUTTON_STYLES = frozenset({"primary", "danger"})


class BlocksFormatError(ValueError):
    """``blocks`` is not a JSON array of objects (Slack: ``invalid_blocks_format``)."""


def parse_blocks(value: object) -> list[dict[str, Any]]:
    """Accept blocks as a list or as a JSON string (form bodies carry them encoded)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise BlocksFormatError(f"blocks is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise BlocksFormatError("blocks must be an array")
    if not all(isinstance(block, dict) for block in value):
        raise BlocksFormatError("every block must be an object")
    return copy.deepcopy(value)


def _error(message: str, pointer: str) -> str:
    return f"[ERROR] {message} [json-pointer:{pointer}]"


def _check_text(
    obj: object, pointer: str, *, limit: int, plain_only: bool = False, required: bool = True
) -> list[str]:
    if obj is None:
        return [_error("missing required field: text", pointer)] if required else []
    if not isinstance(obj, Mapping):
        return [_error("must be a text object", pointer)]
    kind = obj.get("type")
    if kind not in _TEXT_TYPES or (plain_only and kind != "plain_text"):
        allowed = "plain_text" if plain_only else "plain_text, mrkdwn"
        return [_error(f"must be one of [{allowed}]", f"{pointer}/type")]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [_error("must be more than 0 characters", f"{pointer}/text")]
    if len(text) > limit:
        return [_error(f"must be less than {limit + 1} characters", f"{pointer}/text")]
    return []


def _check_button(element: Mapping[str, Any], pointer: str) -> list[str]:
    problems = _check_text(element.get("text"), f"{pointer}/text", limit=MAX_BUTTON_TEXT, plain_only=True)
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > MAX_ID):
        problems.append(_error(f"must be a string of at most {MAX_ID} characters", f"{pointer}/action_id"))
    value = element.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE):
        problems.append(
            _error(f"must be a string of at most {MAX_BUTTON_VALUE} characters", f"{pointer}/value")
        )
    style = element.get("style")
    if style is not None and style not in _BUTTON_STYLES:
        problems.append(_error("must be one of [primary, danger]", f"{pointer}/style"))
    return problems


def _check_element_ids(elements: Sequence[object], pointer: str) -> list[str]:
    seen: set[str] = set()
    problems: list[str] = []
    for index, element in enumerate(elements):
        if not isinstance(element, Mapping):
            problems.append(_error("must be an object", f"{pointer}/{index}"))
            continue
        action_id = element.get("action_id")
        if isinstance(action_id, str):
            if action_id in seen:
                problems.append(_error("action_id must be unique", f"{pointer}/{index}/action_id"))
            seen.add(action_id)
        if element.get("type") == "button":
            problems.extend(_check_button(element, f"{pointer}/{index}"))
    return problems


def _check_block(block: Mapping[str, Any], pointer: str) -> list[str]:
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        return [_error(f"unsupported type: {kind!r}", f"{pointer}/type")]
    problems: list[str] = []
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or not block_id or len(block_id) > MAX_ID):
        problems.append(_error(f"must be 1 to {MAX_ID} characters", f"{pointer}/block_id"))
    if kind == "section":
        if block.get("text") is None and not block.get("fields"):
            problems.append(_error("must provide either text or fields", pointer))
        problems += _check_text(block.get("text"), f"{pointer}/text", limit=MAX_SECTION_TEXT, required=False)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_SECTION_FIELDS:
                problems.append(
                    _error(f"must be an array of at most {MAX_SECTION_FIELDS} items", f"{pointer}/fields")
                )
            else:
                for index, item in enumerate(fields):
                    problems += _check_text(item, f"{pointer}/fields/{index}", limit=MAX_FIELD_TEXT)
        accessory = block.get("accessory")
        if isinstance(accessory, Mapping) and accessory.get("type") == "button":
            problems += _check_button(accessory, f"{pointer}/accessory")
    elif kind == "header":
        problems += _check_text(block.get("text"), f"{pointer}/text", limit=MAX_HEADER_TEXT, plain_only=True)
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_MARKDOWN_TEXT:
            problems.append(_error(f"must be 1 to {MAX_MARKDOWN_TEXT} characters", f"{pointer}/text"))
    elif kind in ("context", "actions"):
        limit = MAX_CONTEXT_ELEMENTS if kind == "context" else MAX_ACTIONS_ELEMENTS
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > limit:
            problems.append(_error(f"must be an array of 1 to {limit} items", f"{pointer}/elements"))
        else:
            problems += _check_element_ids(elements, f"{pointer}/elements")
    elif kind == "image":
        alt = block.get("alt_text")
        if not isinstance(alt, str) or not alt:
            problems.append(_error("missing required field: alt_text", f"{pointer}/alt_text"))
        if not block.get("image_url") and not block.get("slack_file"):
            problems.append(_error("must provide either image_url or slack_file", pointer))
    return problems


def validate_blocks(blocks: Sequence[Mapping[str, Any]], *, limit: int = MAX_BLOCKS_MESSAGE) -> list[str]:
    """Every problem Slack would report for ``blocks`` (empty when they would be accepted)."""
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(_error(f"must be less than {limit + 1} items", "/blocks"))
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"/blocks/{index}"
        problems += _check_block(block, pointer)
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in block_ids:
                problems.append(_error("block_id must be unique", f"{pointer}/block_id"))
            block_ids.add(block_id)
    return problems


def assign_block_ids(blocks: Sequence[Mapping[str, Any]], seed: str) -> tuple[dict[str, Any], ...]:
    """Copies of ``blocks`` where each block without a ``block_id`` gets one, as Slack does.

    Slack makes up short random ids; these are derived from ``seed`` (the message ts) and the
    position so a run is reproducible.
    """
    result: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        copied = copy.deepcopy(dict(block))
        if not copied.get("block_id"):
            digest = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()
            copied["block_id"] = digest[:5]
        result.append(copied)
    return tuple(result)
