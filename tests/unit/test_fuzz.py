"""Fuzzing as tests: every parser that reads outside input answers with a result or its own clear
error, never another exception. Examples are fixed (see the hypothesis profile in
``tests/conftest.py``); ``HYPOTHESIS_PROFILE=slow`` runs twenty times as many."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.intake.route import inbox_item
from bot.render.blocks import escape, from_slack
from bot.slack.request_shape import body_problem
from bot.thingspace.events import CallbackEvent, InvalidCallback, parse_callback
from bot.thingspace.ids import DeviceId, InvalidDeviceId, parse_device_id
from commands.grammar import Invocation, UsageError, parse
from commands.registry import VERBS
from tests.helpers.fuzz import callback_like, command_text, examples, json_values, nasty_text

_LIVE = re.compile(r"<(?:!|@|#|https?:|mailto:|tel:)")
_HIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


@settings(max_examples=examples(400))
@given(st.one_of(command_text, nasty_text))
def test_grammar_parses_or_says_what_is_wrong(text: str) -> None:
    """Any text after `/ts` is an Invocation or a UsageError with a message; a target never holds
    an invisible character (they broke the audit log's device index)."""
    try:
        inv = parse(text, VERBS)
    except UsageError as exc:
        assert exc.message.strip()
        return
    assert isinstance(inv, Invocation) and inv.verb in VERBS
    for target in inv.targets:
        assert not _INVISIBLE.search(target.text), target


@settings(max_examples=examples(300))
@given(
    st.one_of(
        nasty_text, st.from_regex(r"(?i)(iccid|mdn|imei|meid|eid|msisdn|imsi|esn|min)?:?[0-9a-f .()-]{0,40}")
    )
)
def test_device_id_parser_answers_or_refuses(text: str) -> None:
    try:
        parsed = parse_device_id(text)
    except InvalidDeviceId as exc:
        assert str(exc)
        return
    assert DeviceId(parsed.kind, parsed.id) == parsed
    assert parse_device_id(str(parsed)) == parsed


@settings(max_examples=examples(300))
@given(st.one_of(callback_like, json_values))
def test_callback_parser_and_intake_answer_or_refuse(payload: Any) -> None:
    """Any JSON: the parser gives an event or InvalidCallback; the intake's row builder likewise
    (the route turns InvalidCallback into a 4xx or, for an authenticated body it keeps, a 2xx)."""
    try:
        event = parse_callback(payload)
    except InvalidCallback as exc:
        assert str(exc)
    else:
        assert isinstance(event, CallbackEvent)
    if isinstance(payload, dict):
        try:
            item = inbox_item(payload)
        except InvalidCallback as exc:
            assert str(exc)
        else:
            json.loads(item.payload)


_form = st.dictionaries(
    st.sampled_from(["command", "user_id", "channel_id", "team_id", "text", "payload", "ssl_check"]),
    nasty_text,
    max_size=6,
)


@settings(max_examples=examples(300))
@given(
    st.one_of(
        nasty_text,
        json_values.map(json.dumps),
        _form.map(urlencode),
        json_values.map(lambda v: urlencode({"payload": json.dumps(v)})),
        st.integers(1, 5000).map(lambda n: "[" * n),
        st.integers(1, 5000).map(lambda n: "payload=" + "%5B" * n),
    ),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]),
)
def test_slack_shape_checker_names_a_problem_or_none(text: str, content_type: str) -> None:
    problem = body_problem(text, content_type)
    assert problem is None or (isinstance(problem, str) and problem)


@settings(max_examples=examples(500))
@given(st.one_of(nasty_text, command_text))
def test_escape_never_leaves_a_live_token(text: str) -> None:
    """No output of escape holds a live `<!…>`, `<@…>`, `<#…>` or `<http…>`, or a bidi override,
    however the input was built — even after Slack's own unescaping of what people type."""
    for candidate in (text, from_slack(text), escape(text)):
        shown = escape(candidate)
        assert not _LIVE.search(shown), shown
        assert "<" not in shown and ">" not in shown
        assert not _HIDDEN.search(shown)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@settings(max_examples=examples(300))
@given(nasty_text)
def test_escape_keeps_every_visible_character(text: str) -> None:
    """Escaping loses nothing people can see: undoing the three entities gives the text back, with
    only the hidden characters shown as U+FFFD."""
    assert _unescape(escape(text)) == _HIDDEN.sub("\ufffd", text)
