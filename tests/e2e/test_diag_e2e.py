"""`/ts diag` end to end: one sandbox scenario per verdict, over loopback through the real bot.

The sandbox seeds one device per diagnostic condition (labels ``demo-<condition>``); the bot
runs the checks against it through the real ThingSpace client and answers through the Slack
stand-in's response_url. Each test reads the card the user sees: grade, key evidence, buttons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.console.records import Message
from bot.console.render import render_blocks
from bot.core.directory_sync import sync_directory
from bot.core.redact import mask_id
from bot.local_stack import LocalStack
from bot.sandbox.conditions import billing_cycle_start
from bot.thingspace.ids import DeviceId
from commands.diag import gather
from tests.helpers.stacks import stack_fixture

REBOOT_TEXT = 'AT+CFUN=1,1 "reboot"'
USAGE_PATH = "/m2m/v1/devices/usage/actions/list"
ACCOUNT_PATH = "/m2m/v1/accounts/*"
ERROR_BODY = {
    "errorCode": "UnifiedWebService.REQUEST_FAILED.UnexpectedError",
    "errorMessage": "Unexpected error",
}


stack = stack_fixture(devices=40, scheduler=False, settings_overrides={"reboot_sms_text": REBOOT_TEXT})


def iccid(stack: LocalStack, condition: str) -> str:
    return stack.sandbox.demo_devices()[condition]["iccid"]


def run_diag(
    stack: LocalStack, condition: str, *, user: str = "U012ADMIN", channel: str = "C0OPS"
) -> Message:
    """Send `/ts diag` for the demo device of ``condition``; return the card posted back."""
    label = f"demo-{condition}"
    before = {m.ts for m in stack.standin.messages()}
    response = stack.command(f"diag iccid:{iccid(stack, condition)}", user=user, channel=channel)
    assert response.status_code == 200
    return stack.standin.wait_for(
        lambda m: (
            m.ts not in before
            and m.source == "response_url"
            and "Diagnosis" in m.text + json.dumps(m.blocks)
            and label in m.text
        ),
        timeout=20,
    )


def grade(card: Message) -> str:
    headline = card.blocks[1]["text"]["text"]
    return headline.split("*")[1].lower()


def text(card: Message) -> str:
    return "\n".join(render_blocks(card.blocks))


def buttons(card: Message) -> list[str]:
    """The next-step buttons (Share to channel is on every card the asker sees)."""
    shown = [b.text for b in card.buttons()]
    assert shown[-1:] == ["Share to channel"], shown
    return shown[:-1]


@dataclass(frozen=True)
class Scenario:
    condition: str
    grade: str
    evidence: str
    buttons: list[str]
    also: tuple[str, ...] = ()
    answered: int = 7


SCENARIOS = [
    Scenario("healthy", "healthy", "nothing to do", []),
    Scenario("usage-spike", "degraded", "in the last hour (usual: ", ["Suspend…", "Watch"]),
    Scenario("suspended", "down", "auto-resumes on", ["Resume"]),
    Scenario("action-limit", "degraded", "5 of 5 provisioning actions used today", []),
    Scenario(
        "hung",
        "down",
        "attached, but no data session for 26 h: device likely hung",
        ["Cancel location", "Send reboot SMS", "Watch"],
    ),
    Scenario("reconnect-loop", "degraded", "in a reconnect loop", ["Send reboot SMS", "Watch"]),
    Scenario("no-traffic", "down", "but no traffic for 4 days", ["Send reboot SMS", "Watch"]),
    Scenario("imei-mismatch", "degraded", "SIM in other hardware", ["Suspend…", "Watch"]),
    Scenario("asleep", "healthy", "asleep by design: wakes every ~12 h", ["Watch"]),
    # the toolbox's demo lines: an NB-IoT meter (NIDD) and a tracker roaming abroad, both healthy
    Scenario("nbiot", "healthy", "nothing to do", []),
    Scenario("roaming", "healthy", "nothing to do", []),
    Scenario("down", "down", "missed 6 wake-up(s)", ["Ask the network", "Send reboot SMS", "Watch"]),
    Scenario(
        "over-plan",
        "degraded",
        "but over its plan: ",
        ["Watch"],
        also=("this cycle of 1.0 GB (", "; allowance from the account's plan list)"),
    ),
    Scenario(
        "wake-overdue",
        "degraded",
        "wake-up overdue: wakes every ~12 h, last seen 19 h ago",
        ["Ask the network", "Watch"],
        also=("its wake-up is overdue",),
    ),
    Scenario(
        "imei-changed",
        "degraded",
        "SIM in other hardware: IMEI changed from …",
        ["Suspend…", "Watch"],
        also=("not in ThingSpace's mismatch report",),
    ),
    Scenario(
        "diag-unavailable",
        "unknown",
        "Not enough to go on: line details, extended diagnostics, provisioning history, connection "
        "history, usage history could not run; try again in a few minutes.",
        ["Retry"],
        also=("Could not run:* line details:", "Could not run:* usage history:"),
        answered=2,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.condition for s in SCENARIOS])
def test_each_condition_gets_its_verdict(stack: LocalStack, scenario: Scenario) -> None:
    """The demo device of each condition gets the right grade, the key evidence and the buttons."""
    if scenario.condition == "over-plan":
        cycle = datetime.now(UTC) - billing_cycle_start(stack.sandbox.clock())
        if cycle < timedelta(hours=4):
            pytest.skip(f"the billing cycle began {cycle} ago: too few sessions rated to be over any plan")
    card = run_diag(stack, scenario.condition)
    assert grade(card) == scenario.grade, text(card)
    assert scenario.evidence in text(card)
    for evidence in scenario.also:
        assert evidence in text(card), text(card)
    assert buttons(card) == scenario.buttons
    assert f"{scenario.answered} of 7 ThingSpace checks answered" in text(card)


def test_pending_request_is_shown_and_blocks_provisioning_buttons(stack: LocalStack) -> None:
    """A suspend that ThingSpace keeps Pending makes the line degraded, with a Request status button."""
    target = f"iccid:{iccid(stack, 'pending')}"
    stack.command(f"suspend {target} --reason test")
    stack.standin.wait_for(lambda m: any(b.text == "Confirm" for b in m.buttons()), timeout=10)
    stack.click("Confirm")
    stack.standin.wait_for(lambda m: "ThingSpace accepted the suspension" in m.text, timeout=10)
    card = run_diag(stack, "pending")
    assert grade(card) == "degraded"
    assert "is still waiting for ThingSpace's result" in text(card)
    assert "pending: suspend `" in text(card)
    assert buttons(card) == ["Request status"]
    button = card.buttons()[0]
    assert button.value is not None and button.value.startswith("request ")


def test_a_failed_check_is_named_and_the_verdict_still_stands(stack: LocalStack) -> None:
    """With the usage history failing, the hung line is still down and the card says what could not run."""
    stack.sandbox.inject_fault(USAGE_PATH, status=400, body=ERROR_BODY)
    card = run_diag(stack, "hung")
    assert grade(card) == "down"
    assert "no data session for 26 h" in text(card)
    assert "Could not run:* usage history:" in text(card)
    assert "6 of 7 ThingSpace checks answered" in text(card)


def test_unknown_when_the_line_checks_fail(stack: LocalStack) -> None:
    """With device list, diagnostics and connection history failing, the verdict is unknown."""
    for path in (
        "/m2m/v1/devices/actions/list",
        "/m2m/v1/devices/extendeddiagnostics/actions/list",
        "/m2m/v1/devices/connections/actions/listHistory",
    ):
        stack.sandbox.inject_fault(path, status=400, body=ERROR_BODY)
    card = run_diag(stack, "healthy")
    assert grade(card) == "unknown", text(card)
    assert (
        "Not enough to go on: line details, extended diagnostics, connection history could not run"
        in text(card)
    )
    assert buttons(card) == ["Retry"]


def test_reboot_button_sends_the_configured_text(stack: LocalStack) -> None:
    """Send reboot SMS runs `sms` for the clicker with the configured text, quotes included."""
    card = run_diag(stack, "reconnect-loop")
    [sms] = [b for b in card.buttons() if b.text == "Send reboot SMS"]
    assert sms.value == f"sms iccid:{iccid(stack, 'reconnect-loop')} " + '"AT+CFUN=1,1 \\"reboot\\""'
    sent_before = len(stack.sandbox.requests_received(path="/m2m/v1/sms"))
    assert stack.driver is not None
    reply = stack.driver.click("Send reboot SMS", user="U012ADMIN", ts=card.ts)
    assert reply.status_code == 200
    stack.standin.wait_for(lambda m: "Sending the SMS" in m.text, timeout=10)
    assert stack.settle(20)
    assert len(stack.sandbox.requests_received(path="/m2m/v1/sms")) == sent_before + 1
    assert stack.runtime is not None
    row = stack.runtime.pool.get().execute("SELECT detail FROM ts_requests WHERE verb = 'sms'").fetchone()
    assert json.loads(row[0])["text"] == REBOOT_TEXT


def test_viewer_can_diagnose(stack: LocalStack) -> None:
    """A NOC analyst (viewer) gets the same verdict card."""
    card = run_diag(stack, "hung", user="U0NOC1", channel="C0NOC")
    assert grade(card) == "down"


def test_diag_is_audited_with_its_grade(stack: LocalStack) -> None:
    """Each diagnosis leaves an audit row with the grade as its outcome."""
    run_diag(stack, "asleep")
    assert stack.runtime is not None
    rows = stack.runtime.pool.get().execute("SELECT outcome FROM audit_log WHERE verb = 'diag'").fetchall()
    assert "healthy" in {r[0] for r in rows}


def test_unknown_device_gets_a_clear_answer(stack: LocalStack) -> None:
    """A well-formed ICCID the account does not hold is answered plainly, without a card."""
    before = {m.ts for m in stack.standin.messages()}
    stack.command("diag iccid:89148000000000000003")
    reply = stack.standin.wait_for(lambda m: m.ts not in before and m.source == "response_url", timeout=20)
    assert "Diagnosis" not in reply.text
    assert "Traceback" not in reply.text


def test_a_watched_line_uses_its_watch_cycle(stack: LocalStack) -> None:
    """A watched sleepy line is judged on its watch's wake cycle and gets no second Watch button."""
    target = f"iccid:{iccid(stack, 'asleep')}"
    stack.command(f"watch {target} --wake-every 12h")
    try:
        card = run_diag(stack, "asleep")
        assert grade(card) == "healthy"
        assert "wakes every ~12 h (its watch)" in text(card)
        assert buttons(card) == []
    finally:
        stack.command(f"unwatch {target}")


def test_every_sandbox_condition_has_a_scenario(stack: LocalStack) -> None:
    """The table covers every condition the sandbox can put a line into, and every grade."""
    assert {s.condition for s in SCENARIOS} | {"pending"} == set(stack.sandbox.conditions())
    assert {s.grade for s in SCENARIOS} == {"healthy", "degraded", "down", "unknown"}


def test_without_account_info_the_plan_is_not_checked_and_the_card_says_so(stack: LocalStack) -> None:
    """The over-plan line's plan code has no size: with account info failing there is no allowance,
    the card names the failed check and says why the plan was not checked."""
    stack.sandbox.inject_fault(ACCOUNT_PATH, status=400, body=ERROR_BODY)
    card = run_diag(stack, "over-plan")
    assert "Could not run:* account info:" in text(card)
    assert "this cycle (no allowance known: the account's plan list could not be read)" in text(card)
    assert "over its plan" not in text(card)
    assert "6 of 7 ThingSpace checks answered" in text(card)


def test_imei_change_outlives_the_next_directory_sync(stack: LocalStack) -> None:
    """The sandbox moves a line's SIM; diag first says so against the directory's IMEI, and after the
    next directory sync still says "IMEI changed from …old to …new on DATE" (masked), within the
    configured window only."""
    assert stack.runtime is not None
    line = stack.sandbox.state.devices[20]
    old, new = line.original_imei, line.spare_imei
    stack.sandbox.set_condition(f"iccid:{line.iccid}", "imei-changed")
    change = f"IMEI changed from {mask_id(old)} to {mask_id(new)}"

    card = _diag_line(stack, line.iccid, line.label)
    assert grade(card) == "degraded", text(card)
    assert f"{change} (since the bot's directory sync of " in text(card)
    assert old not in json.dumps(card.blocks) and new not in json.dumps(card.blocks)

    sync_directory(stack.runtime.thingspace, stack.runtime.pool.get())
    card = _diag_line(stack, line.iccid, line.label)
    moment = datetime.now(UTC)
    today = f"{moment:%a} {moment.day} {moment:%b %Y}"  # a date token's fallback
    assert grade(card) == "degraded", text(card)
    assert f"{change} on {today} (recorded by the bot's directory sync; not in ThingSpace's" in text(card)
    assert buttons(card) == ["Suspend…", "Watch"]

    target = DeviceId.from_wire({"kind": "iccid", "id": line.iccid})
    facts, _ = gather(stack.runtime.deps, target, str(target))
    assert facts.mismatches and facts.mismatches[0].after == new
    expired, _ = gather(stack.runtime.deps, target, str(target), imei_window=timedelta(seconds=0))
    assert expired.mismatches == []


def _diag_line(stack: LocalStack, iccid: str, label: str) -> Message:
    before = {m.ts for m in stack.standin.messages()}
    stack.command(f"diag iccid:{iccid}")
    return stack.standin.wait_for(
        lambda m: (
            m.ts not in before
            and m.source == "response_url"
            and "Diagnosis" in json.dumps(m.blocks)
            and label in m.text
        ),
        timeout=20,
    )
