"""The 3 a.m. experience, continued: times in the reader's zone, cards that change state instead of
piling up ephemerals, grouped cards that the earlier cards link to, confirm dialogs on alert cards.

A real bot, the sandbox behind the real client and the Slack stand-in; every payload is also
checked against Slack's limits by the e2e conftest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from bot.console.records import Message
from bot.core.reachability import labels_for
from bot.local_stack import LocalStack
from bot.render import times
from bot.scheduler.reachability_tasks import evaluate_task
from storage import directory, watches

_TOKEN = re.compile(r"<!date\^\d+\^[^|>]*\|[^>]*>")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("3am-more"), devices=80, scheduler=False)
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


def _until(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _no_raw_utc(text: str) -> None:
    """Every time is a date token: nothing outside the tokens says UTC."""
    assert "UTC" not in _TOKEN.sub("", text), text


def test_times_are_date_tokens_in_the_readers_zone(stack: LocalStack) -> None:
    """Point 8: the status card's last connection, the diag card's footer and evidence, the
    one-device reply's "confirmed at" and the alert card's facts are ``<!date^…>`` tokens with a
    fallback, never raw UTC."""
    assert stack.runtime is not None
    key = _key(stack, "demo-healthy")
    stack.command(f"status {key}")
    card = _wait(stack, lambda m: m.ephemeral and "Last connection" in str(m.blocks) and "active" in m.text)
    (last,) = [f for b in card.blocks for f in b.get("fields", []) if "Last connection" in f["text"]]
    assert "<!date^" in last["text"] and " ago)" in last["text"]
    _no_raw_utc(str(card.blocks))

    stack.command(f"diag {_key(stack, 'demo-hung')}")
    diag = _wait(
        stack, lambda m: m.ephemeral and "Diagnosis" in str(m.blocks) and "demo-hung" in str(m.blocks)
    )
    footer = diag.blocks[-1]["elements"][0]["text"]
    assert "checks answered" in footer and "<!date^" in footer
    _no_raw_utc(str(diag.blocks))

    stack.command(f"suspend {_key(stack, 'demo-usage-spike')} --reason stolen")
    _wait(stack, lambda m: "Provisioning limits read" in str(m.blocks))
    stack.click("Confirm")
    reply = _wait(stack, lambda m: m.thread_ts is not None and "ThingSpace confirmed at" in m.text)
    assert "confirmed at <!date^" in reply.text
    assert "UTC" in times.fallback(reply.text)  # the fallback is written in the configured zone
    _no_raw_utc(reply.text)

    db = stack.runtime.pool.get()
    suspended = _key(stack, "demo-usage-spike")  # suspended above: a suspended line is never paged
    device = next(
        m.key
        for m in directory.group_members(db, "trackers")
        if m.key != suspended and m.state == "active" and not m.label.startswith("demo-")
    )
    stack.sandbox.set_reachability(device.split(":", 1)[1], True)
    stack.command(f"watch {device} --alert-after 10m")
    _until(lambda: (s := watches.get_state(db, device)) is not None and s.reachable is True)
    stack.sandbox.set_reachability(device.split(":", 1)[1], False)
    _until(lambda: (s := watches.get_state(db, device)) is not None and s.reachable is False)
    assert evaluate_task(stack.runtime.deps, now=time.time() + 10 * 60 + 5).raised == 1
    alert = _wait(stack, lambda m: m.thread_ts is None and m.user is None and "Unreachable" in str(m.blocks))
    facts = alert.blocks[1]["elements"][0]["text"]
    assert "raised <!date^" in facts
    _no_raw_utc(str(alert.blocks))
    # point 9: Acknowledge and Snooze change the alert, so each asks first; Diagnose does not
    asks = {b.text: b.has_confirm for b in alert.buttons()}
    assert asks == {
        "Acknowledge": True,
        "Snooze 1 h": True,
        "Snooze 4 h": True,
        "Snooze 24 h": True,
        "Diagnose": False,
    }


def test_accepted_is_a_state_of_the_confirmation_card_and_answers_replace_their_ack(
    stack: LocalStack,
) -> None:
    """Point 6: once ThingSpace accepts, the confirmation card itself says so (request id, where
    results land) instead of a third ephemeral; the "⏳" of `request` and `reach` becomes the answer."""
    key = _key(stack, "demo-over-plan")
    stack.command(f"suspend {key} --reason depot closed")
    card = _wait(stack, lambda m: m.ephemeral and "Provisioning limits read" in str(m.blocks))
    stack.click("Confirm")
    accepted = _wait(stack, lambda m: m.ts == card.ts and "ThingSpace accepted" in m.text)
    request_id = re.search(r"request `([0-9a-f-]{36})`", accepted.text)
    assert request_id and "<#C0OPS>" in accepted.text and "thread" in accepted.text
    assert [m for m in stack.standin.messages() if "ThingSpace accepted" in m.versions[0].text] == []
    assert accepted.blocks[0]["text"]["text"] == accepted.text

    stack.command(f"request {request_id.group(1)}")
    answer = _wait(stack, lambda m: m.ephemeral and "Checking request" in m.versions[0].text and m.updated)
    assert answer.text == f"Request {request_id.group(1)}" and "Results so far" in str(answer.blocks)

    stack.command(f"reach {_key(stack, 'demo-healthy')}")
    reach = _wait(
        stack, lambda m: m.ephemeral and "Asking ThingSpace whether" in m.versions[0].text and m.updated
    )
    assert "ThingSpace is checking whether" in reach.text and "<#C0OPS>" in reach.text


def _watched_down(stack: LocalStack, devices: list[str], channel: str) -> None:
    assert stack.runtime is not None
    db = stack.runtime.pool.get()
    for key in devices:
        stack.sandbox.set_reachability(key.split(":", 1)[1], False)
    _until(lambda: all((s := watches.get_state(db, k)) is not None and s.reachable is False for k in devices))


def test_earlier_cards_link_to_the_grouped_card_which_diagnoses_one_device(stack: LocalStack) -> None:
    """Point 4: two single-device cards are up when four more devices go down; the grouped card is
    posted and the two earlier cards link to its permalink (chat.getPermalink); its menu diagnoses
    one chosen device in the grouped card's thread."""
    assert stack.runtime is not None and stack.driver is not None
    db = stack.runtime.pool.get()
    members = [d.key for d in directory.group_members(db, "trackers") if d.state == "active"][1:7]
    assert len(members) == 6
    stack.standin.add_channel("C0FEED2", "feeder-2")
    for key in members:
        stack.sandbox.set_reachability(key.split(":", 1)[1], True)
    stack.command(f"watch {' '.join(members)} --alert-after 5m --channel #C0FEED2")
    _until(lambda: all(watches.is_monitored(db, k) for k in members))
    _until(lambda: all((s := watches.get_state(db, k)) is not None and s.reachable is True for k in members))
    _watched_down(stack, members[:2], "C0FEED2")
    assert evaluate_task(stack.runtime.deps, now=time.time() + 5 * 60 + 10).raised == 2
    _until(lambda: len([m for m in stack.standin.messages("C0FEED2") if m.thread_ts is None]) == 2)
    _watched_down(stack, members[2:], "C0FEED2")
    tick = evaluate_task(stack.runtime.deps, now=time.time() + 5 * 60 + 10)
    assert (tick.raised, tick.groups_opened) == (4, 1)
    group = _wait(stack, lambda m: m.channel == "C0FEED2" and "6 devices went down together" in str(m.blocks))
    link = f"<https://{'[^|>]+'}/archives/C0FEED2/p{group.ts.replace('.', '')}|the grouped alert>"
    _until(
        lambda: (
            sum(
                1
                for m in stack.standin.messages("C0FEED2")
                if m.ts != group.ts and m.thread_ts is None and re.search(link, str(m.blocks))
            )
            == 2
        )
    )
    assert stack.standin.calls("chat.getPermalink")
    assert all(b.has_confirm for b in group.buttons()), [(b.text, b.has_confirm) for b in group.buttons()]
    shown = labels_for(db, [members[3]])[members[3]]
    menu = [b for b in group.blocks if b.get("accessory", {}).get("type") == "static_select"]
    assert len(menu) == 1 and len(menu[0]["accessory"]["options"]) == 6
    option = next(o["text"]["text"] for o in menu[0]["accessory"]["options"] if o["text"]["text"] == shown)
    assert stack.driver.choose(option, user="U0OPS2", channel="C0FEED2").status_code == 200
    _wait(
        stack, lambda m: m.thread_ts == group.ts and "<@U0OPS2> asked for diagnostics" in m.text, timeout=20
    )
