"""The permission table: roles from users, groups and channels; default deny; help shows only what you may run."""

from __future__ import annotations

import pytest

from bot.core.config import Grants
from commands.help import help_reply
from commands.policy import may_run, role_of, verbs_for
from commands.registry import VERBS

GRANTS = Grants(admin=frozenset({"U012ADMIN"}), operator=frozenset({"S0ONCALL"}), viewer=frozenset({"C0NOC"}))

EXPECTED = {
    None: {"help"},
    "viewer": {
        "help",
        "status",
        "diag",
        "find",
        "reach",
        "watches",
        "request",
        "history",
        "usage",
        "sms-history",
    },
    "operator": {
        "help",
        "status",
        "diag",
        "find",
        "reach",
        "watches",
        "request",
        "history",
        "usage",
        "sms-history",
        "suspend",
        "resume",
        "sms",
        "nidd",
        "watch",
        "unwatch",
    },
    "admin": set(VERBS),
}


@pytest.mark.parametrize("role", [None, "viewer", "operator", "admin"])
def test_permission_table(role: str | None) -> None:
    """Each role may run exactly the verbs of the contract's table."""
    assert {v.name for v in verbs_for(VERBS, role)} == EXPECTED[role]
    for verb in VERBS:
        assert may_run(role, VERBS[verb].role) == (verb in EXPECTED[role])


def test_highest_role_wins() -> None:
    """A user gets the highest role granted to them, their groups or the channel."""
    assert role_of(GRANTS, user="U012ADMIN", groups=set(), channel="C0NOC") == "admin"
    assert role_of(GRANTS, user="U0OPS1", groups={"S0ONCALL"}, channel="C0NOC") == "operator"
    assert role_of(GRANTS, user="U0NOC1", groups=set(), channel="C0NOC") == "viewer"
    assert role_of(GRANTS, user="U0NOC1", groups=set(), channel="C0OTHER") is None


def test_help_shows_only_allowed_verbs() -> None:
    """A viewer's help lists diag but not suspend; help for a forbidden verb says which role it needs."""
    text = help_reply(VERBS, "viewer").text
    assert "diag" in text and "suspend" not in text
    assert "operator" in help_reply(VERBS, "viewer", "suspend").text
    assert "no role" in str(help_reply(VERBS, None).blocks)
