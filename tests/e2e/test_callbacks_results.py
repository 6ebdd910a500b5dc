"""Pure parts of callback results: outcome ranks, progress and summary rendering; the jobs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bot.core import outcome_status as outcomes
from bot.inbox.unanswered import INBOX_RETENTION, purge_inbox_task
from bot.render import blocks, results, times
from bot.thingspace.events import parse_callback
from storage import inbox
from storage.db import write
from tests.helpers.callbacks import CallbackBot, callback, callback_bot_fixture  # noqa: F401

DEVICE = "iccid:89148000000800139708"


def test_statuses_never_move_back() -> None:
    """Final outcomes outrank intermediate ones, which outrank pending; failures are retryable."""
    sent = outcomes.status_for(parse_callback(callback("r", DEVICE, outcome="sms-sent")))
    delivered = outcomes.status_for(parse_callback(callback("r", DEVICE, outcome="sms-delivered")))
    failed = outcomes.status_for(parse_callback(callback("r", DEVICE, fault=("X.Y.Z", "no"))))
    assert (sent, delivered, failed) == ("sent", "delivered", "failed")
    assert (
        outcomes.rank("pending")
        < outcomes.rank("sent")
        < outcomes.rank("delivered")
        == outcomes.rank("failed")
    )
    assert {"failed", "expired", "no-result"} == outcomes.RETRYABLE
    assert outcomes.status_for(parse_callback(callback("r", DEVICE, outcome="external"))) is None


def test_progress_then_summary_with_failures_by_reason() -> None:
    """The root keeps its own blocks, shows the bar while waiting, and the summary at the end,
    with the ten most common reasons and the rest counted together."""
    root_blocks = [blocks.section("Suspending 4,000 devices"), blocks.context("Request `r1`")]
    waiting = results.Tally.of(
        [("ok", "", "", 2468), ("failed", "Device not found", "NF", 12), ("pending", "", "", 1520)]
    )
    text, body = results.progress_message("suspend", "r1", "Suspending 4,000 devices", root_blocks, waiting)
    assert text == "Suspending 4,000 devices — ▓▓▓▓▓▓░░░░ 62% · 2,480 of 4,000 · 12 failed"
    assert body[:2] == root_blocks and len(body) == 3
    groups = [("ok", "", "", 3000)] + [("failed", f"reason {i}", f"C{i}", 12 - i) for i in range(12)]
    done = results.Tally.of(groups)
    text, body = results.progress_message("suspend", "r1", "Suspending", body, done)
    assert text.endswith("done: 3,000 of 3,078 suspended, 78 failed")
    summary = str(body)
    assert "reason 0 (C0) — 12" in summary and "reason 9 (C9) — 3" in summary
    assert "reason 10" not in summary and "other reasons — 3" in summary
    assert summary.count("▓▓▓▓▓▓▓▓▓▓ 100%") == 1  # the old progress block was replaced
    assert [b["elements"][0]["action_id"].rsplit(":", 1)[0] for b in body if b["type"] == "actions"] == [
        "ts:retry"
    ]


def test_a_summary_without_failures_has_no_retry_button() -> None:
    """All devices answered without failure: a check mark and no Retry failed."""
    text, body = results.progress_message(
        "resume", "r2", "Resuming", None, results.Tally.of([("ok", "", "", 3)])
    )
    assert text == "Resuming — done: 3 of 3 resumed, 0 failed"
    assert ":white_check_mark:" in str(body) and not [b for b in body if b["type"] == "actions"]


def test_the_headline_survives_a_folded_progress_text() -> None:
    """The headline is the root's own first section, not a text that already carries progress."""
    folded = [
        blocks.section("Suspending 30 devices"),
        {**blocks.context("░ 0% · 1 of 30"), "block_id": "ts-result-progress"},
    ]
    assert results.headline("Suspending 30 devices — ░ 0% · 1 of 30", folded) == "Suspending 30 devices"
    assert results.headline("Plain root\nsecond line", None) == "Plain root"


def test_single_replies_say_what_happened() -> None:
    """Suspended until a date in the configured zone; failures say why and offer a retry."""
    tz = results.zone("America/New_York")
    now = datetime(2026, 1, 10, 8, 12, tzinfo=UTC)
    detail = {"at": "2026-01-10T08:12:00+00:00", "resume_date": "2026-04-10T00:00:00+00:00"}
    text, body = results.single_reply("suspend", "ok", detail, "tracker-1", tz=tz, request_id="r", now=now)
    assert "<!date^" in text  # each reader's own zone in Slack; the fallback in the configured zone
    text = times.fallback(text)
    assert "suspended until Thu 9 Apr 2026" in text and "03:12 EST" in text and "(89 days)" in text
    assert len(body) == 1
    text, body = results.single_reply(
        "resume",
        "failed",
        {"reason": "Device not found", "code": "NF"},
        "tracker-1",
        tz=tz,
        request_id="r",
        now=now,
    )
    assert text == ":x: Resume of tracker-1 failed: Device not found (NF)."
    assert body[1]["elements"][0]["value"] == "r"
    assert results.zone("Not/AZone") is UTC


def test_the_scheduler_runs_the_no_result_check_and_inbox_retention(cb_bot: CallbackBot) -> None:
    """Both jobs are registered with explicit ids; retention drops only old processed rows."""
    scheduler = cb_bot.runtime.build_scheduler()
    ids = {job.id for job in scheduler.get_jobs()}
    assert {"callbacks-no-result", "inbox-retention"} <= ids
    cb_bot.post(callback("old", DEVICE))
    cb_bot.settle()
    db = cb_bot.db
    with write(db):
        inbox.insert_many(db, [inbox.InboxItem("new", DEVICE, "k", "CarrierService", "suspended", {})])
    later = time.time() + INBOX_RETENTION.total_seconds() - 60
    assert purge_inbox_task(cb_bot.runtime.deps, now=later + 120) == 1  # the processed one only
    assert inbox.count_by_state(db) == {"received": 1}
