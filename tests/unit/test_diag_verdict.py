"""Pure tests of the diag verdict (commands/verdict.py): facts in, grade, sentence, evidence, steps out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.render import times
from bot.thingspace.models import Account, ConnectionEvent, UsageRecord
from commands.grammar import parse
from commands.registry import VERBS
from commands.verdict import (
    Facts,
    Mismatch,
    PendingRequest,
    Verdict,
    format_bytes,
    judge,
    plan_allowance,
    quote_argument,
    session_stats,
    sparkline,
    usage_stats,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
TARGET = "iccid:89148000000800139708"
MB = 1024 * 1024


def event(at: datetime, kind: str, nbytes: int = 0) -> ConnectionEvent:
    attributes = {"Event": kind, "BytesUsed": str(nbytes)}
    return ConnectionEvent(occurred_at=at, event=kind, bytes_used=nbytes, attributes=attributes)


def sessions(starts: Sequence[datetime], *, length: timedelta, nbytes: int = 0) -> list[ConnectionEvent]:
    """A Start/Stop pair for each start, each Stop carrying ``nbytes``."""
    out: list[ConnectionEvent] = []
    for start in starts:
        out.append(event(start, "Start"))
        out.append(event(start + length, "Stop", nbytes))
    return out


def hourly(until: datetime, hours: int = 48, nbytes: int = MB) -> list[ConnectionEvent]:
    """An always-on device reporting every hour up to ``until``."""
    return sessions(
        [until - timedelta(hours=h) for h in range(hours, 0, -1)], length=timedelta(minutes=5), nbytes=nbytes
    )


def daily(per_day: Sequence[int]) -> list[UsageRecord]:
    """Daily usage records; the last value is today."""
    today = NOW.replace(hour=0, minute=0)
    n = len(per_day)
    return [
        UsageRecord(timestamp=today - timedelta(days=n - 1 - i), bytes_used=b, sms_used=0)
        for i, b in enumerate(per_day)
    ]


def base(**changes: object) -> Facts:
    """A healthy always-on tracker: active, attached, a session every hour, ~24 MB a day."""
    facts = Facts(
        now=NOW,
        target=TARGET,
        state="active",
        plan="IoT-1GB",
        actions_today=0,
        pending=(),
        attached=True,
        connected=True,
        last_connection=NOW - timedelta(minutes=4),
        events=hourly(NOW - timedelta(minutes=4)),
        usage=daily([24 * MB] * 20),
        cycle_start=NOW - timedelta(days=13),
        mismatches=(),
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def labels(verdict: Verdict) -> list[str]:
    return [s.label for s in verdict.steps]


def evidence_text(verdict: Verdict) -> str:
    return "\n".join(f"{e.topic}: {e.text}" for e in verdict.evidence)


@dataclass(frozen=True)
class Case:
    name: str
    facts: Callable[[], Facts]
    grade: str
    summary: str
    evidence: str
    steps: list[str]


def _reconnect_loop() -> Facts:
    starts = [NOW - timedelta(minutes=m) for m in range(55, 0, -5)]
    return base(events=hourly(NOW - timedelta(hours=1)) + sessions(starts, length=timedelta(seconds=30)))


def _spike() -> Facts:
    history = hourly(NOW - timedelta(hours=1), nbytes=MB)
    history.append(event(NOW - timedelta(minutes=50), "Start"))
    history.append(event(NOW - timedelta(minutes=10), "Stop", 40 * MB))
    history.append(event(NOW - timedelta(minutes=4), "Start"))
    return base(events=history)


def _asleep() -> Facts:
    last = NOW - timedelta(hours=5)
    starts = [last - timedelta(hours=12 * k) for k in range(10, -1, -1)]
    return base(
        attached=True,
        connected=False,
        last_connection=last + timedelta(minutes=2),
        events=sessions(starts, length=timedelta(minutes=2), nbytes=20_000),
        usage=daily([40_000] * 20),
    )


def _missed_wakes() -> Facts:
    last = NOW - timedelta(hours=40)
    starts = [last - timedelta(hours=12 * k) for k in range(10, -1, -1)]
    return base(
        attached=False,
        connected=False,
        last_connection=last,
        events=sessions(starts, length=timedelta(minutes=2), nbytes=20_000),
        usage=daily([40_000] * 18 + [0, 0]),
    )


CASES = [
    Case("healthy", base, "healthy", "nothing to do", "Sessions: ", []),
    Case(
        "suspended",
        lambda: base(
            state="suspend",
            attached=False,
            connected=False,
            last_suspended=NOW - timedelta(days=3),
            resume_date=NOW + timedelta(days=87),
            suspended_days_year=40,
            suspended_days_continuous=3,
            last_connection=NOW - timedelta(days=3),
            events=[],
        ),
        "down",
        "auto-resumes on Mon 9 Jun 2025",
        "40 of 180 days in the last 12 months",
        ["Resume"],
    ),
    Case(
        "suspended, no actions left today",
        lambda: base(state="suspend", actions_today=5, attached=False, connected=False, events=[]),
        "down",
        "Line suspended",
        "5 of 5 provisioning actions used today",
        [],
    ),
    Case(
        "pending request",
        lambda: base(
            pending=[PendingRequest("req-1234-abcd", "suspend", "U012ADMIN", NOW - timedelta(minutes=12))]
        ),
        "degraded",
        "a suspend requested 12 min ago is still waiting",
        "pending: suspend `req-1234-abcd` by <@U012ADMIN>",
        ["Request status"],
    ),
    Case(
        "provisioning limit used",
        lambda: base(actions_today=5),
        "degraded",
        "all 5 provisioning actions of the day are used",
        "5 of 5 provisioning actions used today",
        [],
    ),
    Case(
        # as the real API shows it: ThingSpace says connected, the history has no session for 26 h
        "hung",
        lambda: base(
            attached=True,
            attached_from="ThingSpace reports it connected",
            connected=True,
            last_connection=NOW - timedelta(hours=26),
            events=hourly(NOW - timedelta(hours=26)),
            usage=daily([24 * MB] * 19 + [0]),
        ),
        "down",
        "Line active, attached, but no data session for 26 h: device likely hung; try cancel-location, then an SMS reboot",
        "Network: attached (ThingSpace reports it connected), no data session open, last connection",
        ["Cancel location", "Send reboot SMS", "Watch"],
    ),
    Case(
        "hung, as the proposed diagnostics keys said it",
        lambda: base(
            connected=False,
            last_connection=NOW - timedelta(hours=26),
            events=hourly(NOW - timedelta(hours=26)),
            usage=daily([24 * MB] * 19 + [0]),
        ),
        "down",
        "Line active, attached, but no data session for 26 h: device likely hung",
        "Network: attached, not connected",
        ["Cancel location", "Send reboot SMS", "Watch"],
    ),
    Case(
        "silent, attach state not reported",
        lambda: base(
            attached=None,
            connected=None,
            last_connection=NOW - timedelta(hours=26),
            events=hourly(NOW - timedelta(hours=26)),
            usage=daily([24 * MB] * 19 + [0]),
        ),
        "down",
        "Line active, but no session for 26 h: the device is silent; ask the network whether it is reachable",
        "Network: attach state not reported by ThingSpace, no data session open",
        ["Ask the network", "Send reboot SMS", "Watch"],
    ),
    Case(
        "reconnect loop",
        _reconnect_loop,
        "degraded",
        "reconnect loop: 11 sessions in the last hour (Verizon's guideline: at most 4 an hour), 0 B each",
        "11 start(s) in the last hour",
        ["Send reboot SMS", "Watch"],
    ),
    Case(
        "chatty: many sessions that carry data",
        lambda: base(
            events=sessions(
                [NOW - timedelta(minutes=m) for m in range(1500, 0, -10)],
                length=timedelta(minutes=9),
                nbytes=200_000,
            )
        ),
        "degraded",
        "but chatty: 5 sessions in the last hour (Verizon's guideline: at most 4 an hour)",
        "5 start(s) in the last hour",
        ["Watch"],
    ),
    Case(
        "usage spike",
        _spike,
        "degraded",
        "40 MB in the last hour (usual: 1.0 MB an hour)",
        "40 MB in the last hour",
        ["Suspend…", "Watch"],
    ),
    Case(
        "no traffic for days",
        lambda: base(
            attached=False,
            connected=False,
            last_connection=NOW - timedelta(days=4, hours=2),
            events=hourly(NOW - timedelta(days=4, hours=2), hours=24),
            usage=daily([24 * MB] * 15 + [0] * 5),
        ),
        "down",
        "not attached, no session for 4 d 2 h",
        "no traffic for 5 days",
        ["Send reboot SMS", "Watch", "Ask the network"],
    ),
    Case(
        "open session, no traffic",
        lambda: base(
            events=[event(NOW - timedelta(days=4, hours=3), "Start")],
            last_connection=NOW - timedelta(days=4, hours=3),
            usage=daily([24 * MB] * 15 + [0] * 5),
        ),
        "down",
        "data session open for 4 d 3 h but no traffic for 5 days",
        "one open since Mon 10 Mar 09:00 UTC",
        ["Send reboot SMS", "Watch"],
    ),
    Case(
        "IMEI-ICCID mismatch",
        lambda: base(mismatches=[Mismatch("356938035643809", "490154203237518", NOW - timedelta(days=1))]),
        "degraded",
        "the SIM is in other hardware than expected (IMEI changed from …3809 to …7518 on Thu 13 Mar 2025)",
        "SIM in other hardware",
        ["Suspend…", "Watch"],
    ),
    Case(
        "asleep by design",
        _asleep,
        "healthy",
        "asleep by design: it wakes every ~12 h and was last seen 4 h ago",
        "next wake expected around 19:00 UTC",
        ["Watch"],
    ),
    Case(
        "missed wake-ups",
        _missed_wakes,
        "down",
        "it missed 3 wake-ups (every ~12 h; last seen 39 h ago)",
        "missed 3 wake-up(s)",
        ["Ask the network", "Send reboot SMS", "Watch"],
    ),
    Case(
        "really down",
        lambda: base(
            attached=False,
            connected=False,
            last_connection=NOW - timedelta(days=3),
            events=[],
            usage=daily([24 * MB] * 17 + [0] * 3),
        ),
        "down",
        "not attached, no session for 3 d",
        "Network: not attached, not connected",
        ["Send reboot SMS", "Watch", "Ask the network"],
    ),
    Case(
        "over plan (allowance from the account's plan list)",
        lambda: base(plan="m2m4G", plan_allowance=250 * MB, usage=daily([24 * MB] * 20)),
        "degraded",
        "over its plan: 312 MB this cycle of 250 MB",
        "312 MB this cycle of 250 MB (125%; allowance from the account's plan list)",
        ["Watch"],
    ),
    Case(
        "over plan (allowance read from the plan name)",
        lambda: base(plan="IoT-250MB", usage=daily([24 * MB] * 20)),
        "degraded",
        "over its plan: 312 MB this cycle of 250 MB",
        "312 MB this cycle of 250 MB (125%; allowance read from the plan name `IoT-250MB`)",
        ["Watch"],
    ),
    Case(
        "IMEI change recorded by the directory",
        lambda: base(
            mismatches=[
                Mismatch(
                    "356938035643809",
                    "490154203237518",
                    NOW - timedelta(days=2),
                    "recorded by the bot's directory sync; not in ThingSpace's mismatch report",
                )
            ]
        ),
        "degraded",
        "(IMEI changed from …3809 to …7518 on Wed 12 Mar 2025)",
        "SIM in other hardware: IMEI changed from …3809 to …7518 on Wed 12 Mar 2025 (recorded by the bot's",
        ["Suspend…", "Watch"],
    ),
    Case(
        "unknown: the line checks failed",
        lambda: base(
            state=None,
            attached=None,
            connected=None,
            last_connection=None,
            events=None,
            failed={
                "line details": "ThingSpace did not answer",
                "extended diagnostics": "no answer within 10 s",
            },
        ),
        "unknown",
        "Not enough to go on: line details, extended diagnostics could not run",
        "Could not run: extended diagnostics: no answer within 10 s",
        [],
    ),
    Case(
        "one check failed, verdict from the rest",
        lambda: base(events=None, failed={"connection history": "ThingSpace took too long to answer"}),
        "healthy",
        "(connection history could not run)",
        "Could not run: connection history: ThingSpace took too long to answer",
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdicts(case: Case) -> None:
    """Each condition gets its grade, its sentence, the evidence behind it and its next steps."""
    verdict = judge(case.facts())
    assert verdict.grade == case.grade, verdict.summary
    assert case.summary in times.fallback(verdict.summary)
    assert case.evidence in times.fallback(evidence_text(verdict))
    assert labels(verdict) == case.steps


def test_every_grade_is_reachable() -> None:
    """The table covers every grade."""
    assert {c.grade for c in CASES} == {"healthy", "degraded", "down", "unknown"}


def test_summary_is_one_sentence_with_a_capital_and_a_full_stop() -> None:
    """The summary starts with a capital, ends with a full stop, and mentions the other findings."""
    verdict = judge(
        base(
            actions_today=5,
            mismatches=[Mismatch("356938035643809", "490154203237518")],
        )
    )
    assert verdict.summary[0].isupper() and verdict.summary.endswith(".")
    assert "(+1 more finding below)" in verdict.summary
    hardware = (
        "The SIM is in other hardware than expected (IMEI changed from …3809 to …7518); ThingSpace's "
        "history follows "
        "the IMEI: confirm the swap was intended, or suspend the line."
    )
    assert verdict.also == (hardware,)


def test_down_outranks_degraded() -> None:
    """A down finding is the headline even when a degraded one comes earlier in the checklist."""
    verdict = judge(
        base(
            actions_today=5,
            connected=False,
            last_connection=NOW - timedelta(hours=30),
            events=hourly(NOW - timedelta(hours=30)),
        )
    )
    assert verdict.grade == "down"
    assert verdict.summary.startswith("Line active, attached, but no data session for 30 h")


def test_sms_button_carries_the_configured_text_quoted_for_the_grammar() -> None:
    """The reboot SMS button's command parses back to the configured text, quotes and all."""
    text = 'AT+CFUN=1,1 "now" \\ ok'
    verdict = judge(
        base(
            reboot_sms=text,
            connected=False,
            last_connection=NOW - timedelta(hours=26),
            events=hourly(NOW - timedelta(hours=26)),
        )
    )
    [sms] = [s for s in verdict.steps if s.label == "Send reboot SMS"]
    inv = parse(sms.command, VERBS)
    assert inv.verb == "sms"
    assert [t.text for t in inv.targets] == [TARGET]
    assert inv.text == text


def test_watch_button_names_the_inferred_wake_cycle() -> None:
    """Watch on a sleepy device passes the wake cycle it showed, and parses as a watch command."""
    verdict = judge(_asleep())
    [watch] = verdict.steps
    assert watch.command == f"watch {TARGET} --wake-every 12h"
    assert parse(watch.command, VERBS).options == {"wake-every": "12h"}


def test_watched_device_gets_no_watch_button_and_uses_the_watch_cycle() -> None:
    """A watched device's configured wake cycle wins over the inferred one; no Watch button again."""
    facts = replace(_asleep(), watched=True, wake_every=timedelta(hours=24))
    verdict = judge(facts)
    assert verdict.grade == "healthy"
    assert "every ~24 h (its watch)" in evidence_text(verdict)
    assert "its session history suggests a wake every ~12 h" in evidence_text(verdict)
    assert labels(verdict) == []


def test_pending_sms_is_information_not_a_problem() -> None:
    """An SMS still waiting for delivery is listed but does not degrade the line."""
    pending = [PendingRequest("req-sms-1", "sms", "U012ADMIN", NOW - timedelta(hours=2))]
    verdict = judge(base(pending=pending))
    assert verdict.grade == "healthy"
    assert "pending: sms `req-sms-1`" in evidence_text(verdict)


def test_spike_is_found_without_the_usage_history() -> None:
    """The last hour's spike comes from the connection history even when usage history failed."""
    verdict = judge(replace(_spike(), usage=None, failed={"usage history": "ThingSpace did not answer"}))
    assert verdict.grade == "degraded"
    assert "40 MB in the last hour" in verdict.summary


def test_failed_checks_keep_a_down_verdict() -> None:
    """A down finding stands even when other checks could not run."""
    verdict = judge(
        base(
            usage=None,
            mismatches=None,
            connected=False,
            last_connection=NOW - timedelta(hours=26),
            events=hourly(NOW - timedelta(hours=26)),
            failed={"usage history": "ThingSpace took too long to answer", "IMEI–ICCID check": "x"},
        )
    )
    assert verdict.grade == "down"
    assert verdict.failed == ("usage history", "IMEI–ICCID check")
    assert "Could not run: usage history" in evidence_text(verdict)


def test_deactivated_line_offers_nothing_the_bot_can_do() -> None:
    """A deactivated line is down and gets no SMS or cancel-location buttons."""
    verdict = judge(base(state="deactive", attached=False, connected=False, events=[]))
    assert verdict.grade == "down"
    assert "deactivated" in verdict.summary
    assert "Send reboot SMS" not in labels(verdict)


def test_sparkline_scales_to_the_largest_value() -> None:
    """Zero is the lowest bar, the largest value the highest, anything non-zero shows above zero."""
    assert sparkline([0, 1, 50, 100]) == "▁▂▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""


def test_usage_stats_fourteen_days_today_last() -> None:
    """The sparkline has 14 days, today last; the usual day ignores today; silence counts back."""
    stats = usage_stats(daily([5 * MB] * 16 + [0, 0, 0, 0]), NOW, NOW - timedelta(days=10))
    assert len(stats.days) == 14
    assert stats.days[-1] == 0 and stats.silent_days == 4
    assert stats.usual_daily == 5 * MB
    assert stats.cycle_bytes == 5 * MB * 6  # Mar 5..10; the 4 silent days add nothing


def test_session_stats_infers_the_wake_cycle_only_for_sleepy_devices() -> None:
    """Starts 12 h apart give a 12 h cycle; hourly starts give none."""
    sleepy = session_stats(_asleep().events or [], NOW)
    assert sleepy.wake_every == timedelta(hours=12)
    always_on = session_stats(hourly(NOW), NOW)
    assert always_on.wake_every is None


def test_plan_allowance_and_bytes() -> None:
    """Plan names carry their allowance; byte counts read like a carrier bill."""
    assert plan_allowance("IoT-1GB") == 1024**3
    assert plan_allowance("m2m 250 MB") == 250 * MB
    assert plan_allowance("M2M_4G") is None
    assert format_bytes(812) == "812 B"
    assert format_bytes(1.2 * MB) == "1.2 MB"
    assert format_bytes(40 * MB) == "40 MB"


def test_quote_argument_round_trips_through_the_grammar() -> None:
    """Quoted text survives the slash grammar's shell-style split."""
    for text in ["REBOOT", "two words", 'say "hi"', "back\\slash", "it's"]:
        inv = parse(f"sms {TARGET} {quote_argument(text)}", VERBS)
        assert inv.text == text


def test_the_monitors_last_report_is_evidence() -> None:
    """The latest reachability report of the line's watch is listed, as a warning unless it sleeps."""
    since = NOW - timedelta(hours=26)
    down = judge(
        base(
            connected=False,
            last_connection=since,
            events=hourly(since),
            reachable=False,
            reachable_since=since,
        )
    )
    assert "Monitor: unreachable since Thu 13 Mar 10:00 UTC (26 h ago)" in times.fallback(evidence_text(down))
    assert [e.level for e in down.evidence if e.topic == "Monitor"] == ["warn"]
    asleep = judge(replace(_asleep(), reachable=False, reachable_since=NOW - timedelta(hours=4)))
    assert [e.level for e in asleep.evidence if e.topic == "Monitor"] == ["ok"]


def test_the_plan_list_wins_over_the_plan_name() -> None:
    """A size in the account's plan list is used even when the plan's name says another."""
    verdict = judge(base(plan="IoT-1GB", plan_allowance=300 * MB, usage=daily([24 * MB] * 20)))
    assert verdict.grade == "degraded"
    assert "of 300 MB (104%; allowance from the account's plan list)" in evidence_text(verdict)


def test_without_the_plan_list_the_card_says_why_the_plan_is_not_checked() -> None:
    """A plan code with no size and an account check that failed: no allowance, and the card says so."""
    failed = {"account info": "ThingSpace did not answer"}
    verdict = judge(base(plan="m2m4G", usage=daily([24 * MB] * 20), failed=failed))
    text = evidence_text(verdict)
    assert "this cycle (no allowance known: the account's plan list could not be read)" in text
    assert "Could not run: account info: ThingSpace did not answer" in text
    assert verdict.grade == "healthy"  # the rest of the line is fine; only the plan is unchecked
    known = judge(base(plan="m2m4G", usage=daily([24 * MB] * 20)))
    assert "this cycle (no allowance known for plan `m2m4G`)" in evidence_text(known)


def test_account_plan_sizes_come_from_size_kb() -> None:
    """servicePlans[].sizeKb (text or number) gives bytes under the plan's code, name and billing code."""
    account = Account.from_wire(
        {
            "accountName": "0000123456-00001",
            "servicePlans": [
                {
                    "name": "M2M 4G pooled",
                    "code": "m2m4G",
                    "sizeKb": "1048576",
                    "carrierServicePlanCode": "84",
                },
                {"name": "NB-IoT 10 MB", "code": "M2M-NBIOT-10MB", "sizeKb": 10240},
                {"name": "no size", "code": "m2mX"},
                {"name": "bad size", "code": "m2mY", "sizeKb": "lots"},
                "not a plan",
            ],
        }
    )
    assert account.service_plans == ("M2M 4G pooled", "NB-IoT 10 MB", "no size", "bad size", "not a plan")
    assert account.plan_allowance("m2m4G") == 1024**3
    assert account.plan_allowance("M2M4G") == 1024**3  # any case
    assert account.plan_allowance("M2M 4G pooled") == account.plan_allowance("84") == 1024**3
    assert account.plan_allowance("M2M-NBIOT-10MB") == 10 * MB
    assert account.plan_allowance("m2mX") is None
    assert account.plan_allowance("m2mY") is None
    assert account.plan_allowance("") is None
    assert Account.from_wire({"accountName": "x"}).plan_sizes == {}


def test_connected_alone_is_not_a_data_session() -> None:
    """ThingSpace's ``connected`` says the network sees the device, not that data flows: a connected
    always-on line whose history shows no session for a day is hung, not healthy."""
    quiet = base(
        attached=True,
        connected=True,
        last_connection=NOW - timedelta(hours=30),
        events=hourly(NOW - timedelta(hours=30)),
    )
    assert judge(quiet).grade == "down"
    assert "no data session for 30 h" in judge(quiet).summary
    # without the history, the last connection alone still tells it
    assert judge(replace(quiet, events=None, failed={"connection history": "x"})).grade == "down"


def test_diagnose_never_says_healthy_while_the_monitor_says_unreachable() -> None:
    """A line that looks fine to the diagnostics (recent session) but whose watch's monitor reports
    it unreachable is degraded, with the monitor named, and Network is no longer a green tick."""
    since = NOW - timedelta(minutes=20)
    fine = base(
        connected=False, attached=False, last_connection=NOW - timedelta(minutes=5), events=hourly(since)
    )
    assert judge(fine).grade == "healthy"
    verdict = judge(replace(fine, reachable=False, reachable_since=since, watched=True))
    assert verdict.grade == "degraded"
    assert "reachability monitor reports it unreachable" in verdict.summary
    assert [e.level for e in verdict.evidence if e.topic == "Network"] == ["warn"]
