"""Audit events: validation, secret redaction, and the canonical form the chain hashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.audit.events import (
    AuditEvent,
    Outcome,
    Verb,
    canonical_json,
    export_line,
    format_at,
    row_payload,
)

text = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def test_naive_time_is_refused() -> None:
    """A time without a zone is refused with a message saying so."""
    with pytest.raises(ValueError, match="time zone"):
        AuditEvent(at=datetime(2026, 5, 1, 8, 0), actor="U1", verb=Verb.DIAG)


def test_time_is_stored_in_utc_fixed_width() -> None:
    """Times are converted to UTC and written with microseconds, so text order is time order."""
    ev = AuditEvent(
        at=datetime(2026, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2))), actor="U1", verb="diag"
    )
    assert ev.at == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert format_at(ev.at) == "2026-05-01T08:00:00.000000Z"
    assert format_at(datetime(999, 1, 1, tzinfo=UTC)) < format_at(datetime(2026, 1, 1, tzinfo=UTC))


def test_default_time_is_now_utc() -> None:
    """Without ``at`` the event is stamped now, in UTC."""
    before = datetime.now(UTC)
    ev = AuditEvent(actor="U1", verb=Verb.HELP)
    assert before <= ev.at <= datetime.now(UTC)
    assert ev.at.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"actor": ""}, "actor must not be empty"),
        ({"actor": "  "}, "actor must not be empty"),
        ({"verb": "Suspend"}, "verb 'Suspend' is not a lower-case word"),
        ({"verb": "alert snooze"}, "is not a lower-case word"),
        ({"outcome": "OK!"}, "outcome 'OK!' is not a lower-case word"),
        ({"detail": {"when": datetime(2026, 1, 1, tzinfo=UTC)}}, "detail must be JSON-able"),
        ({"detail": {"x": float("nan")}}, "detail must be JSON-able"),
    ],
)
def test_bad_fields_are_refused(changes: dict[str, Any], message: str) -> None:
    """Each malformed field is refused with a message naming it."""
    fields: dict[str, Any] = {"actor": "U1", "verb": Verb.SUSPEND, **changes}
    with pytest.raises(ValueError, match=message):
        AuditEvent(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"targets": "iccid:89148000000800139708"}, "list of device ids"),
        ({"targets": [123]}, "targets must be text"),
        ({"reason": 5}, "reason must be text"),
        ({"detail": ["not", "a", "dict"]}, "detail must be a dict"),
        ({"detail": {1: "int key"}}, "keys must be text"),
        ({"at": "2026-05-01"}, "at must be a datetime"),
    ],
)
def test_wrong_types_are_refused(changes: dict[str, Any], message: str) -> None:
    """Wrong types are refused with a TypeError naming the field."""
    fields: dict[str, Any] = {"actor": "U1", "verb": Verb.SUSPEND, **changes}
    with pytest.raises(TypeError, match=message):
        AuditEvent(**fields)


def test_targets_are_normalised_in_order_without_duplicates() -> None:
    """Targets keep their order; blanks and duplicates go; the kind is lower-cased."""
    ev = AuditEvent(
        actor="U1",
        verb=Verb.SUSPEND,
        targets=[
            "ICCID:8914800000080013970",
            " mdn:5551234567 ",
            "",
            "iccid:8914800000080013970",
            "group:plant-7",
        ],
    )
    assert ev.targets == ("iccid:8914800000080013970", "mdn:5551234567", "group:plant-7")


def test_request_id_none_is_stored_as_empty() -> None:
    """``request_id=None`` (no request) becomes the empty string."""
    assert AuditEvent(actor="U1", verb=Verb.DIAG, request_id=None).request_id == ""


def test_secrets_in_detail_are_redacted() -> None:
    """Values under secret-looking keys, and Slack tokens anywhere, never reach the row."""
    ev = AuditEvent(
        actor="thingspace",
        verb=Verb.CALLBACK,
        detail={
            "password": "hunter2",
            "body": {"CallbackPassword": "s3cret", "Authorization": "Bearer abc", "keep": "visible"},
            "items": [{"api_key": "k"}, "xoxb-1234567890-abcdefghij"],
            "note": "token xoxp-0987654321-zyxwvut in text",
        },
    )
    flat = canonical_json(ev.detail)
    for secret in ("hunter2", "s3cret", "Bearer abc", "xoxb-1234567890", "xoxp-0987654321"):
        assert secret not in flat
    assert ev.detail["body"]["keep"] == "visible"
    assert ev.detail["password"] == "(redacted)"


def test_lone_surrogates_are_replaced() -> None:
    """Text decoded from a JSON escape like \\ud800 is made storable (U+FFFD) instead of failing."""
    raw = json.loads('"bad \\ud800 text?"')
    ev = AuditEvent(actor="U1", verb=Verb.SMS, reason=raw, detail={raw: raw})
    assert ev.reason == "bad \ufffd text?"
    canonical_json(ev.detail).encode("utf-8")


def test_named_constructors_fill_the_fixed_fields() -> None:
    """The constructors set actor, verb and the detail keys callers would otherwise spell themselves."""
    call = AuditEvent.thingspace_call(
        actor="U1",
        operation="devices/actions/suspend",
        targets=["iccid:89148000000800139708"],
        outcome=Outcome.ACCEPTED,
        latency_ms=123.456,
        request_id="r-1",
        status=202,
    )
    assert (call.verb, call.actor, call.request_id) == ("thingspace.call", "U1", "r-1")
    assert call.detail == {"operation": "devices/actions/suspend", "latency_ms": 123.5, "status": 202}
    back = AuditEvent.callback(
        kind="CarrierService", targets=["iccid:1"], outcome=Outcome.OK, request_id="r-1"
    )
    assert (back.actor, back.verb, back.detail) == ("thingspace", "callback", {"kind": "CarrierService"})
    job = AuditEvent.system(Verb.CONFIG_LOAD, detail={"file": "tsbot.toml"})
    assert (job.actor, job.outcome) == ("system", "ok")


@settings(max_examples=200, deadline=None)
@given(
    row_id=st.integers(min_value=1, max_value=2**53),
    actor=text,
    channel=text,
    verb=text,
    targets=st.lists(text, max_size=4),
    reason=text,
    outcome=text,
    request_id=text,
    detail=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_fast_payload_equals_canonical_json(
    row_id: int,
    actor: str,
    channel: str,
    verb: str,
    targets: list[str],
    reason: str,
    outcome: str,
    request_id: str,
    detail: dict[str, Any],
) -> None:
    """The string-built payload the chain hashes is exactly canonical_json of the row object."""
    row = {
        "id": row_id,
        "at": "2026-05-01T08:00:00.000000Z",
        "actor": actor,
        "channel": channel,
        "verb": verb,
        "targets": targets,
        "reason": reason,
        "outcome": outcome,
        "request_id": request_id,
        "detail": detail,
    }
    payload = row_payload(
        row_id,
        row["at"],  # type: ignore[arg-type]
        actor,
        channel,
        verb,
        canonical_json(targets),
        reason,
        outcome,
        request_id,
        canonical_json(detail),
    )
    assert payload == canonical_json(row)
    columns = (row_id, row["at"], actor, channel, verb, canonical_json(targets), reason, outcome, request_id)
    line = export_line((*columns, canonical_json(detail), "p" * 64, "h" * 64))
    assert line == canonical_json({**row, "prev_hash": "p" * 64, "hash": "h" * 64})
