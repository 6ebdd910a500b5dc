"""Fault injection on the Slack stand-in: 429 with Retry-After, 5xx, and Slack error codes per channel."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.console import SlackStandIn
from tests.helpers.console import TOKEN, client, served_standin, standin

__all__ = ["client", "served_standin", "standin"]  # fixtures imported for pytest

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post(standin: SlackStandIn, channel: str, text: str = "x") -> httpx.Response:
    return httpx.post(
        standin.api_url + "chat.postMessage", json={"channel": channel, "text": text}, headers=AUTH
    )


def test_429_carries_retry_after_then_calls_succeed(standin: SlackStandIn) -> None:
    """An injected 429 answers with Retry-After for `count` calls, then the method works again."""
    standin.inject("chat.postMessage", status=429, retry_after=2, count=2)
    first, second, third = (_post(standin, "C0OPS", str(i)) for i in range(3))
    assert (first.status_code, first.headers["Retry-After"], first.json()["error"]) == (
        429,
        "2",
        "ratelimited",
    )
    assert (second.status_code, second.headers["Retry-After"]) == (429, "2")
    assert third.status_code == 200 and third.json()["ok"]
    assert [m.text for m in standin.messages()] == ["2"]
    assert [c.injected for c in standin.calls("chat.postMessage")] == [True, True, False]


def test_429_without_retry_after_says_one_second(standin: SlackStandIn) -> None:
    """A 429 planned without retry_after still carries Retry-After: 1, as Slack always sends one."""
    standin.inject("chat.update")
    answer = httpx.post(standin.api_url + "chat.update", json={"channel": "C0OPS", "ts": "1.1"}, headers=AUTH)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")


def test_5xx_is_a_non_json_server_error(standin: SlackStandIn, client: WebClient) -> None:
    """An injected 503 answers plain text, which slack_sdk reports as an API error; nothing is stored."""
    standin.inject("chat.postMessage", status=503)
    raw = _post(standin, "C0OPS")
    standin.inject("chat.postMessage", status=500)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0OPS", text="x")
    assert raw.status_code == 503 and "injected" in raw.text
    assert standin.messages() == []


def test_error_injection_is_per_channel(standin: SlackStandIn, client: WebClient) -> None:
    """An error planned for one channel hits only that channel's calls; others go through."""
    standin.inject("chat.postMessage", error="not_in_channel", channel="C0NOC", count=1)
    client.chat_postMessage(channel="C0OPS", text="ops is fine")
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C0NOC", text="noc refused")
    client.chat_postMessage(channel="C0NOC", text="noc fine again")
    assert caught.value.response.status_code == 200
    assert caught.value.response["error"] == "not_in_channel"
    assert [m.text for m in standin.messages()] == ["ops is fine", "noc fine again"]


def test_response_url_can_be_made_to_fail(standin: SlackStandIn) -> None:
    """Faults planned for "response_url" apply to response_url posts and do not use up the URL."""
    standin.inject("response_url", status=500)
    url = standin.new_response_url("C0OPS", "U0OPS1")
    failed = httpx.post(url, json={"text": "x"})
    assert failed.status_code == 500
    assert [httpx.post(url, json={"text": str(i)}).status_code for i in range(5)] == [200] * 5


def test_reset_drops_faults_and_recordings(standin: SlackStandIn, client: WebClient) -> None:
    """reset() forgets planned faults, messages and calls."""
    client.chat_postMessage(channel="C0OPS", text="before")
    standin.inject("chat.postMessage", count=5)
    standin.reset()
    assert client.chat_postMessage(channel="C0OPS", text="after")["ok"]
    assert [m.text for m in standin.messages()] == ["after"]
    assert len(standin.calls()) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"status": 404}, {"count": 0}, {"retry_after": -1}, {"error": "not an error code"}],
)
def test_nonsense_injection_is_refused(standin: SlackStandIn, kwargs: dict[str, object]) -> None:
    """inject() refuses a status that is not 429/5xx, a count < 1, a negative delay or a bad code."""
    with pytest.raises(ValueError):
        standin.inject("chat.postMessage", **kwargs)  # type: ignore[arg-type]


def test_control_routes_inject_and_reset(standin: SlackStandIn) -> None:
    """POST /_standin/inject plans a fault (bad specs get a 400 saying why); /_standin/reset clears it."""
    base = str(standin.base_url)
    planned = httpx.post(
        base + "/_standin/inject", json={"method": "chat.postMessage", "status": 429, "retry_after": 3}
    )
    unknown = httpx.post(base + "/_standin/inject", json={"method": "chat.postMessage", "statuss": 429})
    bad = httpx.post(base + "/_standin/inject", json={"method": "chat.postMessage", "status": 302})
    pending = httpx.get(base + "/_standin/faults").json()["faults"]
    limited = _post(standin, "C0OPS")
    httpx.post(base + "/_standin/inject", json={"method": "chat.postMessage", "error": "channel_not_found"})
    httpx.post(base + "/_standin/reset")
    after_reset = _post(standin, "C0OPS")
    assert planned.json()["ok"] and pending[0]["retry_after"] == 3
    assert unknown.status_code == 400 and "statuss" in unknown.json()["error"]
    assert bad.status_code == 400 and "429 or a 5xx" in bad.json()["error"]
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert after_reset.json()["ok"]
