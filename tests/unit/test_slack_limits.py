"""The Block Kit limits checker the stand-in runs on every payload (bot.console.limits)."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient

from bot.console.limits import payload_problems
from bot.console.standin import SlackStandIn
from bot.outbox.relay import fresh_block_ids
from bot.render import blocks


def _section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block = blocks.section(text)
    if block_id:
        block["block_id"] = block_id
    return block


def test_a_card_the_bot_builds_passes() -> None:
    body = [
        blocks.header("Suspend 1 device?"),
        _section("*demo* <@U012ADMIN> <#C0OPS> <!subteam^S0ONCALL> <!date^1796636590^{time}|09:43 UTC>"),
        blocks.actions(
            blocks.button(
                "Confirm", "ts:confirm", "x", style="danger", confirm=("Sure?", "It calls ThingSpace", "Yes")
            ),
            block_id="pending:1",
        ),
    ]
    assert payload_problems("chat.postMessage", {"text": "Suspend 1 device?", "blocks": body}) == []


def test_each_documented_limit_is_reported() -> None:
    too_many = [blocks.divider() for _ in range(51)]
    assert "51 blocks" in " ".join(payload_problems("chat.postMessage", {"text": "x", "blocks": too_many}))
    long_text = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    fields = {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}
    button = {
        "type": "button",
        "text": {"type": "plain_text", "text": "b" * 76},
        "action_id": "a" * 256,
        "value": "v" * 2001,
        "confirm": {
            "title": {"type": "plain_text", "text": "t" * 101},
            "text": {"type": "mrkdwn", "text": "t" * 301},
            "confirm": {"type": "plain_text", "text": "c" * 31},
            "deny": {"type": "plain_text", "text": "Back"},
        },
    }
    acts = {"type": "actions", "elements": [button]}
    many = {"type": "actions", "elements": [{**button, "action_id": f"a{i}"} for i in range(26)]}
    found = "\n".join(
        payload_problems(
            "chat.postMessage",
            {
                "text": "x",
                "blocks": [
                    long_text,
                    header,
                    fields,
                    context,
                    acts,
                    many,
                    {**long_text, "text": {"type": "mrkdwn", "text": ""}},
                ],
            },
        )
    )
    for expected in (
        "blocks/0/text: 3001 characters",
        "blocks/1/text: 151 characters",
        "blocks/2/fields: more than 10",
        "blocks/3/elements: must be 1 to 10",
        "blocks/4/elements/0/text: 76 characters",
        "blocks/4/elements/0/action_id",
        "blocks/4/elements/0/value",
        "confirm/title: 101",
        "confirm/text: 301",
        "confirm/confirm: 31",
        "blocks/5/elements: must be 1 to 25",
        "blocks/6/text: empty text",
    ):
        assert expected in found, expected


def test_ids_unique_text_fallback_and_mentions() -> None:
    twice = [_section("a", "same"), _section("b", "same")]
    assert any(
        "not unique" in p for p in payload_problems("chat.postMessage", {"text": "x", "blocks": twice})
    )
    assert any("fallback" in p for p in payload_problems("chat.postMessage", {"blocks": [_section("a")]}))
    bad = payload_problems(
        "chat.postMessage", {"text": "by <@system> and <!channel>", "blocks": [_section("<@thingspace>")]}
    )
    assert len(bad) == 3 and all("invalid token" in p for p in bad)


def test_an_update_needs_new_block_ids_and_the_relay_gives_them() -> None:
    before = [_section("a", "ts-result-progress")]
    again = payload_problems("chat.update", {"text": "x", "blocks": before}, previous_blocks=before)
    assert any("block_id reused" in p for p in again)
    fresh = fresh_block_ids([dict(b) for b in before], "k1")
    assert fresh[0]["block_id"] == "ts-result-progress.k1"
    assert payload_problems("chat.update", {"text": "x", "blocks": fresh}, previous_blocks=before) == []


def test_modal_limits() -> None:
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "A title longer than 24 chars"},
        "submit": {"type": "plain_text", "text": "Suspend"},
        "blocks": [blocks.divider() for _ in range(100)],
    }
    found = payload_problems("views.open", {"view": view})
    assert found == ["views.open/view/title: 28 characters (limit 24)"]


def test_the_standin_keeps_what_it_received() -> None:
    with SlackStandIn() as standin:
        client = WebClient(token=standin.bot_token, base_url=standin.api_url)
        client.chat_postMessage(channel="C0OPS", text="<@system> did it")
        assert standin.limit_problems() == ["chat.postMessage/text: invalid token <@system>"]
        standin.reset()
        assert standin.limit_problems() == []
