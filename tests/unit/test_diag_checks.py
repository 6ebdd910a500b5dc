"""The diag checks (commands/diag.py): parallel, bounded, each under its own timeout, against a real sandbox."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.console.blocks import validate_blocks
from bot.core.config import Settings
from bot.core.redact import mask_id
from bot.sandbox import Sandbox, create_sandbox
from bot.serving import ServerThread
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import DeviceNotFound, ThingSpaceTimeout
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import ConnectionEvent, Device, Diagnostics
from commands.context import Deps
from commands.diag import CHECKS, card, diagnose, gather, network_facts, run_checks
from commands.verdict import Evidence, NextStep, Verdict, judge
from storage import directory
from storage.pool import ConnectionPool

ERROR_BODY = {
    "errorCode": "UnifiedWebService.REQUEST_FAILED.UnexpectedError",
    "errorMessage": "Unexpected error",
}


def test_checks_really_run_at_the_same_time() -> None:
    """Five checks that each wait for the other four all finish: they ran in parallel."""
    barrier = threading.Barrier(5, timeout=5)

    def check(n: int) -> Callable[[], int]:
        def run() -> int:
            barrier.wait()
            return n

        return run

    results = run_checks({f"c{n}": check(n) for n in range(5)}, timeout=10)
    assert {name: r.value for name, r in results.items()} == {f"c{n}": n for n in range(5)}
    assert all(r.ok for r in results.values())


def test_parallelism_is_bounded() -> None:
    """No more than max_parallel checks run at once."""
    lock = threading.Lock()
    active = 0
    peak = 0

    def run() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    results = run_checks({f"c{n}": run for n in range(6)}, timeout=10, max_parallel=2)
    assert len(results) == 6 and all(r.ok for r in results.values())
    assert peak == 2


def test_a_check_past_its_timeout_is_reported_and_the_rest_answer() -> None:
    """A hung check is named with its timeout; the others still return their values."""
    release = threading.Event()
    try:
        results = run_checks(
            {"slow": lambda: release.wait(30), "fast": lambda: "ok"},
            timeout={"slow": 0.2, "fast": 5},
        )
    finally:
        release.set()
    assert results["fast"].value == "ok"
    assert not results["slow"].ok
    assert results["slow"].error == "no answer within 0.2 s"


def test_thingspace_errors_become_their_user_message() -> None:
    """A ThingSpace error is shown as its one-sentence user message."""

    def fail() -> Any:
        raise ThingSpaceTimeout("POST /m2m/v1/devices/usage/actions/list: ReadTimeout")

    results = run_checks({"usage": fail, "line": lambda: 1})
    assert results["usage"].error == "ThingSpace took too long to answer; try again in a few minutes."
    assert results["line"].ok


def test_a_bug_in_a_check_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception fails only its check, with a generic message and a log entry."""

    def broken() -> Any:
        raise KeyError("nope")

    with caplog.at_level(logging.ERROR, logger="commands.diag"):
        results = run_checks({"hardware": broken})
    assert results["hardware"].error == "failed unexpectedly (see the bot's log)"
    assert "diag check hardware failed unexpectedly" in caplog.text


def test_no_checks_no_threads() -> None:
    """An empty set of checks returns an empty result."""
    assert run_checks({}) == {}


@pytest.fixture
def sandbox_deps(tmp_path: Path) -> Iterator[tuple[Deps, Sandbox]]:
    """Real parts: a sandbox over loopback, the ThingSpace client, a SQLite pool."""
    sandbox = create_sandbox(devices=20)
    server = ServerThread(sandbox.app).start()
    client = ThingSpaceClient(
        server.url,
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        username="sandbox-user",
        password="sandbox-pass",
        account="0000123456-00001",
    )
    pool = ConnectionPool(tmp_path / "tsbot.db")
    try:
        yield Deps(settings=Settings(), pool=pool, thingspace=client), sandbox
    finally:
        client.close()
        pool.close()
        server.stop()
        sandbox.close()


def test_a_slow_thingspace_call_times_out_and_the_verdict_uses_the_rest(
    sandbox_deps: tuple[Deps, Sandbox],
) -> None:
    """Connection history held back past its timeout: named as failed; the line is still judged."""
    deps, sandbox = sandbox_deps
    device = DeviceId.from_wire({"kind": "iccid", "id": sandbox.demo_devices()["hung"]["iccid"]})
    sandbox.inject_fault("/m2m/v1/devices/connections/actions/listHistory", latency=1.5)
    timeouts = {name: 10.0 for name in CHECKS} | {"sessions": 0.3}
    facts, _ = gather(deps, device, str(device), timeout=timeouts)
    assert dict(facts.failed) == {"connection history": "no answer within 0.3 s"}
    assert facts.events is None
    verdict = judge(facts)
    assert verdict.grade == "down"
    assert "no data session for 26 h" in verdict.summary


def test_an_unknown_line_is_not_diagnosed(sandbox_deps: tuple[Deps, Sandbox]) -> None:
    """A line ThingSpace does not know raises DeviceNotFound instead of an empty verdict."""
    deps, _ = sandbox_deps
    device = DeviceId.from_wire({"kind": "iccid", "id": "89148000000000000003"})
    with pytest.raises(DeviceNotFound):
        gather(deps, device, str(device))


def test_card_stays_within_block_kit_limits() -> None:
    """A verdict with a huge evidence list still makes a card Slack accepts (≤ 50 blocks, ≤ 3000 chars)."""
    evidence = tuple(Evidence(f"Topic {i}", "x" * 900, "warn") for i in range(200))
    steps = tuple(NextStep(f"Step {i}", f"watch iccid:8914800000080013970{i % 10}") for i in range(4))
    verdict = Verdict(grade="degraded", summary="S" * 4000, evidence=evidence, steps=steps)
    body = card(verdict, "demo-hung (iccid …4504)", checks=5, seconds=0.2, now=datetime.now(UTC))
    assert validate_blocks(body) == []
    assert len(body) <= 50
    assert body[-1]["type"] == "context"


@pytest.mark.parametrize("kind", ["eid", "imsi", "min"])
def test_an_id_some_checks_refuse_is_looked_up_and_checked_by_its_iccid(
    sandbox_deps: tuple[Deps, Sandbox], kind: str
) -> None:
    """A line named by EID, IMSI or MIN that the directory does not hold: the line is looked up
    first, every other check runs with its ICCID, and all seven answer."""
    deps, sandbox = sandbox_deps
    line = sandbox.device("demo-reconnect-loop")
    device = DeviceId.from_wire({"kind": kind, "id": line["ids"][kind]})
    seen = len(sandbox.requests_received())
    found = diagnose(deps, device, str(device))
    assert dict(found.facts.failed) == {}
    assert found.facts.target == f"iccid:{line['ids']['iccid']}"
    assert found.title == f"demo-reconnect-loop (iccid {mask_id(line['ids']['iccid'])})"
    assert judge(found.facts).grade == "degraded"
    calls = [r["path"] for r in sandbox.requests_received()[seen:] if r["path"].startswith("/m2m/v1/devices")]
    assert calls[0] == "/m2m/v1/devices/actions/list"  # the lookup comes first
    assert calls.count("/m2m/v1/devices/actions/list") == 1  # and is the line-details check
    assert "/m2m/v1/devices/extendeddiagnostics/actions/list" in calls


def test_an_unknown_eid_is_not_diagnosed(sandbox_deps: tuple[Deps, Sandbox]) -> None:
    """An EID the account does not hold ends at the lookup with DeviceNotFound."""
    deps, _ = sandbox_deps
    device = DeviceId.from_wire({"kind": "eid", "id": "89049032000000000000000000000001"})
    with pytest.raises(DeviceNotFound):
        gather(deps, device, str(device))


def test_when_the_lookup_fails_the_refused_checks_say_why(sandbox_deps: tuple[Deps, Sandbox]) -> None:
    """If the lookup of an EID fails, the checks that need another kind of id are named as failed;
    the ones that take an EID still answer."""
    deps, sandbox = sandbox_deps
    line = sandbox.device("demo-reconnect-loop")
    device = DeviceId.from_wire({"kind": "eid", "id": line["ids"]["eid"]})
    sandbox.inject_fault("/m2m/v1/devices/actions/list", status=400, body=ERROR_BODY)
    facts, _ = gather(deps, device, str(device))
    assert set(facts.failed) == {"line details", "extended diagnostics", "IMEI–ICCID check"}
    assert "accepts only iccid" in facts.failed["extended diagnostics"]
    assert facts.events is not None and facts.usage is not None


def test_the_directory_keeps_each_imei_change(tmp_path: Path) -> None:
    """A sync with a new IMEI records the change before overwriting it; a missing or equal IMEI does not;
    changes come newest first and can be limited to a window."""
    pool = ConnectionPool(tmp_path / "tsbot.db")
    try:
        db = pool.get()
        line = {"ids": {"iccid": "89148000000800139708", "imei": "356938035643809"}, "label": "t-1"}
        key = "iccid:89148000000800139708"
        directory.upsert_devices(db, [line], now=1000.0)
        directory.upsert_devices(db, [line], now=2000.0)
        directory.upsert_devices(db, [{**line, "ids": {"iccid": line["ids"]["iccid"]}}], now=2500.0)
        assert directory.imei_changes(db, key) == []
        directory.upsert_devices(db, [line], now=2600.0)
        directory.upsert_devices(
            db, [{**line, "ids": {**line["ids"], "imei": "490154203237518"}}], now=3000.0
        )
        directory.upsert_devices(
            db, [{**line, "ids": {**line["ids"], "imei": "353456789012345"}}], now=4000.0
        )
        changes = directory.imei_changes(db, key)
        assert [(c.previous, c.imei, c.changed_at) for c in changes] == [
            ("490154203237518", "353456789012345", 4000.0),
            ("356938035643809", "490154203237518", 3000.0),
        ]
        assert [c.imei for c in directory.imei_changes(db, key, since=3500.0)] == ["353456789012345"]
        entry = directory.lookup(db, "iccid", "89148000000800139708")
        assert entry is not None and entry.synced_at == 4000.0 and entry.ids["imei"] == "353456789012345"
    finally:
        pool.close()


# -- the network facts, from the real shapes (SDK ThingspaceDevice, ConnectionEvent) ----------------


def _device(**fields: object) -> Device:
    record = {"deviceIds": [{"kind": "iccid", "id": "89148000000800139708"}], **fields}
    return Device.from_wire(record)


def _diagnostics(**connectivity: str) -> Diagnostics:
    pairs = [{"key": k, "value": v} for k, v in connectivity.items()]
    return Diagnostics.from_wire(
        {"categories": [{"categoryName": "Connectivity", "extendedAttributes": pairs}]}
    )


def _event(at: str, kind: str, **more: str) -> ConnectionEvent:
    pairs = [{"key": "Event", "value": kind}, *({"key": k, "value": v} for k, v in more.items())]
    return ConnectionEvent.from_wire(
        {"occurredAt": at, "connectionEventAttributes": pairs, "extendedAttributes": []}
    )


def test_network_facts_from_the_real_fields_only() -> None:
    """Device list connected/lastConnectionDate/ipAddress, diagnostics Connected and the history's
    Start/Stop give attached, last connection and IP; the proposed extras stay empty."""
    device = _device(connected=True, lastConnectionDate="2026-01-10T08:00:00Z", ipAddress="10.1.2.3")
    events = [
        _event("2026-01-10T07:00:00Z", "Start", FramedIpAddress="10.9.9.9"),
        _event("2026-01-10T08:30:00Z", "Stop", BytesUsed="4096"),
    ]
    facts = network_facts(device, _diagnostics(Connected="true"), events)
    assert (facts.attached, facts.attached_from, facts.connected) == (
        True,
        "ThingSpace reports it connected",
        True,
    )
    assert facts.last_connection == datetime(2026, 1, 10, 8, 30, tzinfo=UTC)
    assert facts.ip_address == "10.1.2.3"
    assert (facts.apn, facts.rat, facts.sessions_last_hour) == ("", "", None)


def test_not_connected_says_nothing_about_the_attach_state() -> None:
    """``connected`` false leaves attached unknown; an open data session in the history means attached;
    without a device address the newest session's FramedIpAddress is shown."""
    silent = network_facts(_device(connected=False), _diagnostics(Connected="false"), [])
    assert (silent.attached, silent.connected, silent.last_connection) == (None, False, None)
    events = [_event("2026-01-10T07:00:00Z", "Start", FramedIpAddress="10.9.9.9")]
    open_session = network_facts(_device(connected=False), None, events)
    assert (open_session.attached, open_session.attached_from) == (True, "a data session is open")
    assert open_session.ip_address == "10.9.9.9"
    assert network_facts(None, None, None).attached is None


def test_proposed_diagnostics_keys_are_read_only_as_extras() -> None:
    """A sandbox of an earlier version (or a future API) sending the proposed keys still adds them."""
    diag = _diagnostics(
        Connected="true",
        Attached="false",
        LastConnectionDate="2026-01-10T09:00:00Z",
        Apn="iot.example",
        RatType="NB-IoT",
        SessionCount1h="31",
    )
    facts = network_facts(_device(lastConnectionDate="2026-01-10T08:00:00Z"), diag, None)
    assert (facts.attached, facts.attached_from) == (False, "extended diagnostics")
    assert facts.last_connection == datetime(2026, 1, 10, 9, tzinfo=UTC)
    assert (facts.apn, facts.rat, facts.sessions_last_hour) == ("iot.example", "NB-IoT", 31)
