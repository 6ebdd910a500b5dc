"""``/ts help``: the targets hint and the unknown-verb answer, rendered for a role (pure, no I/O)."""

from __future__ import annotations

import pytest

from bot.thingspace.ids import KIND_FORMATS
from commands.help import help_reply, targets_help, unknown_verb_text
from commands.policy import verbs_for
from commands.registry import VERBS


@pytest.mark.parametrize("kind", sorted(KIND_FORMATS))
def test_targets_hint_lists_every_kind_with_its_format(kind: str) -> None:
    """Every kind the grammar accepts is in the hint, with the format ids.py gives it."""
    assert f"`{kind}:…` {KIND_FORMATS[kind]}" in targets_help()


def test_targets_hint_has_groups_and_is_in_help() -> None:
    """group:NAME is listed, and the hint is part of the help card."""
    assert "`group:NAME`" in targets_help()
    reply = help_reply(VERBS, "viewer")
    assert targets_help() in str(reply.blocks)


@pytest.mark.parametrize(
    ("role", "word", "suggested", "note"),
    [
        ("operator", "suspnd", "Did you mean `suspend`?", ""),
        ("viewer", "suspnd", "Did you mean `suspend`?", "It needs the *operator* role."),
        ("viewer", "daig", "Did you mean `diag`?", ""),
        ("operator", "cancel", "Did you mean `cancel-location`?", "It needs the *admin* role."),
        (None, "stauts", "Did you mean `status`?", "It needs the *viewer* role."),
    ],
)
def test_unknown_verb_suggests_and_lists_only_what_the_role_may_run(
    role: str | None, word: str, suggested: str, note: str
) -> None:
    """The closest verb is suggested (with the role it needs if this user lacks it); only runnable verbs are listed."""
    text = unknown_verb_text(VERBS, word, role)
    assert f"`{word}` is not a command." in text
    assert suggested in text
    if note:
        assert note in text
    else:
        assert "It needs the" not in text
    listed = text.split("Commands you can run here: ", 1)[1].split(".", 1)[0].split(", ")
    assert listed == [v.name for v in verbs_for(VERBS, role)]
    assert set(listed) < set(VERBS)


def test_help_for_an_unknown_verb_uses_the_same_answer() -> None:
    """`/ts help suspnd` suggests `suspend` and lists what a viewer may run."""
    text = help_reply(VERBS, "viewer", "suspnd").text
    assert "Did you mean `suspend`?" in text and "cancel-location" not in text


def test_no_role_is_told_how_to_get_one() -> None:
    """Someone with no grant sees only help, and how to get a role."""
    text = unknown_verb_text(VERBS, "status2", None)
    assert "Commands you can run here: help." in text and "Ask an admin" in text
