"""The Slack driver: signed slash commands and button clicks, as received by a loopback Starlette app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.console import SlackDriver, SlackStandIn
from tests.helpers.console import (
    SECRET,
    Receiver,
    client,
    receiver_server,
    served_standin,
    standin,
)

__all__ = ["client", "receiver_server", "served_standin", "standin"]  # fixtures imported for pytest

CARD: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Suspend *…9708*?"}},
    {
        "type": "actions",
        "block_id": "confirm-block",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Confirm"},
                "action_id": "pending.confirm",
                "value": "pa-42",
                "style": "danger",
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Cancel"},
                "action_id": "pending.cancel",
            },
        ],
    },
]


@pytest.fixture
def driver(standin: SlackStandIn, receiver_server: tuple[Receiver, str]) -> Iterator[SlackDriver]:
    """A driver aimed at the recording receiver, with a fresh stand-in."""
    receiver, url = receiver_server
    receiver.requests.clear()
    with SlackDriver(url, SECRET, standin) as slack:
        yield slack


def _form(receiver_server: tuple[Receiver, str]) -> dict[str, str]:
    body = receiver_server[0].last.body.decode()
    return {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _payload(receiver_server: tuple[Receiver, str]) -> dict[str, Any]:
    payload = json.loads(_form(receiver_server)["payload"])
    assert isinstance(payload, dict)
    return payload


def test_signature_is_accepted_by_slack_sdk_verifier(driver: SlackDriver) -> None:
    """Headers from sign() pass slack_sdk's SignatureVerifier; a changed body or an old timestamp fail."""
    verifier = SignatureVerifier(SECRET)
    body = b"command=%2Fts&text=help"
    headers = driver.sign(body)
    stale = driver.sign(body, timestamp=int(time.time()) - 6 * 60)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not verifier.is_valid(
        body + b"x", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    assert not verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])


def test_command_posts_a_signed_slash_command_form(
    driver: SlackDriver, standin: SlackStandIn, receiver_server: tuple[Receiver, str]
) -> None:
    """command() sends Slack's slash-command fields, signed, with a live response_url."""
    response = driver.command("status iccid:89148000000800139708", user="U0OPS1", channel="C0OPS")
    received = receiver_server[0].last
    form = _form(receiver_server)
    assert response.status_code == 200
    assert SignatureVerifier(SECRET).is_valid_request(received.body, received.headers)
    assert {
        k: form[k] for k in ("command", "text", "user_id", "user_name", "channel_id", "channel_name")
    } == {
        "command": "/ts",
        "text": "status iccid:89148000000800139708",
        "user_id": "U0OPS1",
        "user_name": "omar",
        "channel_id": "C0OPS",
        "channel_name": "ops",
    }
    assert form["team_id"] == "T0TSBOT" and form["api_app_id"] and form["trigger_id"] and form["token"]
    assert httpx.post(form["response_url"], json={"text": "status card"}).status_code == 200
    assert standin.messages()[0].user == "U0OPS1"


def test_command_from_a_new_user_and_channel_registers_them(
    driver: SlackDriver, standin: SlackStandIn
) -> None:
    """Whoever types a command, wherever, exists in the stand-in's workspace afterwards."""
    driver.command("help", user="U0NEWBIE", channel="C0NEW")
    api = WebClient(token=standin.bot_token, base_url=standin.api_url)
    assert api.users_info(user="U0NEWBIE")["ok"]
    assert api.chat_postMessage(channel="C0NEW", text="hello")["ok"]


def test_click_sends_a_block_actions_payload_for_a_channel_message(
    driver: SlackDriver, client: WebClient, standin: SlackStandIn, receiver_server: tuple[Receiver, str]
) -> None:
    """click() finds the button by label (any case) and posts Slack's block_actions shape, signed."""
    root = str(client.chat_postMessage(channel="C0OPS", text="root")["ts"])
    ts = str(client.chat_postMessage(channel="C0OPS", text="approve?", blocks=CARD, thread_ts=root)["ts"])
    driver.click("confirm", user="U0OPS2")
    received = receiver_server[0].last
    payload = _payload(receiver_server)
    assert SignatureVerifier(SECRET).is_valid_request(received.body, received.headers)
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0OPS2" and payload["team"]["id"] == "T0TSBOT"
    assert payload["api_app_id"] and payload["trigger_id"]
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": "C0OPS",
        "is_ephemeral": False,
        "thread_ts": root,
    }
    assert payload["channel"]["id"] == "C0OPS"
    assert payload["message"]["ts"] == ts and payload["message"]["blocks"][1]["block_id"] == "confirm-block"
    action = payload["actions"][0]
    assert {k: action[k] for k in ("type", "action_id", "block_id", "value", "style")} == {
        "type": "button",
        "action_id": "pending.confirm",
        "block_id": "confirm-block",
        "value": "pa-42",
        "style": "danger",
    }
    assert action["text"]["text"] == "Confirm" and float(action["action_ts"]) > 0
    httpx.post(payload["response_url"], json={"text": "Confirmed by olga", "replace_original": True})
    assert [v.text for v in standin.message("C0OPS", ts).versions] == ["approve?", "Confirmed by olga"]


def test_click_on_an_ephemeral_card(
    driver: SlackDriver, client: WebClient, receiver_server: tuple[Receiver, str]
) -> None:
    """An ephemeral card's click says is_ephemeral and carries no message; others cannot click it."""
    ts = str(
        client.chat_postEphemeral(channel="C0OPS", user="U0OPS1", text="sure?", blocks=CARD)["message_ts"]
    )
    with pytest.raises(LookupError):
        driver.click("Confirm", user="U0OPS2")
    driver.click("Cancel", user="U0OPS1")
    payload = _payload(receiver_server)
    assert payload["container"]["is_ephemeral"] is True
    assert payload["container"]["message_ts"] == ts
    assert "message" not in payload
    assert payload["actions"][0]["action_id"] == "pending.cancel"


def test_click_picks_the_newest_card_by_activity(driver: SlackDriver, client: WebClient) -> None:
    """With two cards, the most recently posted or updated one is clicked."""
    older = str(client.chat_postMessage(channel="C0OPS", text="first", blocks=CARD)["ts"])
    newer = str(client.chat_postMessage(channel="C0OPS", text="second", blocks=CARD)["ts"])
    assert driver.find_button("Confirm", user="U0OPS1")[0].ts == newer
    client.chat_update(channel="C0OPS", ts=older, text="first, refreshed")
    assert driver.find_button("Confirm", user="U0OPS1")[0].ts == older
    assert driver.find_button("Confirm", user="U0OPS1", ts=newer)[0].ts == newer


def test_click_without_a_match_lists_the_buttons(driver: SlackDriver, client: WebClient) -> None:
    """LookupError names the label looked for and the buttons the user could press."""
    client.chat_postMessage(channel="C0OPS", text="x", blocks=CARD)
    with pytest.raises(LookupError, match=r"'Retry failed'.*'Confirm'.*'Cancel'"):
        driver.click("Retry failed", user="U0OPS1")
    with pytest.raises(LookupError, match="buttons available: none"):
        driver.click("Confirm", user="U0OPS1", channel="C0NOC")


def test_post_raw_sends_exactly_what_it_is_given(
    driver: SlackDriver, receiver_server: tuple[Receiver, str]
) -> None:
    """post_raw sends the body and headers untouched (no signature added), for forged requests."""
    driver.post_raw(b"command=%2Fts&text=help", {"Content-Type": "application/x-www-form-urlencoded"})
    received = receiver_server[0].last
    assert received.body == b"command=%2Fts&text=help"
    assert "x-slack-signature" not in received.headers
