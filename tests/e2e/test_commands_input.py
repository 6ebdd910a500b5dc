"""What people type, over HTTP: signed slash commands to the bot, the sandbox behind the real
client, the Slack stand-in recording the answer. Quotes as Slack clients send them, SMS text
that looks like an id or is too long, unknown verbs answered for the user's role, and `find`
with the separators people paste."""

from __future__ import annotations

import pytest

from bot.local_stack import LocalStack
from bot.thingspace.ids import KIND_FORMATS
from commands.policy import verbs_for
from commands.registry import VERBS
from storage import directory
from storage.audit.log import AuditLog
from tests.helpers.stacks import stack_fixture

STOLEN = "iccid:89148000000800139708"
OPERATOR = {"user": "U0OPS1", "channel": "C0OPS"}
VIEWER = {"user": "U0NOC1", "channel": "C0NOC"}


stack = stack_fixture(devices=40, scheduler=False)


def _sms_calls(stack: LocalStack) -> int:
    return sum(1 for r in stack.sandbox.requests_received() if r["path"].endswith("/sms"))


def _sent(stack: LocalStack, text: str) -> None:
    """The in-channel message that says the SMS went out, with exactly this text."""
    stack.standin.wait_for(lambda m: not m.ephemeral and "sent an SMS" in m.text and f"“{text}”" in m.text)


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ('"12345678"', "12345678"),  # quoted digits are the text, not an ESN
        ("\u201c12345678\u201d", "12345678"),  # the same from a client that curls quotes
        ("\u201cdon\u2019t reboot\u201d", "don\u2019t reboot"),  # curly quotes and an apostrophe
        ("don\u2019t reboot", "don\u2019t reboot"),  # no quotes at all: the apostrophe is text
    ],
)
def test_sms_text_as_slack_clients_send_it(stack: LocalStack, typed: str, sent: str) -> None:
    """Quoted text is the SMS, never a device; curly quotes delimit; apostrophes stay in the text."""
    before = _sms_calls(stack)
    body = stack.command(f"sms {STOLEN} {typed}", **OPERATOR).json()
    assert "Sending the SMS" in body["text"], body["text"]
    _sent(stack, sent)
    assert stack.settle()
    assert _sms_calls(stack) == before + 1


def test_reason_with_an_apostrophe_needs_no_quotes(stack: LocalStack) -> None:
    """`--reason owner’s report` is the reason, not an unclosed quote."""
    body = stack.command(f"suspend {STOLEN} --reason owner\u2019s report --dry-run", **OPERATOR).json()
    assert "Dry run" in body["text"], body["text"]
    rows = AuditLog(_db(stack)).query(actor="U0OPS1", limit=5)
    assert rows[0].outcome == "dry-run" and rows[0].reason == "owner\u2019s report"


def test_eight_bit_sms_too_long(stack: LocalStack) -> None:
    """Text outside GSM 7-bit over 140 bytes is refused with the limit and the count; nothing is sent."""
    before = _sms_calls(stack)
    body = stack.command(f'sms {STOLEN} "{"я" * 71}"', **OPERATOR).json()
    assert body["response_type"] == "ephemeral"
    assert "142 bytes" in body["text"] and "at most 140 bytes" in body["text"], body["text"]
    assert "Shorten it by 2 bytes" in body["text"]
    assert "Usage: `/ts sms" in body["text"]
    assert stack.settle()
    assert _sms_calls(stack) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sms hello world", "`hello` is not a device id"),
        ('sms "hello"', "needs the devices first"),
        (f'suspend {STOLEN} "stolen"', 'write --reason "stolen"'),
    ],
)
def test_errors_name_the_word(stack: LocalStack, text: str, expected: str) -> None:
    """The error names the word that is wrong, and nothing is sent."""
    before = _sms_calls(stack)
    body = stack.command(text, **OPERATOR).json()
    assert body["response_type"] == "ephemeral"
    assert expected in body["text"], body["text"]
    assert _sms_calls(stack) == before


def test_unknown_verb_suggests_the_closest(stack: LocalStack) -> None:
    """A typo gets 'did you mean', every verb an admin may run, and an `invalid` audit entry."""
    body = stack.command(f"suspnd {STOLEN}").json()
    assert body["response_type"] == "ephemeral"
    assert "`suspnd` is not a command. Did you mean `suspend`?" in body["text"]
    assert "cancel-location" in body["text"]
    rows = AuditLog(_db(stack)).query(actor="U012ADMIN", limit=1)
    assert rows[0].outcome == "invalid"


@pytest.mark.parametrize(
    ("who", "role"),
    [(VIEWER, "viewer"), ({"user": "U0STRANGER", "channel": "C0ELSEWHERE"}, None)],
)
def test_unknown_verb_lists_only_what_the_role_may_run(
    stack: LocalStack, who: dict[str, str], role: str | None
) -> None:
    """A viewer (or someone with no role) is offered only the verbs they may run."""
    text = stack.command("suspnd", **who).json()["text"]
    listed = text.split("Commands you can run here: ", 1)[1].split(".", 1)[0].split(", ")
    assert listed == [v.name for v in verbs_for(VERBS, role)]
    assert "Did you mean `suspend`? It needs the *operator* role." in text
    assert set(VERBS) - set(listed) >= {"suspend", "cancel-location"}


def test_help_lists_every_target_kind(stack: LocalStack) -> None:
    """help names every kind the grammar accepts, and group:NAME."""
    blocks = str(stack.command("help", **VIEWER).json()["blocks"])
    for kind, fmt in KIND_FORMATS.items():
        assert f"`{kind}:…` {fmt}" in blocks
    assert "`group:NAME`" in blocks


def test_find_ignores_the_separators_people_paste(stack: LocalStack) -> None:
    """`find (212) 555-1234` finds the line whose MDN is 2125551234."""
    found, _ = directory.find(_db(stack), "demo-healthy", limit=1)
    key, mdn = found[0].key, found[0].ids["mdn"]
    for typed in (
        f"({mdn[:3]}) {mdn[3:6]}-{mdn[6:]}",
        f"{mdn[:3]}-{mdn[3:6]}",
        f"{mdn[:3]}.{mdn[3:6]}.{mdn[6:]}",
    ):
        body = stack.command(f"find {typed}", **VIEWER).json()
        assert key in str(body["blocks"]), (typed, body["text"])


def test_find_says_what_it_searched(stack: LocalStack) -> None:
    """A miss on a digit-like query shows the digits that were searched."""
    body = stack.command("find 97531-86420-1357", **VIEWER).json()
    assert "No device matches `97531-86420-1357` (searched as `97531864201357`)" in body["text"]


def _db(stack: LocalStack):  # type: ignore[no-untyped-def]
    assert stack.runtime is not None
    return stack.runtime.pool.get()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # what Slack sends when someone types <!channel> by hand (should_escape)
        ("&lt;!channel&gt;", "`&lt;!channel&gt;` is not a command"),
        ("sms &lt;!channel&gt; hi", "`&lt;!channel&gt;` is not a device id"),
        (f'suspend {STOLEN} "&lt;!here&gt;"', "(“&lt;!here&gt;”)"),
        ("suspend --reason &lt;!here&gt; stuff", "(“&lt;!here&gt; stuff”)"),
        ("find &lt;!here&gt;", "No device matches `&lt;!here&gt;`"),
        ("history --since &lt;!here&gt;", "not '&lt;!here&gt;'"),
    ],
)
def test_echoed_words_stay_literal(stack: LocalStack, text: str, shown: str) -> None:
    """A word echoed in an answer is escaped: a typed <!channel> is shown, never a live mention."""
    body = stack.command(text, **OPERATOR).json()
    assert shown in body["text"], body["text"]
    assert "<!" not in body["text"] + str(body.get("blocks") or "")
