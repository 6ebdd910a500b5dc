"""Alert rules and hygiene, driven by callbacks and evaluation ticks on an injected clock:
dedupe, sleepy devices, grouping, acknowledge, snooze expiry, recovery, flapping, re-alerts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.render import times
from storage import alerts, outbox, watches
from storage.db import write
from tests.helpers.alerts import HOUR, ICCIDS, T0, AlertBench, alert_bench, seed_directory

MIN = 60.0
DEVICES = [f"iccid:{i}" for i in ICCIDS]
D1 = DEVICES[0]


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[AlertBench]:
    yield from alert_bench(tmp_path)


def _system_replies(bench: AlertBench, card: str) -> list[str]:
    """The card's thread replies the bot wrote on its own (snooze over, recovered, down again),
    without the replies that echo a person's click (acknowledged, snoozed: tested on their own)."""
    return [r for r in bench.replies(card) if not r.startswith((":eyes: Acknowledged", ":zzz: Snoozed"))]


def _down(bench: AlertBench, devices: list[str]) -> None:
    for device in devices:
        bench.callback(device, True, at=bench.now - 1)
        bench.callback(device, False)


def _alerting(bench: AlertBench, device: str = D1) -> alerts.Alert:
    [alert] = alerts.open_for_devices(bench.db, [device])[device]
    return alert


def test_unreachable_longer_than_alert_after_raises_one_card_with_buttons(bench: AlertBench) -> None:
    """A device down past --alert-after gets one card (Acknowledge, Snooze 1/4/24 h, Diagnose) and an audit row."""
    bench.command(f"watch {D1} --alert-after 2h")
    _down(bench, [D1])
    assert bench.advance(2 * HOUR - MIN).raised == 0
    tick = bench.advance(MIN)
    assert tick.raised == 1
    [card] = bench.cards()
    assert card.key == "alert:1" and card.channel == "C0OPS"
    text = bench.card_text("alert:1")
    assert "Unreachable" in text and "(2 h)" in text and "Firing" in text and D1 in text
    labels = [
        e["text"]["text"] for b in card.payload["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert labels == ["Acknowledge", "Snooze 1 h", "Snooze 4 h", "Snooze 24 h", "Diagnose"]
    [raised] = bench.audit("alert.raise")
    assert raised["actor"] == "system" and raised["targets"] == [D1]


def test_dedupe_one_open_alert_per_device_and_condition(bench: AlertBench) -> None:
    """Later ticks and a repeated raise never make a second alert or card for (device, condition)."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    for _ in range(5):
        bench.callback(D1, False)  # ThingSpace repeats itself
        assert bench.advance(10 * MIN).raised == 0
    with write(bench.db):
        again = alerts.insert_alert(
            bench.db, device=D1, condition="unreachable", channel="C0OPS", down_since=bench.now, now=bench.now
        )
    assert again is None
    assert len(bench.cards()) == 1 and alerts.count_open(bench.db) == 1


def test_time_before_the_watch_does_not_count(bench: AlertBench) -> None:
    """A device already known down for days alerts only --alert-after after the watch starts."""
    bench.callback(D1, False, at=bench.now - 3 * 86400)
    bench.command(f"watch {D1} --alert-after 1h")
    assert bench.advance(59 * MIN).raised == 0
    assert bench.advance(MIN).raised == 1


def test_a_never_heard_device_alerts_only_once_its_monitor_was_accepted(bench: AlertBench) -> None:
    """Silence counts only while ThingSpace monitors the device (a failed start pages nobody)."""
    from bot.core import reachability

    bench.command(f"watch {D1} --alert-after 1h")
    assert bench.advance(2 * HOUR).raised == 0
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None
    with write(bench.db):
        rows = watches.claim_monitor_starts(bench.db, [watch], expires_at=bench.now + 86400, now=bench.now)
        watches.mark_monitors_requested(bench.db, rows, request_id="req-1", now=bench.now)
        reachability.refresh_due(bench.db, D1)
    assert bench.advance(MIN).raised == 1  # watched for 2 h 1 min and never reachable


def test_sleepy_devices_waking_on_schedule_page_nobody(bench: AlertBench) -> None:
    """A meter that wakes every 12 h for a few minutes never alerts, over five days."""
    bench.command(f"watch {D1} --wake-every 12h")
    for _ in range(10):
        bench.callback(D1, True)
        bench.advance(5 * MIN)
        bench.callback(D1, False)
        for _ in range(12):
            assert bench.advance(HOUR - 5 * MIN / 12).raised == 0
    assert bench.cards() == []


def test_sleepy_device_alerts_after_missing_more_than_n_wakes(bench: AlertBench) -> None:
    """With missed_wakes 2, the third missed 12 h wake raises one 'missed wakes' card."""
    bench.command(f"watch {D1} --wake-every 12h")
    bench.callback(D1, True)
    bench.advance(5 * MIN)
    bench.callback(D1, False)
    last_seen = bench.now
    assert bench.advance(36 * HOUR - MIN).raised == 0
    assert bench.advance(MIN).raised == 1
    alert = _alerting(bench)
    assert alert.condition == "missed-wakes" and alert.down_since == last_seen
    text = bench.card_text("alert:1")
    assert "Missed wakes" in text and "missed 3 expected wakes" in text and "wakes every 12 h" in text


def test_a_missed_wakes_alert_recovers_on_the_next_wake_even_if_it_sleeps_again(bench: AlertBench) -> None:
    """For a sleepy device, going back to sleep after a wake does not cancel its recovery."""
    bench.command(f"watch {D1} --wake-every 1h")
    bench.callback(D1, False)
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None
    bench.advance(3 * HOUR)
    assert alerts.count_open(bench.db) == 1
    bench.callback(D1, True)
    bench.advance(MIN)
    bench.callback(D1, False)  # back to sleep, as designed
    tick = bench.advance(15 * MIN)
    assert tick.recovered == 1 and alerts.count_open(bench.db) == 0
    assert "Recovered" in bench.card_text("alert:1")


def test_more_than_k_devices_down_in_a_channel_get_one_grouped_card(bench: AlertBench) -> None:
    """Twenty meters on one feeder go dark together: one grouped card, not twenty."""
    feeder = DEVICES[:20]
    seed_directory(bench, feeder, group="feeder-9")
    bench.command("watch group:feeder-9 --alert-after 30m")
    _down(bench, feeder)
    tick = bench.advance(30 * MIN)
    assert (tick.raised, tick.grouped, tick.groups_opened) == (20, 20, 1)
    [card] = bench.cards()
    assert card.key == "alert-group:1"
    text = bench.card_text(card.key)
    assert "20 devices went down together" in text and "meter-001" in text and "…and 5 more" in text
    labels = [
        e["text"]["text"] for b in card.payload["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert labels == ["Acknowledge", "Snooze 1 h", "Snooze 4 h", "Snooze 24 h"]
    [raised] = bench.audit("alert.raise")
    assert len(raised["targets"]) == 20 and raised["detail"]["group"] == 1


def test_up_to_k_devices_keep_their_own_cards(bench: AlertBench) -> None:
    """At the threshold (5) each device keeps its own card."""
    five = DEVICES[:5]
    bench.command(f"watch {' '.join(five)} --alert-after 30m")
    _down(bench, five)
    tick = bench.advance(30 * MIN)
    assert tick.raised == 5 and tick.groups_opened == 0
    assert [c.key for c in bench.cards()] == [f"alert:{i}" for i in range(1, 6)]


def test_cards_raised_earlier_in_the_window_fold_into_the_group(bench: AlertBench) -> None:
    """Three cards, then four more devices within the window: one group of 7; the three cards point to it."""
    seven = DEVICES[:7]
    bench.command(f"watch {' '.join(seven)} --alert-after 30m")
    _down(bench, seven[:3])
    bench.advance(5 * MIN)
    _down(bench, seven[3:])
    bench.advance(25 * MIN)
    assert len(bench.cards()) == 3
    tick = bench.advance(5 * MIN)  # within the 10 min window of the first three cards
    assert tick.groups_opened == 1 and tick.raised == 4
    keys = [c.key for c in bench.cards()]
    assert keys == ["alert:1", "alert:2", "alert:3", "alert-group:1"]
    assert "7 devices went down together" in bench.card_text("alert-group:1")
    for key in keys[:3]:
        # the relay fills in the grouped card's permalink once that card is sent
        assert f"see {outbox.LINK_SLOT}" in bench.card_text(key)
    assert {a.card_key for a in alerts.open_alerts(bench.db)} == {"alert-group:1"}
    # an eighth device within the window joins the same group
    bench.command(f"watch {DEVICES[7]} --alert-after 5m")
    _down(bench, [DEVICES[7]])
    tick = bench.advance(5 * MIN)
    assert tick.groups_opened == 0 and tick.grouped == 1
    assert "8 devices went down together" in bench.card_text("alert-group:1")


def test_acknowledge_records_who(bench: AlertBench) -> None:
    """Acknowledge updates the card in place with the clicker, audits it, and a second click does nothing."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    assert bench.click("alert-ack", 1, user="U0OPS1") is None
    assert "Acknowledged by <@U0OPS1>" in bench.card_text("alert:1")
    assert _alerting(bench).state == "acknowledged"
    [entry] = bench.audit("alert.ack")
    assert entry["actor"] == "U0OPS1" and entry["targets"] == [D1]
    again = bench.click("alert-ack", 1, user="U0OPS2")
    assert again is not None and "Nothing to do" in again.text
    acks = bench.audit("alert.ack")
    assert [e["actor"] for e in acks if e["outcome"] == "ok"] == ["U0OPS1"] and len(bench.cards()) == 1
    assert {e["outcome"] for e in acks[1:]} <= {"refused"}  # the second click changed nothing


def test_snooze_expires_fires_again_and_is_audited(bench: AlertBench) -> None:
    """Snooze 4 h: quiet until then, firing again after, with a thread reply; the snooze is audited."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    assert bench.click("alert-snooze-4h", 1, user="U0OPS1") is None
    assert "Snoozed by <@U0OPS1> until" in bench.card_text("alert:1")
    [entry] = bench.audit("alert.snooze")
    assert entry["actor"] == "U0OPS1" and entry["detail"]["hours"] == 4
    assert bench.advance(4 * HOUR - MIN).snooze_ended == 0
    assert _alerting(bench).state == "snoozed"
    assert bench.advance(MIN).snooze_ended == 1
    assert _alerting(bench).state == "firing"
    assert "Firing" in bench.card_text("alert:1")
    snoozed_reply, ended_reply = bench.replies("alert:1")
    assert snoozed_reply.startswith(":zzz: Snoozed for 4 h by <@U0OPS1> at <!date^")
    assert ended_reply == (
        f":alarm_clock: Snooze ended: iccid …{D1[-4:]} is still not reachable; the alert is firing again."
    )
    assert len(bench.cards()) == 1
    snoozed, ended = bench.audit("alert.snooze")
    assert (snoozed["actor"], snoozed["outcome"]) == ("U0OPS1", "ok")
    assert (ended["actor"], ended["outcome"], ended["targets"]) == ("system", "expired", [D1])
    assert ended["detail"]["alerts"] == [1] and ended["detail"]["snoozed_by"] == ["U0OPS1"]
    assert ended["detail"]["reachable_again"] == 0


def test_a_snooze_ending_while_the_device_is_back_but_not_yet_recovered_says_so(bench: AlertBench) -> None:
    """Back 10 min before the snooze ends, recovery needs 15 min: the reply says when the alert
    resolves (not "still not reachable"); the expiry is audited; 5 min later it recovers."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    bench.click("alert-snooze-1h", 1, user="U0OPS1")
    bench.advance(50 * MIN)
    bench.callback(D1, True)
    back_at = bench.now
    assert bench.advance(10 * MIN).snooze_ended == 1
    [reply] = _system_replies(bench, "alert:1")
    assert "still not reachable" not in reply
    assert reply.startswith(f":alarm_clock: Snooze ended: iccid …{D1[-4:]} is reachable again since ")
    assert "the alert resolves at 10:05 UTC if it stays reachable (15 min without a drop)" in times.fallback(
        reply
    )
    assert back_at == T0 + HOUR + 50 * MIN  # 09:50 UTC
    [ended] = [e for e in bench.audit("alert.snooze") if e["outcome"] == "expired"]
    assert ended["actor"] == "system" and ended["detail"]["reachable_again"] == 1
    assert bench.advance(5 * MIN).recovered == 1
    assert (
        bench.replies("alert:1")[-1] == f":large_green_circle: iccid …{D1[-4:]} recovered after 1 h 50 min."
    )


def test_a_snooze_ending_as_the_device_recovers_gets_only_the_recovery_reply(bench: AlertBench) -> None:
    """Recovered during the snooze, evaluated when it ends: one reply, 'recovered', no snooze reply."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    bench.click("alert-snooze-1h", 1, user="U0OPS1")
    bench.now += 30 * MIN
    bench.callback(D1, True)
    tick = bench.advance(30 * MIN)
    assert (tick.snooze_ended, tick.recovered) == (1, 1)
    assert _system_replies(bench, "alert:1") == [
        f":large_green_circle: iccid …{D1[-4:]} recovered after 1 h 30 min."
    ]
    assert [e["outcome"] for e in bench.audit("alert.snooze")] == ["ok", "expired"]


def test_a_viewer_may_acknowledge_but_not_snooze(bench: AlertBench) -> None:
    """Snooze needs the operator role; the refusal is audited and nothing changes. The role is the
    one in the alert's own channel (#C0NOC, where everyone is a viewer)."""
    bench.command(f"watch {D1} --alert-after 1h --channel <#C0NOC|noc>")
    _down(bench, [D1])
    bench.advance(HOUR)
    refused = bench.click("alert-snooze-24h", 1, user="U0NOC1", channel="C0NOC")
    assert refused is not None and "needs the *operator* role" in refused.text
    assert _alerting(bench).state == "firing"
    assert [e["outcome"] for e in bench.audit("alert.snooze")] == ["denied"]
    assert bench.click("alert-ack", 1, user="U0NOC1", channel="C0NOC") is None
    assert _alerting(bench).state == "acknowledged"
    # the channel a click names does not matter: the alert's own channel (#C0NOC) makes a viewer
    again = bench.click("alert-ack", 1, user="U0STRANGER", channel="C0RANDOM")
    assert again is not None and again.text.startswith("Nothing to do")


def test_recovery_updates_the_card_and_replies_in_its_thread(bench: AlertBench) -> None:
    """Back for recover_after: the card says 'recovered after 3 h 12 min' in place, and the thread says so."""
    bench.command(f"watch {D1} --alert-after 2h")
    _down(bench, [D1])
    bench.advance(2 * HOUR)
    bench.click("alert-ack", 1)
    bench.now += 72 * MIN
    bench.callback(D1, True)
    assert bench.advance(15 * MIN - 1).recovered == 0
    assert bench.advance(1).recovered == 1
    text = bench.card_text("alert:1")
    assert "Recovered" in text and "recovered after 3 h 12 min" in text
    assert "Acknowledge" not in text
    assert _system_replies(bench, "alert:1") == [
        f":large_green_circle: iccid …{D1[-4:]} recovered after 3 h 12 min."
    ]
    [entry] = bench.audit("alert.recover")
    assert entry["targets"] == [D1] and entry["detail"]["longest_outage_s"] == 3 * 3600 + 12 * 60
    assert len(bench.cards()) == 1


def test_flapping_is_damped(bench: AlertBench) -> None:
    """Up and down again within recover_after is not a recovery; it resolves once it stays up."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    for _ in range(3):
        bench.callback(D1, True)
        bench.advance(10 * MIN)
        bench.callback(D1, False)
        assert bench.advance(10 * MIN).recovered == 0
    assert _alerting(bench).state == "firing" and bench.replies("alert:1") == []
    bench.callback(D1, True)
    assert bench.advance(15 * MIN).recovered == 1
    assert alerts.count_open(bench.db) == 0 and len(bench.replies("alert:1")) == 1


def test_re_alerts_within_realert_after_reopen_the_same_card(bench: AlertBench) -> None:
    """Down again soon after recovering: the same card fires again (thread reply), no new card."""
    bench.command(f"watch {D1} --alert-after 10m")
    _down(bench, [D1])
    bench.advance(10 * MIN)
    bench.callback(D1, True)
    bench.advance(15 * MIN)
    assert alerts.count_open(bench.db) == 0
    bench.callback(D1, False)
    tick = bench.advance(10 * MIN)
    assert (tick.raised, tick.reopened) == (0, 1)
    assert [c.key for c in bench.cards()] == ["alert:1"]
    alert = _alerting(bench)
    assert alert.id == 1 and alert.reopened == 1
    assert "down again ×1" in bench.card_text("alert:1")
    assert "is down again since" in bench.replies("alert:1")[-1]
    assert bench.audit("alert.raise")[-1]["detail"]["reopened"] == 1


def test_after_realert_after_a_new_outage_gets_a_new_card(bench: AlertBench) -> None:
    """Once realert_after has passed since the last card, a new outage posts a new card."""
    bench.command(f"watch {D1} --alert-after 10m")
    _down(bench, [D1])
    bench.advance(10 * MIN)
    bench.callback(D1, True)
    bench.advance(HOUR)
    bench.callback(D1, False)
    tick = bench.advance(10 * MIN)
    assert (tick.raised, tick.reopened) == (1, 0)
    assert [c.key for c in bench.cards()] == ["alert:1", "alert:2"]


def test_group_buttons_act_on_every_member_and_the_group_recovers(bench: AlertBench) -> None:
    """Acknowledge and snooze on a grouped card apply to all its devices; all recovered → one thread reply."""
    eight = DEVICES[:8]
    bench.command(f"watch {' '.join(eight)} --alert-after 30m")
    _down(bench, eight)
    bench.advance(30 * MIN)
    assert bench.click("group-ack", 1, user="U0OPS2") is None
    assert {a.state for a in alerts.open_alerts(bench.db)} == {"acknowledged"}
    assert "8 acknowledged" in bench.card_text("alert-group:1")
    assert bench.click("group-snooze-1h", 1, user="U0OPS2") is None
    assert {a.state for a in alerts.open_alerts(bench.db)} == {"snoozed"}
    assert len(bench.audit("alert.snooze")[0]["targets"]) == 8
    tick = bench.advance(HOUR)
    assert tick.snooze_ended == 8
    assert _system_replies(bench, "alert-group:1") == [
        ":alarm_clock: Snooze ended: 8 devices are still not reachable; firing again."
    ]
    [ended] = [e for e in bench.audit("alert.snooze") if e["outcome"] == "expired"]
    assert len(ended["targets"]) == 8 and ended["detail"]["groups"] == [1]
    for device in eight[:5]:
        bench.callback(device, True)
    bench.advance(15 * MIN)
    assert "3 of 8 devices down" in bench.card("alert-group:1")["text"]
    for device in eight[5:]:
        bench.callback(device, True)
    bench.advance(15 * MIN)
    assert "All 8 devices of this grouped alert recovered" in bench.card("alert-group:1")["text"]
    assert len(_system_replies(bench, "alert-group:1")) == 2
    assert len(bench.cards()) == 1


def test_out_of_order_callbacks_do_not_move_the_state_back(bench: AlertBench) -> None:
    """An older observation arriving late goes to the history only."""
    bench.command(f"watch {D1} --alert-after 1h")
    bench.callback(D1, True)
    applied = bench.callback(D1, False, at=bench.now - 10 * MIN)
    assert applied is not None and applied.observation is not None and applied.observation.stale
    state = watches.get_state(bench.db, D1)
    assert state is not None and state.reachable
    assert [r for _, r in watches.history(bench.db, D1)] == [True, False]
    assert bench.advance(2 * HOUR).raised == 0


def test_a_failed_monitor_callback_schedules_a_retry(bench: AlertBench) -> None:
    """ThingSpace refusing a monitor marks it failed and schedules another try."""
    bench.command(f"watch {D1} --alert-after 1h")
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None
    with write(bench.db):
        rows = watches.claim_monitor_starts(bench.db, [watch], expires_at=bench.now + 86400, now=bench.now)
        watches.mark_monitors_requested(bench.db, rows, request_id="req-9", now=bench.now)
    bench.callback(D1, None, request_id="req-9", status="Failed")
    [monitor] = watches.monitors_of(bench.db, D1)
    assert monitor.state == "failed"
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None and watch.monitor_retry_at == bench.now + 15 * MIN
    assert watch.due_at is None


def test_callbacks_name_the_monitor_and_confirm_it(bench: AlertBench) -> None:
    """The registration callback's monitorId is stored and the monitor becomes active."""
    bench.command(f"watch {D1} --alert-after 1h")
    watch = watches.get_watch(bench.db, D1)
    assert watch is not None
    with write(bench.db):
        rows = watches.claim_monitor_starts(bench.db, [watch], expires_at=bench.now + 86400, now=bench.now)
        watches.mark_monitors_requested(bench.db, rows, request_id="req-5", now=bench.now)
    bench.callback(D1, None, request_id="req-5", monitor_id="mon-77")
    [monitor] = watches.monitors_of(bench.db, D1)
    assert (monitor.state, monitor.monitor_id) == ("active", "mon-77")
    # a later change notification carries its own request id and the same monitor id
    bench.callback(D1, False, request_id="notification-1", monitor_id="mon-77")
    assert [m.monitor_id for m in watches.monitors_of(bench.db, D1)] == ["mon-77"]


def test_a_group_snooze_ending_tells_the_devices_still_down_from_those_back(bench: AlertBench) -> None:
    """Grouped card, snooze ends with 3 of 8 devices back but inside the recovery wait: the reply
    counts both, and says which fire again."""
    eight = DEVICES[:8]
    bench.command(f"watch {' '.join(eight)} --alert-after 30m")
    _down(bench, eight)
    bench.advance(30 * MIN)
    bench.click("group-snooze-1h", 1, user="U0OPS2")
    bench.now += 55 * MIN
    for device in eight[:3]:
        bench.callback(device, True)
    assert bench.advance(5 * MIN).snooze_ended == 8
    assert _system_replies(bench, "alert-group:1") == [
        (
            ":alarm_clock: Snooze ended: 5 devices are still not reachable (firing again); "
            "3 are reachable again (resolving once up for 15 min)."
        )
    ]


def test_the_card_remembers_ack_snooze_and_recovery_and_each_is_said_in_the_thread(bench: AlertBench) -> None:
    """Acknowledge, then Snooze, then recovery: the card keeps an event line with every step (the
    Acknowledge button does not come back after the snooze), and each step is a thread reply."""
    bench.command(f"watch {D1} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    bench.click("alert-ack", 1, user="U0OPS1")
    bench.advance(MIN)
    bench.click("alert-snooze-1h", 1, user="U0OPS1")
    snoozed = bench.card_text("alert:1")
    labels = [
        e["text"]["text"]
        for b in bench.card("alert:1")["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert "Snoozed by <@U0OPS1>" in snoozed and "Acknowledge" not in labels and "Snooze 1 h" in labels
    assert ":eyes: ack <@U0OPS1> <!date^" in snoozed and ":zzz: 1 h <@U0OPS1> <!date^" in snoozed
    bench.callback(D1, True)
    bench.advance(15 * MIN)
    done = bench.card_text("alert:1")
    assert "Recovered" in done
    assert (
        ":eyes: ack <@U0OPS1>" in done
        and ":zzz: 1 h <@U0OPS1>" in done
        and ":large_green_circle: recovered" in done
    )
    replies = bench.replies("alert:1")
    assert replies[0].startswith(":eyes: Acknowledged by <@U0OPS1> at <!date^")
    assert replies[1].startswith(":zzz: Snoozed for 1 h by <@U0OPS1>")
    assert "recovered after" in replies[-1]


def test_a_line_suspended_through_the_bot_closes_its_alert_and_is_not_paged_again(bench: AlertBench) -> None:
    """Suspending a watched line through the bot closes its open alert ("suspended by @x at …", in
    the card and its thread); a suspended line going quiet raises nothing."""
    from bot.core.reachability import close_alerts
    from storage import directory

    d2 = DEVICES[1]
    seed_directory(bench, [D1, d2], group="g")
    bench.command(f"watch {D1} {d2} --alert-after 1h")
    _down(bench, [D1])
    bench.advance(HOUR)
    with write(bench.db):
        [closed] = close_alerts(
            bench.db, bench.settings, [D1], how="suspended", now=bench.now, by="U012ADMIN"
        )
    card = bench.card_text("alert:1")
    assert closed.resolved_how == "suspended"
    assert "suspended by <@U012ADMIN>" in card and ":double_vertical_bar: suspended <@U012ADMIN>" in card
    assert "was suspended by <@U012ADMIN>" in bench.replies("alert:1")[-1]
    with write(bench.db):
        directory.set_state(bench.db, d2, "suspend")
    _down(bench, [d2])
    assert bench.advance(2 * HOUR).raised == 0
    assert alerts.open_for_devices(bench.db, [d2]) == {}


def test_a_burst_waits_for_the_grouping_delay_and_is_posted_once_grouped_with_every_device_in_the_thread(
    tmp_path: Path,
) -> None:
    """[alerts] group_delay: devices coming due a few seconds apart are not posted as single cards
    first: the channel waits until its burst has been quiet for the delay, then posts one grouped
    card; with more devices than the card lists, its thread lists every one ("Show all")."""
    from datetime import timedelta

    benches = alert_bench(tmp_path, alert_group_delay=timedelta(seconds=10))
    bench = next(benches)
    try:
        twenty = DEVICES[:20]
        bench.command(f"watch {' '.join(twenty)} --alert-after 30m")
        for i, device in enumerate(twenty):  # going dark one second apart
            bench.callback(device, True, at=bench.now - 1)
            bench.callback(device, False, at=bench.now + i)
        bench.now += 30 * MIN
        held = bench.advance(5)  # the first ones are due, the burst is still arriving
        assert held.raised == 0 and held.held > 0 and bench.cards() == []
        tick = bench.advance(30)
        assert tick.raised == 20 and tick.groups_opened == 1
        assert [c.key for c in bench.cards()] == ["alert-group:1"]
        assert "every device is listed in the thread" in bench.card_text("alert-group:1")
        (listing,) = [
            r for r in bench.replies("alert-group:1") if r.startswith("*All 20 devices still down:*")
        ]
        assert listing.count("• ") == 20

    finally:
        benches.close()
