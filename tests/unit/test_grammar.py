"""The slash grammar and the SMS length rules: pure functions, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.thingspace.ids import KIND_FORMATS
from commands.grammar import (
    UnknownVerb,
    UsageError,
    channel_ref,
    parse,
    split_words,
    suggest_verb,
    unknown_verb_message,
    user_ref,
)
from commands.registry import VERBS
from commands.smstext import check_sms


def test_empty_text_is_help() -> None:
    """`/ts` alone shows help."""
    assert parse("", VERBS).verb == "help"


def test_targets_split_on_spaces_and_commas() -> None:
    """Targets may be separated by spaces or commas and keep their kinds."""
    inv = parse("suspend iccid:89148000000800139708,mdn:5551234567 group:plant-7 --reason stolen", VERBS)
    assert [t.text for t in inv.targets] == ["iccid:89148000000800139708", "mdn:5551234567", "group:plant-7"]
    assert inv.reason == "stolen"
    assert inv.targets[2].is_group and inv.targets[2].group == "plant-7"


def test_quoted_reason_and_equals_form() -> None:
    """--reason takes a quoted value or the --reason=VALUE form; Slack's smart quotes work too."""
    assert (
        parse('suspend iccid:89148000000800139708 --reason "lost in transit"', VERBS).reason
        == "lost in transit"
    )
    assert parse("resume iccid:89148000000800139708 --reason=back", VERBS).reason == "back"
    assert (
        parse("suspend iccid:89148000000800139708 --reason \u201cstolen truck\u201d", VERBS).reason
        == "stolen truck"
    )


def test_dry_run_flag() -> None:
    """--dry-run is a switch."""
    assert parse("suspend group:plant-7 --dry-run", VERBS).dry_run
    with pytest.raises(UsageError, match="switch"):
        parse("suspend group:plant-7 --dry-run=yes", VERBS)


def test_unknown_verb_lists_the_commands() -> None:
    """An unknown verb says what the commands are and keeps the word it did not know."""
    with pytest.raises(UnknownVerb) as err:
        parse("frobnicate 1234", VERBS)
    assert "suspend" in err.value.message and "/ts help" in err.value.message
    assert err.value.word == "frobnicate"


def test_unknown_option_says_what_is_accepted() -> None:
    """An option the verb does not take names the ones it does."""
    with pytest.raises(UsageError) as err:
        parse("status iccid:89148000000800139708 --reason x", VERBS)
    assert "does not take --reason" in err.value.message


def test_option_without_value() -> None:
    """An option missing its value is explained with the usage."""
    with pytest.raises(UsageError, match="needs a value"):
        parse("suspend iccid:89148000000800139708 --reason", VERBS)


def test_unclosed_quote() -> None:
    """An unclosed quote is a clear error, not a crash."""
    with pytest.raises(UsageError, match="quote"):
        parse('sms mdn:5551234567 "hello', VERBS)


def test_sms_text_after_targets() -> None:
    """For sms, the words after the targets are the message."""
    inv = parse('sms mdn:5551234567,iccid:89148000000800139708 "REBOOT now"', VERBS)
    assert [t.text for t in inv.targets] == ["mdn:5551234567", "iccid:89148000000800139708"]
    assert inv.text == "REBOOT now"


def test_slack_escapes_and_links_are_undone() -> None:
    """Slack's &amp; escapes and <tel:…|…> links become what the person typed."""
    assert parse('sms mdn:5551234567 "a &amp; b"', VERBS).text == "a & b"
    assert parse("status <tel:5551234567|555-123-4567>", VERBS).targets[0].text == "5551234567"
    assert parse("status <tel:+15551234567|+1 555-123-4567>", VERBS).targets[0].text == "15551234567"
    assert parse("find &lt;x&gt;", VERBS).text == "<x>"  # typed angle brackets are text, not a link


def test_user_and_channel_references() -> None:
    """Mentions arrive escaped as <@U…|name> and <#C…|name>."""
    assert user_ref("<@U012ADMIN|ana>") == "U012ADMIN"
    assert user_ref("@U0OPS1") == "U0OPS1"
    assert channel_ref("<#C0OPS|ops>") == "C0OPS"
    with pytest.raises(UsageError):
        user_ref("ana")


ICCID = "iccid:89148000000800139708"


@pytest.mark.parametrize(
    ("text", "targets", "message"),
    [
        # quoted text is the message, even when it looks like a device id (an 8-digit ESN)
        (f'sms {ICCID} "12345678"', [ICCID], "12345678"),
        (f"sms {ICCID} \u201c12345678\u201d", [ICCID], "12345678"),
        (f"sms {ICCID} '12345678'", [ICCID], "12345678"),
        (f"sms {ICCID} \u201cREBOOT now\u201d", [ICCID], "REBOOT now"),
        (f"sms {ICCID} \u2018REBOOT now\u2019", [ICCID], "REBOOT now"),
        # apostrophes inside words are text, quoted or not; they reach the SMS as typed
        (f"sms {ICCID} don\u2019t reboot", [ICCID], "don\u2019t reboot"),
        (f"sms {ICCID} \u201cdon\u2019t reboot\u201d", [ICCID], "don\u2019t reboot"),
        (f"sms {ICCID} \u2018don\u2019t reboot\u2019", [ICCID], "don\u2019t reboot"),
        (f'sms {ICCID} "it\'s fine"', [ICCID], "it's fine"),
        (f"sms {ICCID} owners\u2019 van", [ICCID], "owners\u2019 van"),
        # a quote in the middle of a word, or a single quote never closed, is text
        (f'sms {ICCID} size 12" screen', [ICCID], 'size 12" screen'),
        (f"sms {ICCID} 'tis done", [ICCID], "'tis done"),
        # quoted option-like text is the message, not an option
        (f'sms {ICCID} "--dry-run please"', [ICCID], "--dry-run please"),
        (f'sms {ICCID} "say \\"hi\\""', [ICCID], 'say "hi"'),
        # unquoted words after the devices are the message; devices before it may be several
        (f"sms {ICCID},mdn:5551234567 REBOOT", [ICCID, "mdn:5551234567"], "REBOOT"),
    ],
)
def test_sms_text_and_quotes(text: str, targets: list[str], message: str) -> None:
    """Quoted text is never a target; Slack's curly quotes delimit, apostrophes inside words are text."""
    inv = parse(text, VERBS)
    assert [t.text for t in inv.targets] == targets
    assert inv.text == message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"suspend {ICCID} --reason owner\u2019s report", "owner\u2019s report"),
        (f"suspend {ICCID} --reason owner's report", "owner's report"),
        (f"suspend --reason owner\u2019s report {ICCID}", "owner\u2019s report"),
        (f"suspend {ICCID} --reason \u201cowner\u2019s report\u201d", "owner\u2019s report"),
        (f"suspend {ICCID} --reason=\u201clost truck\u201d", "lost truck"),
        (f"suspend {ICCID} --reason lost --dry-run", "lost"),
    ],
)
def test_reason_takes_its_words(text: str, reason: str) -> None:
    """--reason takes the words up to the next option or device, apostrophes and all."""
    inv = parse(text, VERBS)
    assert inv.reason == reason
    assert [t.text for t in inv.targets] == [ICCID]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the offending word is named, with what a device id looks like
        ("sms hello world", ["`hello` is not a device id", "kind:id", "group:NAME"]),
        ('sms 12345 "hi"', ["`12345` is not a device id"]),
        ('sms "hello"', ["needs the devices first"]),
        # a device (a label too) and nothing to send: the message is what is missing
        ("nidd demo-nbiot", ["The NIDD data is missing", '"TEXT" in quotes', "--base64", "--hex"]),
        ("nidd demo-nbiot --ttl 1h --dry-run", ["The NIDD data is missing"]),
        ("sms demo-healthy", ["The SMS text is missing", '`/ts sms demo-healthy "STATUS"`']),
        # quoted text is not a target for the other verbs either
        (f'suspend {ICCID} "stolen"', ["not quoted text", "stolen", '--reason "stolen"']),
        (f'status "{ICCID}"', ["`status` takes devices, not quoted text"]),
        # a reason that swallowed every word names what it took
        ("suspend --reason stolen plant-7", ["names no device", "stolen plant-7"]),
        # a double quote never closed is still an error
        ('sms mdn:5551234567 "hello', ["A quote is not closed"]),
        (f"suspend {ICCID} --frob", ["does not take --frob"]),
    ],
)
def test_errors_name_what_was_wrong(text: str, expected: list[str]) -> None:
    """Each error names the offending word and says what is accepted."""
    with pytest.raises(UsageError) as err:
        parse(text, VERBS)
    for part in expected:
        assert part in err.value.message


def test_sms_error_lists_every_kind() -> None:
    """The 'not a device id' error describes every kind the grammar accepts, from KIND_FORMATS."""
    with pytest.raises(UsageError) as err:
        parse("sms hello world", VERBS)
    for kind, fmt in KIND_FORMATS.items():
        assert f"{kind}: {fmt}" in err.value.message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('a "b c" d', [("a", False), ("b c", True), ("d", False)]),
        ("a \u201cb c\u201d", [("a", False), ("b c", True)]),
        ("don\u2019t stop", [("don\u2019t", False), ("stop", False)]),
        ('--reason="x y"', [("--reason=x y", True)]),
        ('""', [("", True)]),
        ("a\u00a0b", [("a", False), ("b", False)]),
        ("'a 'b", [("'a", False), ("'b", False)]),
    ],
)
def test_split_words(raw: str, words: list[tuple[str, bool]]) -> None:
    """Words split on whitespace; quotes group them only where they delimit."""
    assert [(w.text, w.quoted) for w in split_words(raw)] == words


@pytest.mark.parametrize(
    ("word", "suggestion"),
    [
        ("suspnd", "suspend"),
        ("Suspend!", "suspend"),
        ("stauts", "status"),
        ("restore", "resume"),
        ("cancel", "cancel-location"),
        ("hist", "history"),
        ("frobnicate", None),
        ("", None),
    ],
)
def test_suggest_verb(word: str, suggestion: str | None) -> None:
    """The closest verb, or a verb the word begins; nothing when nothing is close."""
    assert suggest_verb(word, VERBS) == suggestion


def test_unknown_verb_suggests_and_lists_only_runnable_verbs() -> None:
    """With the user's verbs, the error lists only those, and a close verb they can't run says the role."""
    message = unknown_verb_message("suspnd", VERBS, {"help", "status", "diag"})
    assert "Did you mean `suspend`? It needs the *operator* role." in message
    assert "Commands you can run here: help, status, diag." in message
    runnable = unknown_verb_message("daig", VERBS, {"help", "status", "diag"})
    assert "Did you mean `diag`?" in runnable and "role" not in runnable


def test_a_device_where_the_verb_should_be() -> None:
    """`/ts 8914…` is told to say what to do first."""
    with pytest.raises(UnknownVerb) as err:
        parse(ICCID, VERBS)
    assert "is a device, not a command" in err.value.message
    assert f"/ts status {ICCID}" in err.value.message


@given(st.text(max_size=200))
def test_parse_never_crashes(text: str) -> None:
    """Any text either parses or raises UsageError with a message."""
    try:
        inv = parse(text, VERBS)
    except UsageError as exc:
        assert exc.message
    else:
        assert inv.verb


def test_sms_seven_bit_limit() -> None:
    """160 GSM characters fit; 161 do not, and the message says by how much."""
    assert check_sms("x" * 160).ok
    result = check_sms("x" * 161)
    assert not result.ok and "160" in result.message and "by 1" in result.message


def test_sms_extension_characters_count_double() -> None:
    """€ and [ ] take two septets each in GSM 7-bit."""
    assert check_sms("€" * 80).ok
    assert not check_sms("€" * 81).ok


def test_sms_unicode_uses_8bit_limit() -> None:
    """Text outside the GSM alphabet is sent as 8-bit UTF-8, at most 140 bytes."""
    ok = check_sms("Привет")
    assert ok.ok and ok.encoding == "8-bit-UTF-8"
    too_long = check_sms("я" * 71)
    assert not too_long.ok and "140" in too_long.message
    assert "142 bytes" in too_long.message and "Shorten it by 2 bytes" in too_long.message


def test_sms_empty() -> None:
    """An empty SMS is refused."""
    assert not check_sms("   ").ok


def test_reasons_are_at_most_300_characters_and_blank_means_none() -> None:
    """--reason: over 300 characters is refused saying so; empty or blank is no reason."""
    assert parse(f"suspend {ICCID} --reason {'x' * 300}", VERBS).reason == "x" * 300
    with pytest.raises(UsageError, match="--reason is 301 characters; at most 300"):
        parse(f"suspend {ICCID} --reason {'x' * 301}", VERBS)
    assert parse(f'suspend {ICCID} --reason ""', VERBS).reason == ""
    assert parse(f'suspend {ICCID} --reason "   "', VERBS).reason == ""
    assert parse(f"suspend {ICCID} --reason   stolen  ", VERBS).reason == "stolen"
