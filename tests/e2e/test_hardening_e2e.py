"""Findings of the adversarial review (issue 14) replayed end to end: signed requests over loopback
HTTP to the bot, the sandbox behind it, the Slack stand-in recording what people would see."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.cli.main import main
from bot.console.records import Message
from bot.local_stack import LocalStack
from bot.sandbox import EXAMPLE_ICCID
from bot.scheduler.reachability_tasks import evaluate_task
from storage import pending, watches
from storage.audit.log import AuditLog

DEVICE = f"iccid:{EXAMPLE_ICCID}"
HOSTILE = "<!channel> <https://evil.example|open runbook> \u202egnp.exe"
#: Slack's live tokens: a special mention, a user or channel mention, a link
_LIVE = re.compile(r"<(?:!|@|#|https?:|mailto:)")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    s = LocalStack(tmp_path, devices=30, scheduler=False)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _mrkdwn(node: Any) -> Iterator[str]:
    """Every text Slack would parse as mrkdwn in a block tree (plain_text is never parsed)."""
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _mrkdwn(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _mrkdwn(item)


def _shown(message: Message) -> list[str]:
    return [message.text, *_mrkdwn(list(message.blocks))]


def _assert_inert(texts: list[str]) -> None:
    for text in texts:
        if "evil" in text or "runbook" in text:
            assert not re.search(r"<!channel>|<https://evil", text), text
        assert "\u202e" not in text, text


def _verify_exit(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> int:
    stack.stop_bot()
    capsys.readouterr()
    code = main(["audit", "verify", "--db", str(stack.db_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    return code


def _watch_and_alert(stack: LocalStack) -> None:
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    assert stack.command(f"watch {DEVICE} --alert-after 10m").status_code == 200
    _until(lambda: watches.get_state(db, DEVICE) is not None)
    stack.sandbox.set_reachability(EXAMPLE_ICCID, False)
    _until(lambda: (state := watches.get_state(db, DEVICE)) is not None and state.reachable is False)
    assert evaluate_task(stack.runtime.deps, now=time.time() + 11 * 60).raised == 1
    stack.standin.wait_for(lambda m: m.thread_ts is None and "Unreachable" in str(m.blocks), timeout=15)


def _forged_click(stack: LocalStack, label: str, *, owner: str, user: str, channel: str | None = None) -> int:
    """*user* presses the button *label* of a card *owner* sees, claiming *channel* if given."""
    driver = stack.driver
    assert driver is not None
    card, button = driver.find_button(label, user=owner)
    payload = driver.block_actions_payload(card, button, user=user)
    if channel is not None:
        payload["channel"] = {"id": channel, "name": channel}
        payload.setdefault("container", {})["channel_id"] = channel
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return driver.post_raw(body, driver.sign(body)).status_code


# -- 1 -------------------------------------------------------------------------------------------


def test_a_nul_in_a_target_from_anyone_leaves_audit_verify_green(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`/ts suspend mdn:55512<NUL>34567` from a user with no role used to make `tsbot audit verify`
    exit 1 for ever after ("the device index lost a target of row …")."""
    for user in ("U0NOC1", "U012ADMIN"):
        answer = stack.command("suspend mdn:55512\x0034567 --reason x", user=user)
        assert answer.status_code == 200
        assert "invisible character (U+0000)" in answer.json()["text"]
    assert _verify_exit(stack, capsys) == 0


# -- 2 -------------------------------------------------------------------------------------------


def test_thingspace_labels_groups_and_plans_never_become_mentions_or_links(stack: LocalStack) -> None:
    """A CustomField1 of `<!channel> <https://evil.example|open runbook>` (and the same as a group
    and a plan name) shows as text in the status card, find, diag and its ack, `watches`, and the
    alert's Diagnose answer in the alert channel."""
    assert stack.runtime is not None
    with stack.sandbox.state.lock:
        device = stack.sandbox.state.resolve_text(EXAMPLE_ICCID)
        device.custom["CustomField1"] = HOSTILE
        device.groups.append(HOSTILE)
        device.plan = HOSTILE
    acks = [stack.command(f"status {DEVICE}").json()["text"]]
    stack.standin.wait_for(lambda m: "evil" in str(m.blocks) and "Plan" in str(m.blocks), timeout=15)
    acks.append(stack.command("find runbook").text)
    acks.append(stack.command(f"diag {DEVICE}").json()["text"])
    stack.standin.wait_for(lambda m: "Diagnosis" in str(m.blocks), timeout=20)
    _watch_and_alert(stack)
    acks.append(stack.command(f"watches {DEVICE}").json()["text"])
    assert _forged_click(stack, "Diagnose", owner="U012ADMIN", user="U012ADMIN") == 200
    stack.standin.wait_for(lambda m: m.text.startswith(":hourglass_flowing_sand: Running diagnostics for"))
    _until(lambda: len([m for m in stack.standin.messages() if "Diagnosis" in str(m.blocks)]) >= 2, 20)
    assert any("evil" in a for a in acks)
    _assert_inert(acks)
    seen = [text for m in stack.standin.messages() for text in _shown(m)]
    assert any("&lt;!channel&gt;" in text for text in seen)
    _assert_inert(seen)


# -- 4 -------------------------------------------------------------------------------------------


def test_only_the_requester_can_cancel(stack: LocalStack) -> None:
    """Whoever held a pending id could cancel someone else's confirmation."""
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    stack.command(f"suspend {DEVICE} --reason stolen")
    stack.standin.wait_for(lambda m: any(b.text == "Cancel" for b in m.buttons()), timeout=15)
    assert _forged_click(stack, "Cancel", owner="U012ADMIN", user="U0OPS1") == 200
    refusal = stack.standin.wait_for(lambda m: m.text.startswith("Only the person who asked can cancel"))
    assert refusal.ephemeral
    [action] = db.execute("SELECT id FROM pending_actions").fetchall()
    found = pending.get(db, action[0])
    assert found is not None and found.state == "pending"
    rows = AuditLog(db).query(actor="U0OPS1", verb="cancel", limit=5)
    assert [(r.outcome, r.detail.get("why")) for r in rows] == [("refused", "not-requester")]
    assert stack.click("Cancel", user="U012ADMIN").status_code == 200
    _until(lambda: (p := pending.get(db, action[0])) is not None and p.state == "cancelled")


def test_alert_buttons_check_the_role_in_the_alerts_own_channel(stack: LocalStack) -> None:
    """A click on an alert in #C0OPS claiming #C0NOC (where everyone is a viewer) was judged by the
    role in #C0NOC; now by the role in the alert's own channel, where U0NOC1 has none."""
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    _watch_and_alert(stack)
    for label in ("Acknowledge", "Diagnose"):
        assert _forged_click(stack, label, owner="U012ADMIN", user="U0NOC1", channel="C0NOC") == 200
    _until(lambda: len(AuditLog(db).query(actor="U0NOC1", limit=10)) == 2)
    rows = AuditLog(db).query(actor="U0NOC1", limit=10)
    assert sorted((r.verb, r.outcome) for r in rows) == [("alert.ack", "denied"), ("diag", "denied")]
    assert db.execute("SELECT count(*) FROM alerts WHERE acked_by IS NOT NULL").fetchone()[0] == 0


# -- 10 ------------------------------------------------------------------------------------------


def test_a_signed_request_from_another_workspace_is_refused(stack: LocalStack) -> None:
    """`team_id` was ignored: a command or click signed with the app's secret but naming another
    workspace was acted on. The workspace comes from auth.test at start (or SLACK_TEAM_ID)."""
    runtime, driver = stack.runtime, stack.driver
    assert runtime is not None and driver is not None
    _until(lambda: runtime.workspace.team == stack.standin.team_id)
    db = runtime.pool.get()
    before = AuditLog(db).count()
    form = {
        "team_id": "T0ELSEWHERE",
        "channel_id": "C0OPS",
        "user_id": "U012ADMIN",
        "command": "/ts",
        "text": f"status {DEVICE}",
        "response_url": "",
    }
    body = urlencode(form).encode()
    assert driver.post_raw(body, driver.sign(body)).status_code == 403
    stack.command(f"suspend {DEVICE} --reason stolen")
    card, button = driver.find_button("Cancel", user="U012ADMIN")
    payload = driver.block_actions_payload(card, button, user="U012ADMIN")
    payload["team"] = {"id": "T0ELSEWHERE"}
    payload["user"]["team_id"] = "T0ELSEWHERE"
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert driver.post_raw(body, driver.sign(body)).status_code == 403
    assert AuditLog(db).count() == before + 1  # the suspend card only
    assert db.execute("SELECT state FROM pending_actions").fetchone()[0] == "pending"
    form["team_id"] = stack.standin.team_id
    body = urlencode(form).encode()
    assert driver.post_raw(body, driver.sign(body)).status_code == 200


def test_the_bot_posts_only_to_slack_response_urls(stack: LocalStack) -> None:
    """A signed command whose response_url points elsewhere (here: the sandbox) never makes the bot
    send channel content there; the reply is dead-lettered with the reason."""
    runtime, driver = stack.runtime, stack.driver
    assert runtime is not None and driver is not None
    evil = stack.sandbox_server.url + "/steal"
    form = {
        "team_id": stack.standin.team_id,
        "channel_id": "C0OPS",
        "user_id": "U012ADMIN",
        "command": "/ts",
        "text": f"status {DEVICE}",
        "response_url": evil,
    }
    body = urlencode(form).encode()
    assert driver.post_raw(body, driver.sign(body)).status_code == 200
    db = runtime.pool.get()
    _until(lambda: db.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()[0] == 1)
    [error] = db.execute("SELECT last_error FROM outbox WHERE state = 'dead'").fetchone()
    assert "not a Slack address" in error
    assert not [r for r in stack.sandbox.requests_received() if "steal" in r["path"]]


def test_a_right_to_left_override_in_a_reason_cannot_reverse_channel_posts(stack: LocalStack) -> None:
    """U+202E in a reason reached in-channel posts and reversed what readers saw after it."""
    assert stack.command(f"suspend {DEVICE} --reason lost\u202egnp.exe").status_code == 200
    assert stack.click("Confirm", user="U012ADMIN").status_code == 200
    posted = stack.standin.wait_for(lambda m: "lost" in m.text and not m.ephemeral, timeout=20)
    assert "\u202e" not in posted.text and "\u202e" not in json.dumps(list(posted.blocks), ensure_ascii=False)
    assert "lost\ufffdgnp.exe" in posted.text + json.dumps(list(posted.blocks), ensure_ascii=False)
