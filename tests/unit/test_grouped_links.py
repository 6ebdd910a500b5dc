"""A card that links to another post: the slot is filled with the permalink, or plain words."""

from __future__ import annotations

from bot.outbox.relay import _linked
from bot.render import alert_cards, blocks
from storage import outbox


def test_the_slot_becomes_a_link_to_the_permalink_or_plain_words() -> None:
    body = [blocks.context(f"see {outbox.LINK_SLOT}.")]
    url = "https://example.slack.com/archives/C0OPS/p1796643393000100"
    text, linked = _linked(f"x {outbox.LINK_SLOT}", body, url)
    assert text == f"x <{url}|the grouped alert>"
    assert linked == [blocks.context(f"see <{url}|the grouped alert>.")]
    text, plain = _linked(f"x {outbox.LINK_SLOT}", body, None)
    assert text == "x the grouped alert" and plain == [blocks.context("see the grouped alert.")]
    assert alert_cards.without_link(f"x {outbox.LINK_SLOT}", body) == ("x the grouped alert", plain)
