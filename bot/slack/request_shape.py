"""Is a signed Slack request shaped the way Bolt's matchers read it?

Bolt indexes into the body without checking (``body["actions"][0]["action_id"]``,
``body["view"]["type"]``), so a signed but malformed body ends in a 500 or a reset connection.
:func:`body_problem` names what is missing before Bolt sees it, and the web layer answers 400.
It checks only what routing needs; the listeners validate their own fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

__all__ = ["body_problem"]

#: the form fields of a slash command that the router reads
_COMMAND_FIELDS = ("command", "user_id", "channel_id", "team_id")
_VIEW_TYPES = frozenset({"view_submission", "view_closed"})
_CALLBACK_TYPES = frozenset({"shortcut", "message_action", "workflow_step_edit"})


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _payload_problem(payload: Mapping[str, Any]) -> str | None:
    kind = payload.get("type")
    if not _text(kind):
        return "the interaction payload has no type"
    user = payload.get("user")
    if user is not None and not (isinstance(user, Mapping) and _text(user.get("id"))):
        return "the interaction payload's user has no id"
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions carries no actions"
        for action in actions:
            if not isinstance(action, Mapping) or not _text(action.get("action_id")):
                return "an action has no action_id"
            if "block_id" in action and not isinstance(action["block_id"], str):
                return "an action's block_id is not text"
    elif kind == "block_suggestion":
        if not _text(payload.get("action_id")):
            return "block_suggestion has no action_id"
    elif kind in _VIEW_TYPES:
        view = payload.get("view")
        if not isinstance(view, Mapping) or not _text(view.get("type")):
            return f"{kind} has no view type"
        if not isinstance(view.get("callback_id", ""), str):
            return f"{kind}'s callback_id is not text"
    elif kind in _CALLBACK_TYPES and not _text(payload.get("callback_id")):
        return f"{kind} has no callback_id"
    return None


def _json_problem(data: object) -> str | None:
    if not isinstance(data, Mapping):
        return "the JSON body is not an object"
    kind = data.get("type")
    if kind == "url_verification":
        return None if _text(data.get("challenge")) else "url_verification has no challenge"
    if kind == "event_callback":
        event = data.get("event")
        if not isinstance(event, Mapping) or not _text(event.get("type")):
            return "event_callback has no event type"
        return None
    return None if _text(kind) else "the JSON body has no type"


#: The deepest nesting of JSON arrays and objects accepted. Slack's own bodies nest a dozen levels
#: (a view's blocks); Python's parser and everything that walks the result recurse, so a body nested
#: thousands deep would end in ``RecursionError`` (a 500) instead of a 400.
MAX_DEPTH = 64


def _too_deep(text: str) -> bool:
    """Whether *text* nests JSON arrays or objects deeper than :data:`MAX_DEPTH` (brackets inside
    strings do not count). Linear, no recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _load(text: str) -> object:
    """``json.loads`` for a body: ``ValueError`` for anything it cannot walk (too deep included)."""
    if _too_deep(text):
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def body_problem(text: str, content_type: str) -> str | None:
    """What makes *text* unreadable as a Slack request, or ``None`` when routing can read it."""
    stripped = text.lstrip()
    if content_type.startswith("application/json") or stripped.startswith("{"):
        try:
            return _json_problem(_load(text))
        except ValueError as exc:
            return (
                f"the body is not valid JSON ({exc})"
                if "nested" in str(exc)
                else "the body is not valid JSON"
            )
    form = parse_qs(text, keep_blank_values=True)
    if "payload" in form:
        raw = form["payload"]
        if len(raw) != 1:
            return "payload is given more than once"
        try:
            payload = _load(raw[0])
        except ValueError as exc:
            return (
                f"payload is not valid JSON ({exc})" if "nested" in str(exc) else "payload is not valid JSON"
            )
        if not isinstance(payload, Mapping):
            return "payload is not a JSON object"
        return _payload_problem(payload)
    if "command" in form or "ssl_check" not in form:
        for field in _COMMAND_FIELDS:
            values = form.get(field, [])
            if len(values) != 1 or not values[0]:
                return f"the slash command has no {field}"
    return None
