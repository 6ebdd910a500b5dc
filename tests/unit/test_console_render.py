"""Rendering Block Kit messages as terminal text for the demo console."""

from __future__ import annotations

from typing import Any

import pytest

from bot.console import Message, MessageVersion, StandInEvent, mrkdwn_to_text, render_blocks, render_message

CONFIRM_CARD: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Suspend 1 device?"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<@U0OPS1> asked to suspend *iccid …9708* — reason: _stolen_"},
    },
    {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*State*\nactive"},
            {"type": "mrkdwn", "text": "*Plan*\nM2M 5 MB"},
            {"type": "mrkdwn", "text": "*Auto-resume*\n2026-12-02"},
        ],
    },
    {"type": "divider"},
    {
        "type": "context",
        "elements": [
            {"type": "image", "image_url": "https://example.test/sim.png", "alt_text": "SIM"},
            {"type": "mrkdwn", "text": "Expires in 5 min · <https://example.test/help|what happens next>"},
        ],
    },
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Confirm"},
                "style": "danger",
                "action_id": "confirm",
            },
            {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}, "action_id": "cancel"},
        ],
    },
]


def _message(blocks: list[dict[str, Any]], **kwargs: Any) -> Message:
    version = MessageVersion(text="fallback", blocks=tuple(blocks), at=0.0, source="post")
    return Message(channel="C0OPS", ts="1732550000.000200", versions=(version,), source="post", **kwargs)


def test_realistic_confirmation_card_reads_well() -> None:
    """A confirmation card renders header, text, two-column fields, context, divider and buttons."""
    assert render_blocks(CONFIRM_CARD) == [
        "== Suspend 1 device? ==",
        "@U0OPS1 asked to suspend *iccid …9708* — reason: _stolen_",
        "*State* active             *Plan* M2M 5 MB",
        "*Auto-resume* 2026-12-02",
        "─" * 40,
        "[image: SIM]  Expires in 5 min · what happens next",
        "[ Confirm ] (danger)  [ Cancel ]",
    ]


@pytest.mark.parametrize(
    ("mrkdwn", "text"),
    [
        ("see <https://x.test/r/1|request 1>", "see request 1"),
        ("raw <https://x.test/r/1>", "raw https://x.test/r/1"),
        ("by <@U012ADMIN>", "by @U012ADMIN"),
        ("in <#C0OPS|ops> and <#C0NOC>", "in #ops and #C0NOC"),
        ("<!here> and <!subteam^S0ONCALL|@oncall>", "@here and @oncall"),
        ("at <!date^1732550000^{date_short}|Nov 25, 2024>", "at Nov 25, 2024"),
        ("a &lt; b &amp;&amp; c &gt; d", "a < b && c > d"),
    ],
)
def test_mrkdwn_links_and_mentions_become_readable(mrkdwn: str, text: str) -> None:
    """Slack's angle-bracket escapes turn into their labels; mrkdwn styling stays."""
    assert mrkdwn_to_text(mrkdwn) == text


def test_rich_text_basics() -> None:
    """rich_text sections, lists, quotes and preformatted blocks render as text."""
    block = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Failures for "},
                    {"type": "user", "user_id": "U0OPS1"},
                    {"type": "text", "text": " "},
                    {"type": "emoji", "name": "warning"},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "bullet",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "…9708 not found"}]},
                    {
                        "type": "rich_text_section",
                        "elements": [{"type": "link", "url": "https://x.test", "text": "log"}],
                    },
                ],
            },
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": "stolen"}]},
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "req-1"}]},
        ],
    }
    assert render_blocks([block]) == [
        "Failures for @U0OPS1 :warning:",
        "• …9708 not found",
        "• log",
        "> stolen",
        "```",
        "req-1",
        "```",
    ]


def test_other_elements_and_accessories() -> None:
    """Image blocks show alt text; accessories, selects and url buttons are shown inline."""
    blocks: list[dict[str, Any]] = [
        {"type": "image", "image_url": "https://x.test/map.png", "alt_text": "last cell: 4G LTE"},
        {
            "type": "section",
            "text": {"type": "plain_text", "text": "Meter 12"},
            "accessory": {
                "type": "button",
                "text": {"type": "plain_text", "text": "Diagnose"},
                "style": "primary",
            },
        },
        {
            "type": "actions",
            "elements": [
                {"type": "static_select", "placeholder": {"type": "plain_text", "text": "Snooze for…"}},
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Docs"},
                    "url": "https://x.test/docs",
                },
                {"type": "overflow"},
            ],
        },
    ]
    assert render_blocks(blocks) == [
        "[image: last cell: 4G LTE]",
        "Meter 12",
        "[ Diagnose ] (primary)",
        "[ Snooze for… ▾ ]  [ Docs ] → https://x.test/docs  [ ⋯ ]",
    ]


def test_render_message_heads_with_channel_thread_and_what_happened() -> None:
    """The first line names the channel, the thread root, and says updated; the body is indented."""
    reply = _message(CONFIRM_CARD[:2], thread_ts="1732550000.000100")
    event = StandInEvent(kind="update", message=reply, at=0.0)
    lines = render_message(event).split("\n")
    assert lines[0] == "#C0OPS › thread 1732550000.000100 · updated"
    assert lines[1:] == [
        "  == Suspend 1 device? ==",
        "  @U0OPS1 asked to suspend *iccid …9708* — reason: _stolen_",
    ]


def test_render_message_marks_ephemeral_root_and_deleted() -> None:
    """Ephemeral messages say who sees them; a message without blocks shows its text; deletions are one line."""
    ephemeral = _message([], user="U0OPS1")
    deleted = _message([], deleted=True)
    assert render_message(StandInEvent(kind="ephemeral", message=ephemeral, at=0.0)) == (
        "#C0OPS › 1732550000.000200 · new · only @U0OPS1 sees this\n  fallback"
    )
    assert render_message(StandInEvent(kind="delete", message=deleted, at=0.0)) == (
        "#C0OPS › 1732550000.000200 · deleted"
    )
