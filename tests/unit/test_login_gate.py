"""The escalating, shared login gate, against the sandbox over loopback with the gate in a real SQLite
file: one bad password reaches ThingSpace at most twice, whatever the traffic, across clients
("processes") and restarts; new credentials reopen at once; a successful login resets the count."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from bot.thingspace import (
    LoginCoolingDown,
    LoginFailed,
    LoginLockedOut,
    LoginPause,
    MemoryLoginGate,
    ServerError,
    ThingSpaceAuthError,
    ThingSpaceClient,
    parse_device_id,
)
from bot.thingspace.auth import credentials_key
from storage.login_gate import ITERATIONS, SqliteLoginGate
from storage.pool import ConnectionPool
from tests.helpers.thingspace import (
    CLIENT_ID,
    CLIENT_SECRET,
    LOGIN_PATH,
    PASSWORD,
    USERNAME,
    MovableClock,
    Running,
    client_for,
    running_sandbox,
)

DEVICE = parse_device_id("iccid:89148000000800139708")
WRONG = "Wrong-Pass-1234"

OpenGate = Callable[..., SqliteLoginGate]


@pytest.fixture
def running() -> Iterator[Running]:
    with running_sandbox(devices=30) as running:
        yield running


@pytest.fixture
def open_gate(tmp_path: Path) -> Iterator[OpenGate]:
    """``open_gate(clock)``: a new "process" on the shared database file (its own connections)."""
    pools: list[ConnectionPool] = []

    def open_(clock: Callable[[], float], program: str = "test") -> SqliteLoginGate:
        pool = ConnectionPool(tmp_path / "tsbot.db")
        pools.append(pool)
        return SqliteLoginGate(pool.get, clock=clock, program=program)

    yield open_
    for pool in pools:
        pool.close()


def _call(client: ThingSpaceClient) -> str:
    """What one call met: ``ok``, ``refused`` (a login was sent and refused) or the pause's kind."""
    try:
        client.extended_diagnostics(DEVICE)
    except LoginCoolingDown as exc:
        return exc.pause.value
    except LoginFailed:
        return "refused"
    return "ok"


def _refused_twice(client: ThingSpaceClient, clock: MovableClock) -> bool:
    """A call refused, then another once the cool-down has run out: refused too."""
    first = _call(client)
    clock.advance(301)
    return first == _call(client) == "refused"


def _locked(running: Running) -> bool:
    return bool(running.sandbox.summary()["userLocked"])


@pytest.mark.parametrize("where", ["sqlite", "memory"])
def test_an_hour_of_steady_traffic_with_a_wrong_password_sends_two_logins(
    running: Running, open_gate: OpenGate, where: str
) -> None:
    """A call every 15 s for 60 simulated minutes: one login, one more after the cool-down, then
    nothing until the credentials change; the sandbox user is not locked."""
    clock = MovableClock()
    gate = open_gate(clock) if where == "sqlite" else None
    seen: Counter[str] = Counter()
    with client_for(running.url, password=WRONG, clock=clock, login_gate=gate) as client:
        for _ in range(240):
            seen[_call(client)] += 1
            clock.advance(15)
            running.advance(15)
    assert running.count(LOGIN_PATH) == 2
    assert seen["refused"] == 2
    assert seen["cool-down"] == 19  # 300 s of calls every 15 s after the first refusal
    assert seen["until-changed"] == 240 - 2 - 19
    assert not _locked(running)


def test_two_processes_sharing_the_gate_send_two_logins_in_all(running: Running, open_gate: OpenGate) -> None:
    """Two clients on one SQLite gate (two bot processes, or the bot and `tsbot check`), calling in
    turn for an hour: two login attempts together, not two each."""
    clock = MovableClock()
    with (
        client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as first,
        client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as second,
    ):
        seen: Counter[str] = Counter()
        for _ in range(120):
            for client in (first, second):
                seen[_call(client)] += 1
                clock.advance(15)
    assert running.count(LOGIN_PATH) == 2
    assert seen["refused"] == 2
    assert not _locked(running)


def test_a_restart_with_the_same_bad_password_sends_no_login(running: Running, open_gate: OpenGate) -> None:
    """A new process with the refused password sends nothing, during the cool-down and after the
    second refusal; the Slack-facing message says what happened and what to do, without secrets."""
    clock = MovableClock()
    with client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as before:
        assert _call(before) == "refused"
    with client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as restarted:
        with pytest.raises(LoginCoolingDown) as cooling:
            restarted.extended_diagnostics(DEVICE)
        assert cooling.value.pause is LoginPause.COOL_DOWN and cooling.value.seconds_left == 300
        text = cooling.value.user_message
        assert "paused for 5 min" in text and "tries once more" in text
        assert "THINGSPACE_USERNAME and THINGSPACE_PASSWORD" in text and "`tsbot check`" in text
        clock.advance(301)
        assert _call(restarted) == "refused"
    assert running.count(LOGIN_PATH) == 2
    clock.advance(24 * 3600)
    with (
        client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as next_day,
        pytest.raises(LoginCoolingDown) as paused,
    ):
        next_day.extended_diagnostics(DEVICE)
    error = paused.value
    assert error.pause is LoginPause.UNTIL_CHANGED and error.refusals == 2
    assert error.cause is not None and type(error.cause) is LoginFailed
    assert error.cause.error_code == "REQUEST_FAILED.Login.InvalidCredentials"
    assert error.since == 1000.0 and error.paused_for == 24 * 3600 + 301
    assert error.refused_by.startswith("test (pid ")
    text = error.user_message
    assert "twice with the same credentials" in text and "paused until they change" in text
    assert "`tsbot check --reopen-logins`" in text and "(paused 24 h 5 min ago)" in text
    assert WRONG not in text and WRONG not in str(error) and CLIENT_SECRET not in text
    assert running.count(LOGIN_PATH) == 2
    assert not _locked(running)


def test_new_credentials_reopen_logins_at_once(running: Running, open_gate: OpenGate) -> None:
    """After the pause, the right password logs in immediately; the refused one stays paused."""
    clock = MovableClock()
    with client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as wrong:
        assert _refused_twice(wrong, clock)
        with client_for(running.url, clock=clock, login_gate=open_gate(clock)) as fixed:
            assert _call(fixed) == "ok"
        assert running.count(LOGIN_PATH) == 3
        assert _call(wrong) == "until-changed"
    assert running.count(LOGIN_PATH) == 3


def test_a_successful_login_resets_the_count(running: Running, open_gate: OpenGate) -> None:
    """Refused once (the password was rotated at Verizon, then rolled back), the same credentials
    log in after the cool-down; the next refusal is a first one again, not a second."""
    clock = MovableClock()
    right = running.sandbox.auth.credentials
    gate = open_gate(clock)
    with client_for(running.url, clock=clock, login_gate=gate) as client:
        assert _call(client) == "ok"
        running.sandbox.auth.credentials = replace(right, password="rotated-at-verizon")
        clock.advance(21 * 60)
        running.advance(21 * 60)
        assert _call(client) == "refused"
        running.sandbox.auth.credentials = right
        clock.advance(301)
        running.advance(301)
        assert _call(client) == "ok"
        state = gate.load(credentials_key(CLIENT_ID, CLIENT_SECRET, USERNAME, PASSWORD))
        assert (state.attempts, state.refusals, state.streak) == (0, 0, 0)
        running.sandbox.auth.credentials = replace(right, password="rotated-at-verizon")
        clock.advance(21 * 60)
        running.advance(21 * 60)
        assert _call(client) == "refused"
        assert _call(client) == "cool-down"  # a first refusal again
    assert running.count(LOGIN_PATH) == 4


def test_two_processes_racing_for_the_last_try_send_one_login(running: Running, open_gate: OpenGate) -> None:
    """When the cool-down ends, eight threads in two processes call at the same moment: the gate's
    claim lets exactly one of them send the second (and last) login."""
    clock = MovableClock()
    with (
        client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as first,
        client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as second,
    ):
        assert _call(first) == "refused"
        clock.advance(301)
        start = threading.Barrier(8)

        def race(client: ThingSpaceClient) -> str:
            start.wait()
            return _call(client)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(race, [first, second] * 4))
    assert results.count("refused") == 1
    assert set(results) <= {"refused", "in-progress", "until-changed"}
    assert running.count(LOGIN_PATH) == 2


def test_a_server_error_on_login_is_not_counted(running: Running, open_gate: OpenGate) -> None:
    """A 503 from the login endpoint is no verdict on the credentials: nothing is recorded and the
    next call logs in at once."""
    clock = MovableClock()
    gate = open_gate(clock)
    running.fault(path=LOGIN_PATH, status=503, count=2)
    with client_for(running.url, clock=clock, login_gate=gate) as client:
        for _ in range(2):
            with pytest.raises(ServerError):
                client.extended_diagnostics(DEVICE)
        assert client.auth.login_pause() is None
        assert _call(client) == "ok"
    state = gate.load(credentials_key(CLIENT_ID, CLIENT_SECRET, USERNAME, PASSWORD))
    assert (state.attempts, state.refusals, state.streak) == (0, 0, 0)
    assert running.count(LOGIN_PATH) == 3


def test_a_login_that_never_came_back_counts_as_refused(running: Running, open_gate: OpenGate) -> None:
    """A process that claimed an attempt and died: others wait while it may be in flight, then count
    it as refused — so the bad password still reaches ThingSpace at most twice."""
    clock = MovableClock()
    key = credentials_key(CLIENT_ID, CLIENT_SECRET, USERNAME, WRONG)
    dead = open_gate(clock, program="a process that died")
    assert dead.claim(key, dead.load(key).version)
    with client_for(running.url, password=WRONG, clock=clock, login_gate=open_gate(clock)) as client:
        with pytest.raises(LoginCoolingDown) as busy:
            client.extended_diagnostics(DEVICE)
        assert busy.value.pause is LoginPause.IN_PROGRESS
        assert "try again in a few seconds" in busy.value.user_message
        clock.advance(121)
        assert _call(client) == "cool-down"
        clock.advance(180)
        assert _call(client) == "refused"
        assert _call(client) == "until-changed"
    assert running.count(LOGIN_PATH) == 1


def test_too_many_refusals_in_a_row_pause_every_credential(running: Running, open_gate: OpenGate) -> None:
    """Two wrong passwords refused twice each (4 in a row; Verizon locks at 5): a third password is
    not tried at all until an operator reopens logins; then it is."""
    clock = MovableClock()
    for password in ("first-wrong", "second-wrong"):
        with client_for(running.url, password=password, clock=clock, login_gate=open_gate(clock)) as client:
            assert _refused_twice(client, clock)
    assert running.count(LOGIN_PATH) == 4
    with client_for(running.url, clock=clock, login_gate=open_gate(clock)) as third:
        with pytest.raises(LoginCoolingDown) as paused:
            third.extended_diagnostics(DEVICE)
        assert paused.value.pause is LoginPause.TOO_MANY and paused.value.refusals == 4
        assert "`tsbot check --reopen-logins`" in paused.value.user_message
        assert running.count(LOGIN_PATH) == 4
        assert not _locked(running)
        third.auth.reset()  # the operator reopens
        assert _call(third) == "ok"
    assert running.count(LOGIN_PATH) == 5
    assert not _locked(running)


def test_a_locked_user_stays_paused_across_restarts(running: Running, open_gate: OpenGate) -> None:
    """ThingSpace says the user is locked: LoginLockedOut once, then no process logs in with those
    credentials until they change or an operator reopens."""
    with client_for(running.url, password="nope") as insisting:
        for _ in range(5):
            with pytest.raises(LoginFailed):
                insisting.extended_diagnostics(DEVICE)
            insisting.auth.reset()
    assert _locked(running)
    before = running.count(LOGIN_PATH)
    clock = MovableClock()
    with (
        client_for(running.url, clock=clock, login_gate=open_gate(clock)) as client,
        pytest.raises(LoginLockedOut),
    ):
        client.extended_diagnostics(DEVICE)
    clock.advance(3600)
    with (
        client_for(running.url, clock=clock, login_gate=open_gate(clock)) as restarted,
        pytest.raises(LoginCoolingDown) as paused,
    ):
        restarted.extended_diagnostics(DEVICE)
    assert paused.value.pause is LoginPause.LOCKED
    assert type(paused.value.cause) is LoginLockedOut
    assert "Verizon Support" in paused.value.user_message
    assert running.count(LOGIN_PATH) == before + 1


def test_the_gate_keeps_a_salted_fingerprint_never_the_credentials(
    running: Running, open_gate: OpenGate, tmp_path: Path
) -> None:
    """Rows hold PBKDF2-SHA256(credentials, random salt, 200,000) and the refusal; the password and
    the client secret are nowhere in the database files."""
    clock = MovableClock()
    for password in (WRONG, "Another-Wrong-5678"):
        with client_for(running.url, password=password, clock=clock, login_gate=open_gate(clock)) as client:
            assert _call(client) == "refused"
    with sqlite3.connect(tmp_path / "tsbot.db") as db:
        rows = db.execute(
            "SELECT salt, fingerprint, iterations, error_code FROM login_gate ORDER BY id"
        ).fetchall()
    db.close()
    assert len(rows) == 2 and rows[0][0] != rows[1][0]
    assert {len(salt) for salt, *_ in rows} == {16}
    for (salt, fingerprint, iterations, code), password in zip(
        rows, (WRONG, "Another-Wrong-5678"), strict=True
    ):
        key = credentials_key(CLIENT_ID, CLIENT_SECRET, USERNAME, password)
        assert iterations == ITERATIONS == 200_000
        assert fingerprint == hashlib.pbkdf2_hmac("sha256", key, salt, iterations)
        assert code == "REQUEST_FAILED.Login.InvalidCredentials"
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("tsbot.db*"))
    for secret in (WRONG, "Another-Wrong-5678", CLIENT_SECRET):
        assert secret.encode() not in stored


def test_a_gate_that_cannot_be_read_means_no_login(running: Running) -> None:
    """If the gate's storage fails, the auth fails closed: a clear error and no login sent."""

    class BrokenGate(MemoryLoginGate):
        def load(self, credentials: bytes) -> object:  # type: ignore[override]
            raise sqlite3.OperationalError("disk I/O error")

    with (
        client_for(running.url, login_gate=BrokenGate()) as client,
        pytest.raises(ThingSpaceAuthError) as info,
    ):
        client.extended_diagnostics(DEVICE)
    assert not isinstance(info.value, LoginFailed)
    assert "login state" in info.value.user_message
    assert running.count(LOGIN_PATH) == 0
