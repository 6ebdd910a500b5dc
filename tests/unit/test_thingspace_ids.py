"""Device identifiers: per-kind validation, parsing of typed text, and its error messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.thingspace.ids import (
    BARE_KINDS,
    KIND_EXAMPLES,
    KIND_FORMATS,
    KINDS,
    DeviceId,
    InvalidDeviceId,
    parse_device_id,
)

DIGITS = "0123456789"
HEX = "0123456789ABCDEF"


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(DIGITS, min_size=n, max_size=n)


def hexes(n: int) -> st.SearchStrategy[str]:
    return st.text(HEX, min_size=n, max_size=n)


#: kind -> a strategy for well-formed ids of that kind
VALID: dict[str, st.SearchStrategy[str]] = {
    "mdn": digits(10),
    "msisdn": digits(11),
    "imei": digits(15) | digits(16),
    "iccid": digits(19) | digits(20),
    "meid": hexes(14),
    "esn": digits(11) | hexes(8),
    "eid": digits(32),
    "imsi": st.integers(6, 15).flatmap(digits),
    "min": digits(10),
}

kinds_and_ids = st.sampled_from(KINDS).flatmap(lambda k: st.tuples(st.just(k), VALID[k]))


def random_case(text: str, data: st.DataObject) -> str:
    flags = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(text, flags, strict=True))


def test_every_kind_has_a_format_and_a_valid_example() -> None:
    """KIND_FORMATS and KIND_EXAMPLES cover every kind, and each example validates."""
    assert set(KIND_FORMATS) == set(KIND_EXAMPLES) == set(KINDS)
    for kind in KINDS:
        assert DeviceId(kind, KIND_EXAMPLES[kind]).id == KIND_EXAMPLES[kind]


@given(kinds_and_ids, st.data())
def test_prefixed_text_round_trips_in_any_kind_case(pair: tuple[str, str], data: st.DataObject) -> None:
    """``KiNd:id`` parses to DeviceId(kind, id) with the kind lower-cased, and str() gives it back."""
    kind, value = pair
    parsed = parse_device_id(f"{random_case(kind, data)}:{value}")
    assert parsed == DeviceId(kind, value)
    assert parsed.kind == kind
    assert parse_device_id(str(parsed)) == parsed
    assert parsed.to_wire() == {"id": value.upper(), "kind": kind}


@given(kinds_and_ids)
def test_bare_id_is_recognised_exactly_when_one_kind_fits(pair: tuple[str, str]) -> None:
    """A bare id parses iff exactly one bare-able kind fits; otherwise the error names the candidates."""
    _kind, value = pair
    fitting = [k for k in BARE_KINDS if _fits(k, value)]
    if len(fitting) == 1:
        assert parse_device_id(value) == DeviceId(fitting[0], value)
    else:
        with pytest.raises(InvalidDeviceId) as info:
            parse_device_id(value)
        assert info.value.candidates == tuple(fitting)
        for candidate in fitting:
            assert f"{candidate}:{KIND_EXAMPLES[candidate]}" in str(info.value)


def _fits(kind: str, value: str) -> bool:
    try:
        DeviceId(kind, value)
    except InvalidDeviceId:
        return False
    return True


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_invalid_device_id(text: str) -> None:
    """Arbitrary text never raises anything but InvalidDeviceId, and a parse result is valid."""
    try:
        parsed = parse_device_id(text)
    except InvalidDeviceId as exc:
        assert str(exc)
    else:
        assert DeviceId(parsed.kind, parsed.id) == parsed


@given(st.sampled_from(["mdn", "imei", "iccid", "eid"]).flatmap(lambda k: st.tuples(st.just(k), VALID[k])))
def test_pasted_separators_are_removed(pair: tuple[str, str]) -> None:
    """Spaces, dashes, dots and parentheses inside a typed id are ignored."""
    kind, value = pair
    spaced = "-".join(value[i : i + 3] for i in range(0, len(value), 3))
    assert parse_device_id(f"{kind}:({spaced[:4]}) {spaced[4:]}".replace("-", ". -", 1)) == DeviceId(
        kind, value
    )


@given(st.sampled_from(KINDS), st.text(DIGITS + "ABCDEFXYZ", max_size=40))
def test_constructor_accepts_only_the_documented_format(kind: str, value: str) -> None:
    """DeviceId(kind, id) accepts exactly the ids the kind's format describes."""
    ok = _reference_valid(kind, value)
    if ok:
        assert DeviceId(kind, value).id == value.upper()
    else:
        with pytest.raises(InvalidDeviceId) as info:
            DeviceId(kind, value)
        assert KIND_FORMATS[kind] in str(info.value)


def _reference_valid(kind: str, value: str) -> bool:
    """An independent statement of the formats, written from the issue's table."""
    n = len(value)
    is_digits = value.isdigit() and value.isascii()
    is_hex = all(c in HEX for c in value.upper()) and n > 0
    return {
        "mdn": is_digits and n == 10,
        "msisdn": is_digits and n == 11,
        "imei": is_digits and n in (15, 16),
        "iccid": is_digits and n in (19, 20),
        "meid": is_hex and n == 14,
        "esn": (is_digits and n == 11) or (is_hex and n == 8),
        "eid": is_digits and n == 32,
        "imsi": is_digits and 6 <= n <= 15,
        "min": is_digits and n == 10,
    }[kind]


def test_ten_digits_are_ambiguous_between_mdn_and_min() -> None:
    """A bare 10-digit id names both candidates and shows how to say mdn."""
    with pytest.raises(InvalidDeviceId) as info:
        parse_device_id("5551234567")
    message = str(info.value)
    assert info.value.candidates == ("mdn", "min")
    assert "mdn:5551234567" in message
    assert "min" in message
    assert "5551234567" not in message.replace("mdn:5551234567", "").replace("min:5551234567", "")


def test_eleven_digits_are_ambiguous_between_msisdn_and_esn() -> None:
    """A bare 11-digit id (also typed +1 555 ...) could be msisdn or esn."""
    with pytest.raises(InvalidDeviceId) as info:
        parse_device_id("+1 555 123 4567")
    assert info.value.candidates == ("msisdn", "esn")


def test_bare_imsi_length_is_not_guessed() -> None:
    """IMSIs need their prefix: a bare 15-digit id is an IMEI, ``imsi:`` makes it an IMSI."""
    assert parse_device_id("311480123456789").kind == "imei"
    assert parse_device_id("imsi:311480123456789").kind == "imsi"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("89148000000800139708", "iccid"),
        ("8914800000080013970", "iccid"),
        ("990013907835573", "imei"),
        ("9900139078355731", "imei"),
        ("a100008385e561", "meid"),
        ("89049032000001000000012345678901", "eid"),
        ("1234abcd", "esn"),
        ("Mdn: 555.123.4567", "mdn"),
        ("msisdn:+1 (555) 123-4567", "msisdn"),
    ],
)
def test_common_inputs(text: str, kind: str) -> None:
    """Typical pasted identifiers parse to the expected kind."""
    assert parse_device_id(text).kind == kind


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "no device identifier"),
        ("   ", "no device identifier"),
        ("hello", "does not look like a device identifier"),
        ("foo:123", "'foo' is not a device id kind"),
        ("mdn:123", "expected 10 digits"),
        ("iccid:8914800000080013970X", "expected 19 or 20 digits"),
        ("9" * 101, "too long"),
    ],
)
def test_bad_input_has_a_specific_message(text: str, fragment: str) -> None:
    """Each kind of bad input says what was wrong."""
    with pytest.raises(InvalidDeviceId, match=fragment):
        parse_device_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "mdn:\uff15\uff15\uff15\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # full-width digits
        "".join(chr(0x0660 + int(d)) for d in "89148000000800139708"),  # Arabic-Indic digits
    ],
)
def test_only_ascii_digits_make_an_id(text: str) -> None:
    """Digits from other scripts would make a second key for the same line, so they are refused."""
    with pytest.raises(InvalidDeviceId):
        parse_device_id(text)


def test_error_messages_mask_long_numbers() -> None:
    """An invalid id that looks like a real identifier is shown masked (…1234), not in full."""
    with pytest.raises(InvalidDeviceId) as info:
        parse_device_id("iccid:891480000008001397081234")
    assert "891480000008001397081234" not in str(info.value)
    assert "…1234" in str(info.value)


def test_wire_ids_are_taken_as_sent() -> None:
    """from_wire lower-cases the kind and keeps ids that fall outside the documented lengths."""
    odd = DeviceId.from_wire({"kind": "ICCID", "id": " 891480000008001397 "})
    assert (odd.kind, odd.id) == ("iccid", "891480000008001397")
    assert DeviceId.from_wire({"kind": "Imei", "id": 990013907835573}).id == "990013907835573"
    assert DeviceId.from_wire({"kind": "meid", "id": "a100008385e561"}).id == "A100008385E561"
    for bad in ({"kind": "iccid"}, {"id": "1"}, {"kind": "", "id": "1"}, {"kind": "mdn", "id": "  "}):
        with pytest.raises(InvalidDeviceId):
            DeviceId.from_wire(bad)


def test_masked_form_hides_all_but_four_digits() -> None:
    """masked() is safe for logs."""
    assert DeviceId("iccid", "89148000000800139708").masked() == "iccid:…9708"


def test_device_ids_are_hashable_and_compare_by_value() -> None:
    """Equal ids are equal whatever case they were typed in, and usable as dict keys."""
    a = DeviceId("ICCID", "89148000000800139708")
    b = parse_device_id("iccid:89148000000800139708")
    assert a == b
    assert {a: 1}[b] == 1
