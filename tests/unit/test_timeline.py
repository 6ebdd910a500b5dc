"""/ts history as a timeline (bot.render.timeline): folding, system actors, interleaving, times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.console.limits import payload_problems
from bot.render import timeline
from storage.audit.events import AuditRow

T0 = datetime(2026, 12, 7, 8, 35, tzinfo=UTC)
DEVICE = "iccid:89148000000800139708"


def _row(
    rid: int, actor: str, verb: str, outcome: str, *, request_id: str = "", reason: str = "", **detail: Any
) -> AuditRow:
    return AuditRow(
        id=rid,
        at=T0 + timedelta(seconds=rid),
        actor=actor,
        channel="C0OPS",
        verb=verb,
        targets=(DEVICE,),
        reason=reason,
        outcome=outcome,
        request_id=request_id,
        detail=detail,
        prev_hash="",
        hash="",
    )


REQ = "0e0448a6-71b9-424d-a401-4cefb43c8d2b"
ROWS = [
    _row(1, "U012ADMIN", "diag", "degraded"),
    *[
        _row(i, "U012ADMIN", "thingspace.call", "ok", operation=op, **{"for": "diag"})
        for i, op in enumerate(("get_device", "extended_diagnostics", "usage_history"), 2)
    ],
    _row(5, "U012ADMIN", "suspend", "awaiting-confirmation", reason="stolen", pending="p1"),
    _row(6, "U012ADMIN", "confirm", "ok", pending="p1"),
    _row(
        7,
        "U012ADMIN",
        "thingspace.call",
        "accepted",
        request_id=REQ,
        operation="POST /m2m/v1/devices/actions/suspend",
    ),
    _row(8, "thingspace", "callback", "ok", request_id=REQ, kind="suspended"),
    _row(9, "system", "approve", "expired", pending="other"),
    _row(10, "U012ADMIN", "history", "ok"),
]


def test_one_entry_per_action_with_its_calls_folded_under_it() -> None:
    entries = timeline.fold(list(reversed(ROWS)))
    assert [e.title.split("*")[1] for e in entries] == [
        "approve",
        "suspend",
        "diag",
    ]  # newest first, history hidden
    approve, suspend, diag = entries
    assert timeline.who(approve.actor) == "the bot" and timeline.who("thingspace") == "ThingSpace"
    assert "→ suspended" in suspend.title and "_stolen_" in suspend.title
    assert suspend.lines == [
        "confirm by <@U012ADMIN> → ok",
        "ThingSpace took the suspend request · req `0e0448a6`",
        "ThingSpace called back: suspended → ok",
    ]
    assert diag.lines == [
        "3 ThingSpace calls (get_device, extended_diagnostics, usage_history) — all answered"
    ]


def test_rows_from_thingspace_interleave_by_time() -> None:
    entries = timeline.fold(ROWS)
    outside = timeline.TimelineEntry(
        at=T0 + timedelta(seconds=3, milliseconds=500),
        actor="thingspace",
        title="*Restore* in the portal",
        source="thingspace",
    )
    merged = timeline.interleave(entries, [outside])
    assert [e.source for e in merged] == ["bot", "bot", "thingspace", "bot"]
    assert merged[2] is outside


def test_rendered_times_are_date_tokens_with_ago_and_within_slack_limits() -> None:
    entries = timeline.fold(ROWS)
    now = T0 + timedelta(minutes=12, seconds=1)
    body = timeline.render(entries, title="*History of demo*", tz=UTC, now=now)
    text = json.dumps(body)
    assert "<!date^" in text and "|08:35 UTC>" in text and "(12 min ago)" in text
    assert "<@system>" not in text and "<@thingspace>" not in text
    assert payload_problems("response_url", {"text": "History", "blocks": body}) == []
    yesterday = timeline.render(entries, title="t", tz=UTC, now=now + timedelta(days=1))
    assert "|Mon 7 Dec 08:35 UTC>" in json.dumps(yesterday)
