"""response_url on the Slack stand-in: what Bolt's respond() hits, with Slack's 5-uses / 30-minutes limits."""

from __future__ import annotations

import httpx
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from bot.console import SlackStandIn
from tests.helpers.console import FakeClock, client, served_standin, standin

__all__ = ["client", "served_standin", "standin"]  # fixtures imported for pytest


def test_webhook_client_posts_an_ephemeral_answer_by_default(standin: SlackStandIn) -> None:
    """slack_sdk's WebhookClient (Bolt's respond) posts an ephemeral message for the command's user."""
    url = standin.new_response_url("C0OPS", "U0OPS1")
    response = WebhookClient(url).send(text="Accepted: suspending 1 device")
    message = standin.messages("C0OPS")[0]
    assert response.status_code == 200
    assert (message.text, message.user, message.source) == (
        "Accepted: suspending 1 device",
        "U0OPS1",
        "response_url",
    )
    assert standin.calls("response_url")[0].params["channel"] == "C0OPS"


def test_in_channel_response_is_visible_to_everyone_and_can_thread(
    standin: SlackStandIn, client: WebClient
) -> None:
    """response_type in_channel posts a channel message; thread_ts puts it in a thread."""
    root = str(client.chat_postMessage(channel="C0OPS", text="root")["ts"])
    url = standin.new_response_url("C0OPS", "U0OPS1")
    httpx.post(url, json={"text": "for all", "response_type": "in_channel"})
    httpx.post(url, json={"text": "in thread", "response_type": "in_channel", "thread_ts": root})
    texts = [(m.text, m.ephemeral, m.thread_ts) for m in standin.messages("C0OPS")]
    assert texts == [("root", False, None), ("for all", False, None), ("in thread", False, root)]


def test_sixth_use_is_refused_with_used_url(standin: SlackStandIn) -> None:
    """A response_url answers 5 times; the 6th gets 404 used_url and posts nothing."""
    url = standin.new_response_url("C0OPS", "U0OPS1")
    statuses = [httpx.post(url, json={"text": f"#{i}"}).status_code for i in range(5)]
    sixth = httpx.post(url, json={"text": "#6"})
    assert statuses == [200] * 5
    assert (sixth.status_code, sixth.json()["error"]) == (404, "used_url")
    assert len(standin.messages()) == 5


def test_url_expires_after_30_minutes() -> None:
    """After 30 minutes a response_url answers 404 expired_url."""
    clock = FakeClock()
    with SlackStandIn(clock=clock) as clocked:
        url = clocked.new_response_url("C0OPS", "U0OPS1")
        clock.advance(29 * 60)
        in_time = httpx.post(url, json={"text": "in time"})
        clock.advance(2 * 60)
        late = httpx.post(url, json={"text": "too late"})
    assert in_time.status_code == 200
    assert (late.status_code, late.json()["error"]) == (404, "expired_url")


def test_unknown_token_is_404(standin: SlackStandIn) -> None:
    """A response_url that was never issued answers 404."""
    answer = httpx.post(f"{standin.base_url}/response/not-a-token", json={"text": "x"})
    assert (answer.status_code, answer.json()["error"]) == (404, "invalid_url")


def test_bad_payloads_are_400_and_do_not_use_up_the_url(standin: SlackStandIn) -> None:
    """Malformed JSON, no text, or invalid blocks get 400 and do not count as a use."""
    url = standin.new_response_url("C0OPS", "U0OPS1")
    broken = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    empty = httpx.post(url, json={"response_type": "ephemeral"})
    too_many = httpx.post(url, json={"text": "x", "blocks": [{"type": "divider"}] * 51})
    assert [(r.status_code, r.json()["error"]) for r in (broken, empty, too_many)] == [
        (400, "invalid_payload"),
        (400, "no_text"),
        (400, "invalid_blocks"),
    ]
    assert [httpx.post(url, json={"text": str(i)}).status_code for i in range(5)] == [200] * 5


def test_replace_original_updates_the_bound_message(standin: SlackStandIn) -> None:
    """A URL bound to a message (a click) replaces that message in place with replace_original."""
    command_url = standin.new_response_url("C0OPS", "U0OPS1")
    httpx.post(command_url, json={"text": "Confirm suspend?"})
    card = standin.messages("C0OPS")[0]
    click_url = standin.new_response_url("C0OPS", "U0OPS1", message_ts=card.ts)
    httpx.post(click_url, json={"text": "Suspending…", "replace_original": True})
    after = standin.message("C0OPS", card.ts)
    assert [v.text for v in after.versions] == ["Confirm suspend?", "Suspending…"]
    assert after.ephemeral and len(standin.messages()) == 1


def test_command_url_replaces_its_own_previous_answer(standin: SlackStandIn) -> None:
    """A command's response_url with replace_original replaces the answer it posted before."""
    url = standin.new_response_url("C0OPS", "U0OPS1")
    httpx.post(url, json={"text": "working…"})
    httpx.post(url, json={"text": "done", "replace_original": "true"})
    assert [m.text for m in standin.messages()] == ["done"]


def test_delete_original_removes_the_bound_message(standin: SlackStandIn, client: WebClient) -> None:
    """delete_original deletes the message the URL is bound to."""
    ts = str(client.chat_postMessage(channel="C0OPS", text="approve?")["ts"])
    url = standin.new_response_url("C0OPS", "U0OPS2", message_ts=ts)
    assert httpx.post(url, json={"delete_original": True}).status_code == 200
    assert standin.messages() == []
