"""The Slack stand-in's Web API, driven by a real slack_sdk WebClient over loopback HTTP."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.console import SlackStandIn, StandInEvent
from tests.helpers.console import TOKEN, FakeClock, client, served_standin, standin

__all__ = ["client", "served_standin", "standin"]  # fixtures imported for pytest

CARD: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Suspend 2 devices?*"}},
    {
        "type": "actions",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Confirm"}, "action_id": "ok"},
            {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}, "action_id": "no"},
        ],
    },
]


def _error(call: object) -> str:
    with pytest.raises(SlackApiError) as caught:
        call()  # type: ignore[operator]
    return str(caught.value.response["error"])


def test_auth_test_names_the_bot_and_team(client: WebClient) -> None:
    """auth.test answers ok with the bot's user id, bot id and team."""
    data = client.auth_test().data
    assert isinstance(data, dict)
    assert (data["ok"], data["user_id"], data["bot_id"], data["team_id"]) == (
        True,
        "U0TSBOT",
        "B0TSBOT",
        "T0TSBOT",
    )


def test_wrong_token_is_invalid_auth_and_missing_token_not_authed(standin: SlackStandIn) -> None:
    """A wrong bearer token gets invalid_auth; no token at all gets not_authed."""
    assert (
        _error(lambda: WebClient(token="xoxb-wrong", base_url=standin.api_url).auth_test()) == "invalid_auth"
    )
    answer = httpx.post(standin.api_url + "auth.test").json()
    assert answer == {"ok": False, "error": "not_authed"}


def test_unknown_method_is_reported(client: WebClient) -> None:
    """A method the stand-in does not know answers unknown_method."""
    assert _error(lambda: client.api_call("chat.frobnicate")) == "unknown_method"


def test_post_message_returns_increasing_slack_style_ts(client: WebClient, standin: SlackStandIn) -> None:
    """chat.postMessage returns channel, a 'seconds.micros' ts that increases, and the message."""
    first = client.chat_postMessage(channel="C0OPS", text="one", blocks=CARD)
    second = client.chat_postMessage(channel="C0OPS", text="two")
    assert re.fullmatch(r"\d{10}\.\d{6}", str(first["ts"]))
    assert float(second["ts"]) > float(first["ts"])
    assert first["channel"] == "C0OPS"
    assert first["message"]["bot_id"] == "B0TSBOT"
    assert [b["block_id"] for b in first["message"]["blocks"]] == [
        b["block_id"] for b in standin.messages()[0].blocks
    ]
    assert [m.text for m in standin.messages("C0OPS")] == ["one", "two"]


def test_post_to_unknown_channel_is_channel_not_found(client: WebClient, standin: SlackStandIn) -> None:
    """Posting to a channel the workspace does not have fails like Slack and stores nothing."""
    assert _error(lambda: client.chat_postMessage(channel="C0NOPE", text="x")) == "channel_not_found"
    assert standin.messages() == []


def test_post_without_text_or_blocks_is_no_text(standin: SlackStandIn) -> None:
    """A message with neither text nor blocks is refused with no_text."""
    answer = httpx.post(
        standin.api_url + "chat.postMessage",
        data={"channel": "C0OPS"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert answer == {"ok": False, "error": "no_text"}


def test_thread_replies_and_reply_to_reply(client: WebClient, standin: SlackStandIn) -> None:
    """Replies carry the root's thread_ts; replying to a reply lands in the same thread."""
    root = client.chat_postMessage(channel="C0OPS", text="root")["ts"]
    reply = client.chat_postMessage(channel="C0OPS", text="r1", thread_ts=root)
    nested = client.chat_postMessage(channel="C0OPS", text="r2", thread_ts=reply["ts"])
    assert reply["message"]["thread_ts"] == root
    assert nested["message"]["thread_ts"] == root
    assert [m.text for m in standin.thread("C0OPS", str(root))] == ["root", "r1", "r2"]
    assert [m.text for m in standin.messages("C0OPS", thread_ts=str(root))] == ["r1", "r2"]


def test_update_keeps_version_history(client: WebClient, standin: SlackStandIn) -> None:
    """chat.update changes the message in place and keeps every earlier version."""
    ts = str(client.chat_postMessage(channel="C0OPS", text="10%")["ts"])
    answer = client.chat_update(channel="C0OPS", ts=ts, text="60%")
    client.chat_update(channel="C0OPS", ts=ts, text="100%", blocks=CARD)
    message = standin.message("C0OPS", ts)
    assert answer["text"] == "60%"
    assert [v.text for v in message.versions] == ["10%", "60%", "100%"]
    assert [v.source for v in message.versions] == ["post", "update", "update"]
    assert message.updated and len(message.blocks) == 2


def test_update_of_unknown_message_is_message_not_found(client: WebClient) -> None:
    """chat.update on a ts that does not exist answers message_not_found."""
    assert _error(lambda: client.chat_update(channel="C0OPS", ts="1.000001", text="x")) == "message_not_found"


def test_ephemeral_is_for_one_user_and_cannot_be_updated(client: WebClient, standin: SlackStandIn) -> None:
    """chat.postEphemeral returns message_ts; only that user sees it; chat.update cannot reach it."""
    answer = client.chat_postEphemeral(channel="C0OPS", user="U0OPS1", text="only you", blocks=CARD)
    ts = str(answer["message_ts"])
    message = standin.message("C0OPS", ts)
    assert (message.ephemeral, message.user, message.source) == (True, "U0OPS1", "ephemeral")
    assert message.visible_to("U0OPS1") and not message.visible_to("U0OPS2")
    assert standin.messages("C0OPS", include_ephemeral=False) == []
    assert _error(lambda: client.chat_update(channel="C0OPS", ts=ts, text="x")) == "message_not_found"
    assert (
        _error(lambda: client.chat_postEphemeral(channel="C0OPS", user="U0GHOST", text="x"))
        == "user_not_found"
    )


def test_delete_hides_the_message(client: WebClient, standin: SlackStandIn) -> None:
    """chat.delete removes a message from the listing; deleting twice is message_not_found."""
    ts = str(client.chat_postMessage(channel="C0OPS", text="bye")["ts"])
    client.chat_delete(channel="C0OPS", ts=ts)
    assert standin.messages() == []
    assert standin.message("C0OPS", ts).deleted
    assert _error(lambda: client.chat_delete(channel="C0OPS", ts=ts)) == "message_not_found"


def test_directory_methods(client: WebClient) -> None:
    """users.info, usergroups.users.list and conversations.info answer from the workspace."""
    assert client.users_info(user="U0OPS1")["user"]["name"] == "omar"
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0OPS1", "U0OPS2"]
    assert client.conversations_info(channel="C0NOC")["channel"]["name"] == "noc"
    assert _error(lambda: client.users_info(user="U0GHOST")) == "user_not_found"
    assert _error(lambda: client.usergroups_users_list(usergroup="S0NONE")) == "no_such_subteam"
    assert _error(lambda: client.conversations_info(channel="C0NONE")) == "channel_not_found"


def test_posting_to_a_user_id_opens_a_dm(client: WebClient, standin: SlackStandIn) -> None:
    """A user id as channel posts into the DM with that user (a D… channel)."""
    answer = client.chat_postMessage(channel="U0OPS1", text="psst")
    assert answer["channel"] == "D0OPS1"
    assert standin.messages("D0OPS1")[0].text == "psst"


def test_views_publish_stores_the_home_view_per_user(client: WebClient, standin: SlackStandIn) -> None:
    """views.publish keeps the App Home per user; a non-home view is invalid_arguments."""
    view = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Watches: 3"}}]}
    answer = client.views_publish(user_id="U0NOC1", view=view)
    stored = standin.home_view("U0NOC1")
    assert answer["view"]["id"].startswith("V")
    assert stored is not None and stored["blocks"][0]["text"]["text"] == "Watches: 3"
    assert standin.home_view("U0OPS1") is None
    assert (
        _error(lambda: client.views_publish(user_id="U0NOC1", view={"type": "modal"})) == "invalid_arguments"
    )


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([{"type": "divider"}] * 51, "/blocks"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "/blocks/0/text/text"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "bold?"}}], "/blocks/0/text/type"),
        ([{"type": "banner"}], "/blocks/0/type"),
        ([{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}], "/blocks/1/block_id"),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {"type": "button", "text": {"type": "plain_text", "text": "Go"}, "style": "green"}
                    ],
                }
            ],
            "/blocks/0/elements/0/style",
        ),
    ],
)
def test_invalid_blocks_are_refused_with_a_pointer(
    client: WebClient, standin: SlackStandIn, blocks: list[dict[str, object]], pointer: str
) -> None:
    """Blocks Slack would refuse get invalid_blocks with a json-pointer to the problem; nothing is stored."""
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C0OPS", text="x", blocks=blocks)
    response = caught.value.response
    assert response["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}]" in m for m in response["response_metadata"]["messages"])
    assert standin.messages() == []


def test_section_text_at_the_limit_is_accepted(client: WebClient) -> None:
    """A section of exactly 3000 characters and 50 blocks are within Slack's limits."""
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}}] * 50
    assert client.chat_postMessage(channel="C0OPS", text="x", blocks=blocks)["ok"]


def test_form_body_with_json_encoded_blocks(standin: SlackStandIn) -> None:
    """A form-encoded call with blocks as a JSON string works; malformed blocks are invalid_blocks_format."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    good = httpx.post(
        standin.api_url + "chat.postMessage",
        data={"channel": "C0OPS", "text": "hi", "blocks": json.dumps(CARD)},
        headers=headers,
    ).json()
    bad = httpx.post(
        standin.api_url + "chat.postMessage",
        data={"channel": "C0OPS", "text": "hi", "blocks": "[{"},
        headers=headers,
    ).json()
    assert good["ok"] and len(standin.messages()[0].buttons()) == 2
    assert bad["error"] == "invalid_blocks_format"


def test_token_in_form_body_is_accepted_and_not_recorded(standin: SlackStandIn) -> None:
    """The legacy token parameter authenticates, and the call log never holds it."""
    answer = httpx.post(standin.api_url + "auth.test", data={"token": TOKEN}).json()
    assert answer["ok"]
    assert "token" not in standin.calls("auth.test")[0].params


def test_every_call_is_recorded(client: WebClient, standin: SlackStandIn) -> None:
    """calls() lists each call with its params and answer, failures included."""
    client.chat_postMessage(channel="C0OPS", text="a")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C0NOPE", text="b")
    calls = standin.calls("chat.postMessage")
    assert [(c.params["channel"], c.ok, c.response.get("error")) for c in calls] == [
        ("C0OPS", True, None),
        ("C0NOPE", False, "channel_not_found"),
    ]
    assert standin.calls("auth.test") == []


def test_wait_for_returns_a_message_posted_from_another_thread(
    client: WebClient, standin: SlackStandIn
) -> None:
    """wait_for wakes up when a matching message arrives from another thread."""
    poster = threading.Thread(target=lambda: client.chat_postMessage(channel="C0OPS", text="late result"))
    poster.start()
    message = standin.wait_for(lambda m: m.text == "late result", timeout=5)
    poster.join()
    assert message.channel == "C0OPS"


def test_wait_for_times_out_naming_what_was_there(client: WebClient, standin: SlackStandIn) -> None:
    """wait_for raises TimeoutError listing the messages it saw."""
    client.chat_postMessage(channel="C0OPS", text="something else")
    with pytest.raises(TimeoutError, match="something else"):
        standin.wait_for(lambda m: m.text == "never", timeout=0.2)


def test_listeners_hear_posts_and_updates_and_a_broken_one_does_no_harm() -> None:
    """on_event listeners get post/ephemeral/update/delete events; one that raises breaks nothing."""
    standin = SlackStandIn().start()
    try:
        heard: list[tuple[str, str]] = []

        def broken(event: StandInEvent) -> None:
            raise RuntimeError("printer on fire")

        standin.on_event(broken)
        standin.on_event(lambda e: heard.append((e.kind, e.message.text)))
        api = WebClient(token=TOKEN, base_url=standin.api_url)
        ts = str(api.chat_postMessage(channel="C0OPS", text="a")["ts"])
        api.chat_postEphemeral(channel="C0OPS", user="U0OPS1", text="b")
        api.chat_update(channel="C0OPS", ts=ts, text="c")
        api.chat_delete(channel="C0OPS", ts=ts)
        assert heard == [("post", "a"), ("ephemeral", "b"), ("update", "c"), ("delete", "c")]
    finally:
        standin.stop()


def test_ts_follows_the_injected_clock() -> None:
    """Message ts come from the clock and stay unique when the clock stands still."""
    clock = FakeClock(1_732_550_000.0)
    standin = SlackStandIn(clock=clock).start()
    try:
        api = WebClient(token=TOKEN, base_url=standin.api_url)
        tss = [str(api.chat_postMessage(channel="C0OPS", text=str(i))["ts"]) for i in range(3)]
        assert tss == ["1732550000.000000", "1732550000.000100", "1732550000.000200"]
    finally:
        standin.stop()


def test_control_routes_list_calls_and_messages(client: WebClient, standin: SlackStandIn) -> None:
    """GET /_standin/calls and /_standin/messages show what was recorded, filterable."""
    client.chat_postMessage(channel="C0OPS", text="ops")
    client.chat_postMessage(channel="C0NOC", text="noc")
    base = str(standin.base_url)
    calls = httpx.get(base + "/_standin/calls", params={"method": "chat.postMessage"}).json()["calls"]
    messages = httpx.get(base + "/_standin/messages", params={"channel": "C0NOC"}).json()["messages"]
    assert [c["params"]["channel"] for c in calls] == ["C0OPS", "C0NOC"]
    assert [(m["channel"], m["text"]) for m in messages] == [("C0NOC", "noc")]
