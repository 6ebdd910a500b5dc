"""The slash grammar and the SMS length rules: pure functions, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.grammar import UsageError, channel_ref, parse, user_ref
from commands.smstext import check_sms


def test_empty_text_is_help() -> None:
    """`/ts` alone shows help."""
    assert parse("").verb == "help"


def test_targets_split_on_spaces_and_commas() -> None:
    """Targets may be separated by spaces or commas and keep their kinds."""
    inv = parse("suspend iccid:89148000000800139708,mdn:5551234567 group:plant-7 --reason stolen")
    assert [t.text for t in inv.targets] == ["iccid:89148000000800139708", "mdn:5551234567", "group:plant-7"]
    assert inv.reason == "stolen"
    assert inv.targets[2].is_group and inv.targets[2].group == "plant-7"


def test_quoted_reason_and_equals_form() -> None:
    """--reason takes a quoted value or the --reason=VALUE form; Slack's smart quotes work too."""
    assert parse('suspend iccid:89148000000800139708 --reason "lost in transit"').reason == "lost in transit"
    assert parse("resume iccid:89148000000800139708 --reason=back").reason == "back"
    assert (
        parse("suspend iccid:89148000000800139708 --reason \u201cstolen truck\u201d").reason == "stolen truck"
    )


def test_dry_run_flag() -> None:
    """--dry-run is a switch."""
    assert parse("suspend group:plant-7 --dry-run").dry_run
    with pytest.raises(UsageError, match="switch"):
        parse("suspend group:plant-7 --dry-run=yes")


def test_unknown_verb_lists_the_commands() -> None:
    """An unknown verb says what the commands are."""
    with pytest.raises(UsageError) as err:
        parse("frobnicate 1234")
    assert "suspend" in err.value.message and "/ts help" in err.value.message


def test_unknown_option_says_what_is_accepted() -> None:
    """An option the verb does not take names the ones it does."""
    with pytest.raises(UsageError) as err:
        parse("status iccid:89148000000800139708 --reason x")
    assert "does not take --reason" in err.value.message


def test_option_without_value() -> None:
    """An option missing its value is explained with the usage."""
    with pytest.raises(UsageError, match="needs a value"):
        parse("suspend iccid:89148000000800139708 --reason")


def test_unclosed_quote() -> None:
    """An unclosed quote is a clear error, not a crash."""
    with pytest.raises(UsageError, match="quote"):
        parse('sms mdn:5551234567 "hello')


def test_sms_text_after_targets() -> None:
    """For sms, the words after the targets are the message."""
    inv = parse('sms mdn:5551234567,iccid:89148000000800139708 "REBOOT now"')
    assert [t.text for t in inv.targets] == ["mdn:5551234567", "iccid:89148000000800139708"]
    assert inv.text == "REBOOT now"


def test_slack_escapes_and_links_are_undone() -> None:
    """Slack's &amp; escapes and <tel:…|…> links become what the person typed."""
    assert parse('sms mdn:5551234567 "a &amp; b"').text == "a & b"
    assert parse("status <tel:5551234567|555-123-4567>").targets[0].text == "5551234567"


def test_user_and_channel_references() -> None:
    """Mentions arrive escaped as <@U…|name> and <#C…|name>."""
    assert user_ref("<@U012ADMIN|ana>") == "U012ADMIN"
    assert user_ref("@U0OPS1") == "U0OPS1"
    assert channel_ref("<#C0OPS|ops>") == "C0OPS"
    with pytest.raises(UsageError):
        user_ref("ana")


@given(st.text(max_size=200))
def test_parse_never_crashes(text: str) -> None:
    """Any text either parses or raises UsageError with a message."""
    try:
        inv = parse(text)
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


def test_sms_empty() -> None:
    """An empty SMS is refused."""
    assert not check_sms("   ").ok
