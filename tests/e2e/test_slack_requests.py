"""Requests to /slack/events over real HTTP: signatures, replays, malformed input, never a 500."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from tests.helpers.bot import SlackOnlyBot

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _command_body(text: str, user: str = "U012ADMIN", channel: str = "C0OPS") -> bytes:
    return urlencode(
        {
            "command": "/ts",
            "text": text,
            "user_id": user,
            "channel_id": channel,
            "team_id": "T0TSBOT",
            "response_url": "http://127.0.0.1:9/none",
            "trigger_id": "1.2.3",
        }
    ).encode()


def _audit_count(bot: SlackOnlyBot) -> int:
    """Audit rows written by requests (not the config.load row every start records)."""
    db = bot.runtime.pool.get()
    return int(db.execute("SELECT count(*) FROM audit_log WHERE verb != 'config.load'").fetchone()[0])


def test_signed_help_is_answered_in_the_ack(slack_bot: SlackOnlyBot) -> None:
    """A validly signed /ts help gets 200 and an ephemeral list of commands."""
    response = slack_bot.driver.command("help", user="U012ADMIN", channel="C0OPS")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "suspend" in body["text"] and "cancel-location" in body["text"]


def test_forged_signature_is_401_and_runs_nothing(slack_bot: SlackOnlyBot) -> None:
    """A body signed with another secret is refused and leaves no audit entry."""
    body = _command_body("suspend iccid:89148000000800139708")
    headers = slack_bot.driver.sign(body)
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    response = slack_bot.driver.post_raw(body, headers)
    assert response.status_code == 401
    assert _audit_count(slack_bot) == 0


def test_stale_and_future_timestamps_are_401(slack_bot: SlackOnlyBot) -> None:
    """Requests signed more than 5 minutes in the past or future are refused."""
    body = _command_body("help")
    for offset in (-301, 301):
        response = slack_bot.driver.post_raw(body, slack_bot.driver.sign(body, int(time.time()) + offset))
        assert response.status_code == 401, offset


def test_body_changed_after_signing_is_401(slack_bot: SlackOnlyBot) -> None:
    """Changing one character of a signed body breaks the signature."""
    body = _command_body("help", user="U012ADMIN")
    headers = slack_bot.driver.sign(body)
    response = slack_bot.driver.post_raw(body.replace(b"U012ADMIN", b"U012ADMIM"), headers)
    assert response.status_code == 401


def test_malformed_headers_are_401_never_500(slack_bot: SlackOnlyBot) -> None:
    """Garbage timestamps and signatures (Bolt's stock verifier answers 500) get 401."""
    body = _command_body("help")
    good = slack_bot.driver.sign(body)
    cases = [
        {**good, "X-Slack-Request-Timestamp": "abc"},
        {**good, "X-Slack-Request-Timestamp": ""},
        {**good, "X-Slack-Request-Timestamp": "9" * 40},
        {**good, "X-Slack-Signature": "v0=é".encode()},  # raw non-ASCII bytes on the wire
        {**good, "X-Slack-Signature": "v1=" + "a" * 64},
        {"Content-Type": FORM["Content-Type"]},
    ]
    for headers in cases:
        response = slack_bot.driver.post_raw(body, headers)
        assert response.status_code == 401, headers


def test_replayed_request_has_one_effect(slack_bot: SlackOnlyBot) -> None:
    """The same signed bytes sent twice inside the window: the second is refused, one audit entry."""
    body = _command_body("suspend iccid:89148000000800139708 --dry-run")
    headers = slack_bot.driver.sign(body)
    first = slack_bot.driver.post_raw(body, headers)
    second = slack_bot.driver.post_raw(body, headers)
    assert first.status_code == 200
    assert second.status_code == 409
    assert _audit_count(slack_bot) == 1


def test_oversized_body_is_413(slack_bot: SlackOnlyBot) -> None:
    """A body over the cap is refused before it is read."""
    body = _command_body("x" * (600 * 1024))
    response = slack_bot.driver.post_raw(body, slack_bot.driver.sign(body))
    assert response.status_code == 413


def test_non_utf8_body_is_400(slack_bot: SlackOnlyBot) -> None:
    """Signed bytes that are not UTF-8 get a 400, not a crash."""
    body = b"text=\xff\xfe&command=/ts"
    response = slack_bot.driver.post_raw(body, slack_bot.driver.sign(body))
    assert response.status_code == 400


def test_non_ascii_command_text_passes_verification(slack_bot: SlackOnlyBot) -> None:
    """The raw bytes are verified as sent: non-ASCII text still verifies and is answered."""
    response = slack_bot.driver.command("find naïve-café", user="U012ADMIN", channel="C0OPS")
    assert response.status_code == 200
    assert "No device matches" in response.json()["text"]


def test_health_and_readiness(slack_bot: SlackOnlyBot) -> None:
    """/healthz answers while the process is up; /readyz checks the database and the workers."""
    import httpx

    assert httpx.get(slack_bot.server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(slack_bot.server.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] is True


def test_metrics_endpoint_counts_commands(slack_bot: SlackOnlyBot) -> None:
    """/metrics is Prometheus text and counts commands by verb and outcome."""
    import httpx

    slack_bot.driver.command("help", user="U012ADMIN", channel="C0OPS")
    slack_bot.driver.command("frobnicate", user="U012ADMIN", channel="C0OPS")
    text = httpx.get(slack_bot.server.url + "/metrics").text
    assert 'tsbot_commands_total{outcome="ok",verb="help"} 1.0' in text
    assert 'outcome="invalid"' in text


def test_interaction_payload_with_unknown_pending_action(slack_bot: SlackOnlyBot) -> None:
    """A click on a button whose pending action does not exist is acknowledged and explained."""
    payload = {
        "type": "block_actions",
        "user": {"id": "U012ADMIN"},
        "team": {"id": "T0TSBOT"},
        "channel": {"id": "C0OPS"},
        "container": {"type": "message", "channel_id": "C0OPS", "is_ephemeral": True},
        "response_url": slack_bot.standin.new_response_url("C0OPS", "U012ADMIN"),
        "trigger_id": "1.2.3",
        "actions": [{"action_id": "ts:confirm", "block_id": "b", "value": "nope", "type": "button"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    response = slack_bot.driver.post_raw(body, slack_bot.driver.sign(body))
    assert response.status_code == 200
    message = slack_bot.standin.wait_for(lambda m: "no longer exists" in m.text, timeout=5)
    assert message.ephemeral


def _payload_body(payload: object) -> bytes:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)}).encode()


def _command_without(field: str) -> bytes:
    fields = {
        "command": "/ts",
        "text": "help",
        "user_id": "U012ADMIN",
        "channel_id": "C0OPS",
        "team_id": "T0TSBOT",
        "response_url": "http://127.0.0.1:9/none",
    }
    del fields[field]
    return urlencode(fields).encode()


MALFORMED = [
    (_payload_body("notjson"), "payload is not valid JSON"),
    (_payload_body([]), "payload is not a JSON object"),
    (_payload_body({"user": {"id": "U012ADMIN"}}), "has no type"),
    (
        _payload_body({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"value": "x"}]}),
        "no action_id",
    ),
    (_payload_body({"type": "block_actions", "user": {"id": "U1"}, "actions": []}), "carries no actions"),
    (
        _payload_body({"type": "block_actions", "user": "U1", "actions": [{"action_id": "a"}]}),
        "user has no id",
    ),
    (_payload_body({"type": "view_submission", "user": {"id": "U1"}, "view": {}}), "has no view type"),
    (_payload_body({"type": "shortcut", "user": {"id": "U1"}}), "has no callback_id"),
    (b'{"type": "event_callback", "event": []}', "has no event type"),
    (b'{"type": "url_verification"', "not valid JSON"),
    (b"[1, 2]", "not an object"),
    (_command_without("user_id"), "has no user_id"),
    (_command_without("channel_id"), "has no channel_id"),
]


def test_signed_but_malformed_bodies_are_400_with_the_reason(slack_bot: SlackOnlyBot) -> None:
    """Correctly signed bodies Bolt cannot route get a 400 naming what is wrong, never a 500,
    and leave nothing behind: no audit entry, no Slack call."""
    before = _audit_count(slack_bot)
    calls = len(slack_bot.standin.calls())
    for body, reason in MALFORMED:
        content_type = "application/json" if body.startswith((b"{", b"[")) else None
        headers = slack_bot.driver.sign(body)
        if content_type:
            headers["Content-Type"] = content_type
        response = slack_bot.driver.post_raw(body, headers)
        assert response.status_code == 400, (body, response.text)
        assert reason in response.json()["error"], (body, response.text)
    assert _audit_count(slack_bot) == before
    assert len(slack_bot.standin.calls()) == calls


def test_ssl_check_is_still_answered(slack_bot: SlackOnlyBot) -> None:
    """Slack's ssl_check (no command fields) is not mistaken for a malformed slash command."""
    body = urlencode({"ssl_check": "1", "token": "x"}).encode()
    response = slack_bot.driver.post_raw(body, slack_bot.driver.sign(body))
    assert response.status_code == 200
