"""The end-to-end fuzz property: 1,000 random signed Slack bodies and 1,000 random authenticated
ThingSpace callbacks against a running stack (bot, sandbox, Slack stand-in, real SQLite) get no
5xx, leave every worker alive, and `tsbot audit verify` exits 0 afterwards.

Examples are fixed (the hypothesis profile in ``tests/conftest.py``); ``HYPOTHESIS_PROFILE=slow``
sends twenty times as many."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli.main import main
from bot.local_stack import CALLBACK_PASSWORD, CALLBACK_USER, LocalStack
from bot.sandbox import EXAMPLE_ICCID
from tests.helpers.fuzz import callback_like, command_text, examples, json_values, nasty_text

USERS = ["U012ADMIN", "U0OPS1", "U0NOC1", "U0STRANGER"]
CHANNELS = ["C0OPS", "C0NOC", "C0ELSEWHERE"]
SLACK_BODIES = examples(1000)
CALLBACKS = examples(1000)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    s = LocalStack(tmp_path, devices=30, scheduler=False)
    s.start()
    try:
        yield s
    finally:
        s.stop()


_action_ids = st.one_of(
    st.sampled_from(
        [
            "ts:run",
            "ts:confirm",
            "ts:cancel",
            "ts:approve",
            "ts:reject",
            "ts:retry",
            "ts:history-more",
            "ts:alert-ack",
            "ts:group-ack",
            "ts:alert-diag",
            "ts:alert-snooze-1h",
            "ts:nonsense",
        ]
    ).map(lambda a: f"{a}:1"),
    nasty_text.map(lambda t: "ts:" + t),
)


@st.composite
def slash_command(draw: st.DrawFn) -> tuple[str, str]:
    form = {
        "team_id": "T0TSBOT",
        "channel_id": draw(st.sampled_from(CHANNELS)),
        "user_id": draw(st.sampled_from(USERS)),
        "command": "/ts",
        "text": draw(st.one_of(command_text, nasty_text)),
        "response_url": "",
        "trigger_id": "1.2.3",
    }
    return urlencode(form), "application/x-www-form-urlencoded"


@st.composite
def button_click(draw: st.DrawFn) -> tuple[str, str]:
    channel = draw(st.sampled_from(CHANNELS))
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": draw(st.sampled_from(USERS)), "team_id": "T0TSBOT"},
        "team": {"id": "T0TSBOT"},
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel, "message_ts": "1.000001"},
        "actions": [
            {
                "type": "button",
                "action_id": draw(_action_ids),
                "block_id": "b",
                "value": draw(st.one_of(command_text, nasty_text, st.integers(0, 99).map(str))),
            }
        ],
    }
    extra = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    payload.update({k: v for k, v in extra.items() if k not in payload})
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


_raw_body = st.one_of(
    json_values.map(lambda v: (json.dumps(v), "application/json")),
    json_values.map(lambda v: (urlencode({"payload": json.dumps(v)}), "application/x-www-form-urlencoded")),
    st.dictionaries(
        st.sampled_from(["command", "user_id", "channel_id", "team_id", "text", "payload", "ssl_check"]),
        nasty_text,
        max_size=6,
    ).map(lambda f: (urlencode(f), "application/x-www-form-urlencoded")),
    st.integers(60, 3000).map(lambda n: ('{"type":"x","a":' + "[" * n + "]" * n + "}", "application/json")),
)
slack_bodies = st.one_of(slash_command(), slash_command(), button_click(), _raw_body)

#: callbacks a parser is likely to accept: a request id, a real device, a status, one known section
plausible_callback = st.fixed_dictionaries(
    {
        "requestId": st.one_of(st.uuids().map(str), nasty_text.filter(str.strip)),
        "deviceIds": st.just([{"kind": "iccid", "id": EXAMPLE_ICCID}]),
        "status": st.sampled_from(["Success", "Failed", "REACHABLE", "UNREACHABLE", ""]),
        "callbackCount": st.integers(0, 10),
    },
    optional={
        "deviceResponse": st.dictionaries(
            st.sampled_from(["stateChange", "cancelLocation", "smsSent", "reachability", "x"]),
            st.dictionaries(st.text(max_size=10), json_values, max_size=3),
            max_size=2,
        ),
        "faultResponse": st.dictionaries(
            st.sampled_from(["faultcode", "faultstring"]), nasty_text, max_size=2
        ),
    },
)
callbacks = st.one_of(
    plausible_callback,
    plausible_callback,
    callback_like,
    json_values.map(lambda v: {"requestId": "r-fuzz", "deviceIds": v}),
).map(
    lambda body: (
        {**body, "username": CALLBACK_USER, "password": CALLBACK_PASSWORD} if isinstance(body, dict) else body
    )
)


def test_random_signed_bodies_and_callbacks_never_get_5xx_and_audit_verifies(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = stack.driver
    assert driver is not None and stack.runtime is not None
    statuses: dict[str, list[int]] = {"slack": [], "callbacks": []}
    client = httpx.Client(timeout=30)

    @settings(max_examples=SLACK_BODIES)
    @given(slack_bodies)
    def send_slack(body: tuple[str, str]) -> None:
        text, content_type = body
        raw = text.encode("utf-8", "surrogatepass")
        headers = {**driver.sign(raw), "content-type": content_type}
        status = driver.post_raw(raw, headers).status_code
        statuses["slack"].append(status)
        assert status < 500, (status, text[:300])

    @settings(max_examples=CALLBACKS)
    @given(callbacks)
    def send_callback(body: Any) -> None:
        response = client.post(stack.bot_url + "/thingspace/callbacks", content=json.dumps(body).encode())
        statuses["callbacks"].append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text, json.dumps(body)[:300])

    try:
        send_slack()
        send_callback()
        assert len(statuses["slack"]) >= SLACK_BODIES * 0.9
        assert len(statuses["callbacks"]) >= CALLBACKS * 0.9
        assert stack.settle(60)
        ready = client.get(stack.bot_url + "/readyz")
        assert ready.status_code == 200, ready.text  # the inbox worker, relay and workers are alive
    finally:
        client.close()
    time.sleep(0.2)
    stack.stop_bot()
    capsys.readouterr()
    code = main(["audit", "verify", "--db", str(stack.db_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert any(s == 200 for s in statuses["slack"]) and any(400 <= s < 500 for s in statuses["slack"])
    assert any(200 <= s < 300 for s in statuses["callbacks"])
