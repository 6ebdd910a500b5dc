"""The 3 a.m. experience end to end: flows finish out loud, cards remember, history reads as a story.

A real bot, the sandbox behind the real client and the Slack stand-in; every payload is also
checked against Slack's limits by the e2e conftest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.console.records import Message
from bot.console.render import render_message
from bot.inbox.unanswered import check_unanswered
from bot.local_stack import LocalStack
from storage import directory


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("3am"),
        devices=80,
        settings_overrides={
            "approval_size": 3,
            "no_result_after": timedelta(seconds=2),
            "approver_mention": "S0ONCALL",
        },
        scheduler=False,
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _key(stack: LocalStack, label: str) -> str:
    assert stack.runtime is not None
    found, _ = directory.find(stack.runtime.pool.get(), label, limit=1)
    assert found, label
    return found[0].key


def _wait(stack: LocalStack, predicate: object, timeout: float = 15) -> Message:
    return stack.standin.wait_for(predicate, timeout=timeout)  # type: ignore[arg-type]


def test_a_bulk_suspend_that_stalls_names_the_line_then_finishes_out_loud(stack: LocalStack) -> None:
    """Point 1: one line's callback is lost; the progress line names the outstanding line; once the
    bot has asked ThingSpace the request settles with a NEW thread message naming requester and
    approver, and the headline turns to the past tense."""
    keys = [
        _key(stack, label)
        for label in ("demo-imei-changed", "demo-reconnect-loop", "demo-imei-mismatch", "demo-over-plan")
    ]
    stack.command(f"suspend {' '.join(keys)} --reason depot closed")
    _wait(stack, lambda m: "Provisioning limits read" in str(m.blocks))
    stack.click("Confirm")
    _wait(stack, lambda m: "Approval needed" in m.text)
    stack.sandbox.drop_callbacks(1, "CarrierService")
    stack.click("Approve", user="U0OPS1")
    stalled = _wait(stack, lambda m: "3 of 4" in m.text and "waiting for demo-" in m.text)
    assert "is suspending" in stalled.text
    assert stack.runtime is not None
    assert check_unanswered(stack.runtime.deps, now=time.time() + 61) >= 1  # reconcile_after passed
    settled = _wait(stack, lambda m: m.thread_ts == stalled.ts and "4 of 4 suspended" in m.text)
    assert "<@U012ADMIN>" in settled.text and "approved by <@U0OPS1>" in settled.text
    assert {b.text for b in settled.buttons()} == {"Details"}
    root = _wait(stack, lambda m: m.ts == stalled.ts and "suspended 4 devices" in str(m.blocks))
    print(render_message(root))
    print(render_message(settled))


def test_a_bulk_line_that_fails_is_named_in_the_settle_message() -> None:
    """The settle message names the lines that failed when there are few (pure rendering)."""
    from bot.render.results import Tally, settle_message

    tally = Tally.of([("ok", "", "", 29), ("no-result", "", "", 1)], total=30)
    text, body = settle_message(
        "suspend",
        "r1",
        tally,
        actor="U1",
        approver="U2",
        unfinished=[("demo-pending (iccid …4729)", "no-result")],
    )
    assert text.startswith(":warning: 29 of 30 suspended") and "no result: demo-pending (iccid …4729)" in text
    assert [e["text"]["text"] for e in body[1]["elements"]] == ["Retry failed", "Details"]


def test_a_single_device_post_is_updated_to_its_outcome(stack: LocalStack) -> None:
    """Point 1: the in-channel message of a one-device suspend becomes "⏸ Suspended … auto-resumes …"."""
    key = _key(stack, "demo-usage-spike")
    stack.command(f"suspend {key} --reason stolen")
    _wait(stack, lambda m: "Provisioning limits read" in str(m.blocks))
    stack.click("Confirm")
    # the root post (it may already carry the outcome if the callback beat the first send)
    done = _wait(stack, lambda m: m.thread_ts is None and "Suspended demo-usage-spike" in m.text)
    assert "auto-resumes" in done.text and "stolen" in done.text and "<@U012ADMIN>" in done.text
    assert "<!date^" in done.text


def test_approvals_reach_the_approvers_and_the_requester_hears_back(stack: LocalStack) -> None:
    """Point 5: the approval card mentions the approvers' group, lists every device in its thread,
    styles Approve primary; the requester is told when it is approved."""
    assert stack.runtime is not None
    found, _ = directory.find(stack.runtime.pool.get(), "meter", limit=14)
    keys = [d.key for d in found if d.state == "active"][:12]
    assert len(keys) == 12
    stack.command(f"suspend {' '.join(keys)} --reason feeder work")
    _wait(stack, lambda m: "Provisioning limits read" in str(m.blocks) and "feeder" in str(m.blocks))
    stack.click("Confirm")
    card = _wait(stack, lambda m: "Approval needed" in m.text and "feeder work" in m.text)
    assert card.text.startswith("<!subteam^S0ONCALL> ")
    (approve,) = [b for b in card.buttons() if b.text == "Approve"]
    assert approve.style == "primary" and approve.has_confirm
    listing = _wait(stack, lambda m: m.thread_ts == card.ts and "All 12 devices" in m.text)
    assert listing.text.count("• ") == 12
    stack.click("Approve", user="U0OPS2", channel="C0OPS")
    told = _wait(
        stack,
        lambda m: m.ephemeral and m.user == "U012ADMIN" and "approved your suspend of 12 devices" in m.text,
    )
    assert "<@U0OPS2>" in told.text
    print(render_message(card))


def test_fewer_ephemerals_buttons_by_role_and_share_to_channel(stack: LocalStack) -> None:
    """Points 6 and 9: the "⏳" ack is replaced by the answer; a button's answer never overwrites
    the card it came from; a viewer's card offers no Suspend…; Share to channel posts for everyone;
    every diag button that changes something has a confirm dialog."""
    key = _key(stack, "demo-healthy")
    stack.command(f"status {key}")
    card = _wait(stack, lambda m: m.ephemeral and "Looking up" in m.versions[0].text and "active" in m.text)
    assert card.updated and {b.text for b in card.buttons()} >= {"Diagnose", "Suspend…", "Share to channel"}
    find = stack.command("find demo-healthy").json()
    assert "demo-healthy" in find["text"]
    found = _wait(stack, lambda m: m.ephemeral and "match" in m.text and "demo-healthy" in str(m.blocks))
    assert stack.driver is not None
    stack.driver.click("Status", user="U012ADMIN", ts=found.ts)
    answer = _wait(
        stack, lambda m: m.ts != card.ts and m.ts != found.ts and m.ephemeral and "— active" in str(m.blocks)
    )
    assert not stack.standin.message(found.channel, found.ts).updated  # the find card is untouched
    assert not any("Looking up" in m.text and m.ts > found.ts for m in stack.standin.messages())
    stack.command(f"status {key}", user="U0NOC1", channel="C0NOC")
    viewer = _wait(stack, lambda m: m.user == "U0NOC1" and "— active" in str(m.blocks))
    assert {b.text for b in viewer.buttons()} == {"Diagnose", "Share to channel"}
    stack.driver.click("Share to channel", user="U0NOC1", ts=viewer.ts, channel="C0NOC")
    shared = _wait(stack, lambda m: not m.ephemeral and "Shared by <@U0NOC1>" in str(m.blocks))
    assert shared.channel == "C0NOC" and "Share to channel" not in {b.text for b in shared.buttons()}
    stack.command(f"diag {_key(stack, 'demo-hung')}")
    diag = _wait(
        stack, lambda m: m.ephemeral and "Diagnosis" in str(m.blocks) and "demo-hung" in str(m.blocks)
    )
    changing = [b for b in diag.buttons() if b.text not in ("Share to channel", "Retry", "Request status")]
    assert changing and all(b.has_confirm for b in changing), [(b.text, b.has_confirm) for b in changing]
    print(render_message(answer))


def test_a_button_started_action_opens_one_modal_and_its_reason_reaches_post_and_audit(
    stack: LocalStack,
) -> None:
    """Point 2: Suspend… on a status card opens one confirmation (a modal with a reason field), posts
    no second card and never overwrites the status card; the reason reaches the post and the log."""
    from storage.audit.log import AuditLog

    key = _key(stack, "demo-no-traffic")
    stack.command(f"status {key}")
    status = _wait(
        stack, lambda m: m.ephemeral and "demo-no-traffic" in str(m.blocks) and "Suspend…" in str(m.blocks)
    )
    before = len(stack.standin.messages())
    assert stack.driver is not None
    stack.driver.click("Suspend…", user="U012ADMIN", ts=status.ts)
    (modal,) = stack.standin.open_modals("U012ADMIN")
    assert modal["title"]["text"] == "Suspend?" and any(b["type"] == "input" for b in modal["blocks"])
    assert len(stack.standin.messages()) == before  # no second card
    too_long = stack.driver.submit_modal(user="U012ADMIN", values={"reason": "x" * 301})
    assert too_long.json()["response_action"] == "errors" and stack.standin.open_modals("U012ADMIN")
    done = stack.driver.submit_modal(user="U012ADMIN", values={"reason": "owner’s report"})
    assert done.status_code == 200 and not stack.standin.open_modals("U012ADMIN")
    root = _wait(
        stack, lambda m: m.thread_ts is None and "demo-no-traffic" in m.text and "owner’s report" in m.text
    )
    assert not root.ephemeral
    assert stack.standin.message(status.channel, status.ts).versions[-1].text == status.versions[-1].text
    assert stack.runtime is not None
    rows = AuditLog(stack.runtime.pool.get()).query(target=key, verb="confirm", limit=1)
    assert rows and rows[0].reason == "owner’s report"
