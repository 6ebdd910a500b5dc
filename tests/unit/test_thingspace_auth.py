"""ThingSpaceAuth against the sandbox over loopback: token caching, session renewal, single-flight
re-login under concurrency, and no login loop after a refused login."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bot.thingspace import (
    Diagnostics,
    LoginCoolingDown,
    LoginFailed,
    LoginLockedOut,
    ServerError,
    ThingSpaceAuth,
    ThingSpaceClient,
    parse_device_id,
)
from tests.helpers.thingspace import (
    ACCOUNT,
    CLIENT_ID,
    CLIENT_SECRET,
    LOGIN_PATH,
    PASSWORD,
    TOKEN_PATH,
    USERNAME,
    MovableClock,
    Running,
    client_for,
    running_sandbox,
)

DEVICE = parse_device_id("iccid:89148000000800139708")
DIAG_PATH = "/m2m/v1/devices/extendeddiagnostics/actions/list"


@pytest.fixture
def running() -> Iterator[Running]:
    with running_sandbox(devices=30) as running:
        yield running


def test_first_call_gets_a_token_and_a_session_then_reuses_both(running: Running) -> None:
    """One token request and one login serve any number of calls."""
    with client_for(running.url) as client:
        for _ in range(5):
            assert isinstance(client.extended_diagnostics(DEVICE), Diagnostics)
    assert running.count(TOKEN_PATH) == 1
    assert running.count(LOGIN_PATH) == 1
    assert running.count(DIAG_PATH) == 5


def test_expired_session_is_renewed_once_and_the_call_resent(running: Running) -> None:
    """After 21 idle minutes ThingSpace answers SessionToken.Expired; the auth logs in again once."""
    with client_for(running.url) as client:
        client.extended_diagnostics(DEVICE)
        running.advance(21 * 60)
        assert client.extended_diagnostics(DEVICE).state == "active"
    assert running.count(LOGIN_PATH) == 2
    answers = [e.get("errorCode", "") for e in running.requests(DIAG_PATH)]
    assert answers == ["", "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired", ""]


def test_session_token_format_error_logs_in_again_once(running: Running) -> None:
    """``SessionToken.Format`` (the token header missing or unreadable) is cured by a fresh login,
    like an expired session: one login, the call resent once."""
    with client_for(running.url) as client:
        client.extended_diagnostics(DEVICE)
        running.fault(
            path=DIAG_PATH,
            status=400,
            body={
                "errorCode": "UnifiedWebService.REQUEST_FAILED.SessionToken.Format",
                "errorMessage": "The VZ-M2M-Token header is missing.",
            },
        )
        assert client.extended_diagnostics(DEVICE).state == "active"
    assert running.count(LOGIN_PATH) == 2
    assert running.count(DIAG_PATH) == 3


def test_fifty_concurrent_calls_meeting_an_expired_session_log_in_once(running: Running) -> None:
    """50 threads hitting an expired session at once cause exactly one login, and all succeed."""
    with client_for(running.url, max_connections=64) as client:
        client.extended_diagnostics(DEVICE)
        running.advance(21 * 60)
        start = threading.Barrier(50)

        def call(_: int) -> str:
            start.wait()
            return client.extended_diagnostics(DEVICE).state

        with ThreadPoolExecutor(max_workers=50) as pool:
            states = list(pool.map(call, range(50)))
    assert states == ["active"] * 50
    assert running.count(LOGIN_PATH) == 2  # the first session, then exactly one re-login
    expired = [
        e for e in running.requests(DIAG_PATH) if e.get("errorCode", "").endswith("SessionToken.Expired")
    ]
    assert expired, "the calls really met an expired session"
    assert client.auth.logins == 2


def test_expired_bearer_token_is_refreshed_once(running: Running) -> None:
    """After an hour the bearer gets a 401 fault 900901; the auth fetches a new token and the session."""
    with client_for(running.url) as client:
        client.extended_diagnostics(DEVICE)
        running.advance(61 * 60)
        assert client.extended_diagnostics(DEVICE).state == "active"
    assert running.count(TOKEN_PATH) == 2
    assert running.count(LOGIN_PATH) == 2
    codes = [e.get("errorCode", "") for e in running.requests(DIAG_PATH)]
    assert codes[1] == "900901"


def test_idle_session_is_renewed_before_sending(running: Running) -> None:
    """After 18 idle minutes on the client's clock it logs in first instead of meeting an expiry."""
    clock = MovableClock()
    with client_for(running.url, clock=clock) as client:
        client.extended_diagnostics(DEVICE)
        clock.advance(19 * 60)
        running.advance(19 * 60)
        client.extended_diagnostics(DEVICE)
    assert running.count(LOGIN_PATH) == 2
    assert all("errorCode" not in e for e in running.requests(DIAG_PATH))


def test_bad_password_is_tried_once_then_calls_fail_fast(running: Running) -> None:
    """A refused login closes logins: later calls raise LoginCoolingDown without touching ThingSpace."""
    clock = MovableClock()
    with client_for(running.url, password="wrong", clock=clock, login_cooldown=300) as client:
        with pytest.raises(LoginFailed) as first:
            client.extended_diagnostics(DEVICE)
        assert type(first.value) is LoginFailed  # not LoginLockedOut: the user is not locked
        assert first.value.error_code == "REQUEST_FAILED.Login.InvalidCredentials"
        for _ in range(10):
            with pytest.raises(LoginCoolingDown) as info:
                client.extended_diagnostics(DEVICE)
        assert 0 < info.value.seconds_left <= 300
        assert "paused" in info.value.user_message
        assert running.count(LOGIN_PATH) == 1
        assert client.auth.logins_closed_for() == 300
        clock.advance(301)
        with pytest.raises(LoginFailed):
            client.extended_diagnostics(DEVICE)
        assert running.count(LOGIN_PATH) == 2
    assert running.sandbox.summary()["userLocked"] is False
    assert running.count(DIAG_PATH) == 0


def test_fifty_threads_with_a_bad_password_make_one_login_attempt(running: Running) -> None:
    """Concurrent calls with wrong credentials still produce a single login attempt."""
    with client_for(running.url, password="wrong") as client:

        def call(_: int) -> str:
            try:
                client.extended_diagnostics(DEVICE)
            except LoginCoolingDown:
                return "cooling"
            except LoginFailed:
                return "failed"
            return "ok"

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(call, range(50)))
    assert results.count("failed") == 1
    assert results.count("cooling") == 49
    assert running.count(LOGIN_PATH) == 1


def test_wrong_password_is_login_failed_not_locked_out(running: Running) -> None:
    """The sandbox's wrong-password message mentions "locked" ("4 attempts left before the user is
    locked"); the error is classified on its code: exactly LoginFailed, with what to fix."""
    with client_for(running.url, password="Not-The-Pass-123") as client, pytest.raises(LoginFailed) as info:
        client.extended_diagnostics(DEVICE)
    error = info.value
    assert type(error) is LoginFailed
    assert "locked" in error.message  # the free text that used to be misread
    message = error.user_message
    assert "THINGSPACE_USERNAME" in message and "THINGSPACE_PASSWORD" in message
    assert "`tsbot check`" in message
    assert "Verizon Support" not in message and "locked" not in message
    assert "Not-The-Pass-123" not in message and "Not-The-Pass-123" not in str(error)
    assert running.sandbox.summary()["userLocked"] is False


def test_wrong_client_secret_names_the_api_key_settings(running: Running) -> None:
    """A refused token request is LoginFailed too, and says to check the client id and secret."""
    with client_for(running.url, client_secret="wrong") as client, pytest.raises(LoginFailed) as info:
        client.extended_diagnostics(DEVICE)
    assert type(info.value) is LoginFailed
    assert "THINGSPACE_CLIENT_ID" in info.value.user_message
    assert "THINGSPACE_CLIENT_SECRET" in info.value.user_message


def test_locked_user_is_reported_as_locked(running: Running) -> None:
    """When Verizon has locked the user, the error says so and logins close."""
    with client_for(running.url, password="nope") as wrong:
        for _ in range(5):
            with pytest.raises(LoginFailed):
                wrong.extended_diagnostics(DEVICE)
            wrong.auth.reset()  # an operator insisting, five times
    assert running.sandbox.summary()["userLocked"] is True
    with client_for(running.url) as client:
        with pytest.raises(LoginLockedOut) as info:
            client.extended_diagnostics(DEVICE)
        assert info.value.error_code == "REQUEST_FAILED.Login.UserLocked"
        assert "Verizon Support" in info.value.user_message
        with pytest.raises(LoginCoolingDown):
            client.extended_diagnostics(DEVICE)


def test_bad_client_secret_is_not_retried(running: Running) -> None:
    """A refused OAuth token request closes logins too; the token endpoint is asked once."""
    with client_for(running.url, client_secret="wrong") as client:
        with pytest.raises(LoginFailed) as info:
            client.extended_diagnostics(DEVICE)
        assert info.value.error_code == "invalid_client"
        with pytest.raises(LoginCoolingDown) as cooling:
            client.extended_diagnostics(DEVICE)
        assert "token request" in str(cooling.value)
    assert running.count(TOKEN_PATH) == 1
    assert running.count(LOGIN_PATH) == 0


def test_server_error_on_login_does_not_close_logins(running: Running) -> None:
    """A 503 from the login endpoint is not a credential refusal: no cool-down, the next call logs in."""
    running.fault(path=LOGIN_PATH, status=503, count=1)
    with client_for(running.url) as client:
        with pytest.raises(ServerError):
            client.extended_diagnostics(DEVICE)
        assert client.auth.logins_closed_for() == 0
        assert client.extended_diagnostics(DEVICE).state == "active"
    assert running.count(LOGIN_PATH) == 2


def test_reset_reopens_logins(running: Running) -> None:
    """reset() (after an operator fixed the credentials) lets the next call log in again."""
    with client_for(running.url, password="wrong") as client:
        with pytest.raises(LoginFailed):
            client.extended_diagnostics(DEVICE)
        client.auth.reset()
        assert client.auth.logins_closed_for() == 0
        with pytest.raises(LoginFailed):
            client.extended_diagnostics(DEVICE)
    assert running.count(LOGIN_PATH) == 2


def test_auth_works_alone_on_a_plain_httpx_client(running: Running) -> None:
    """ThingSpaceAuth is an ordinary httpx.Auth: a bare httpx.Client gets both headers."""
    auth = ThingSpaceAuth(
        running.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, username=USERNAME, password=PASSWORD
    )
    with httpx.Client(base_url=running.url, auth=auth) as http:
        answer = http.post(DIAG_PATH, json={"accountName": ACCOUNT, "deviceList": [DEVICE.to_wire()]})
    assert answer.status_code == 200
    assert answer.json()["categories"]
    assert (auth.token_requests, auth.logins) == (1, 1)


def test_credentials_never_reach_the_logs(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the password, the client secret nor the tokens appear in any log record."""
    caplog.set_level(logging.DEBUG)
    with client_for(running.url) as client:
        client.extended_diagnostics(DEVICE)
        running.advance(21 * 60)
        client.extended_diagnostics(DEVICE)
    with client_for(running.url, password="wrong-pass-123") as bad, pytest.raises(LoginFailed):
        bad.extended_diagnostics(DEVICE)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (PASSWORD, CLIENT_SECRET, "wrong-pass-123"):
        assert secret not in text
    assert "Bearer" not in text


def test_async_use_is_refused() -> None:
    """The auth is synchronous only; an AsyncClient gets a clear error."""
    import asyncio

    auth = ThingSpaceAuth("http://127.0.0.1:9", client_id="a", client_secret="b", username="c", password="d")

    async def use() -> None:
        async with httpx.AsyncClient(auth=auth) as http:
            await http.get("http://127.0.0.1:9/x")

    with pytest.raises(RuntimeError, match="synchronous"):
        asyncio.run(use())


def test_client_is_a_context_manager_and_closes() -> None:
    """A closed client refuses further calls (a programming error, not a ThingSpace failure)."""
    client = ThingSpaceClient(
        "http://127.0.0.1:9",
        client_id="a",
        client_secret="b",
        username="c",
        password="d",
        account=ACCOUNT,
    )
    with client:
        pass
    with pytest.raises(RuntimeError):
        client.extended_diagnostics(DEVICE)


def test_more_callers_than_connections_all_get_answers(running: Running) -> None:
    """40 threads on a 4-connection client: callers queue for a connection, none loses its socket.

    httpcore 1.0.9 can close a pooled connection it already handed to a queued request
    (encode/httpcore#1110); the client caps in-flight requests at its pool size so that never happens.
    """
    with client_for(running.url, max_connections=4) as client:
        start = threading.Barrier(40)

        def call(_: int) -> list[str]:
            start.wait()
            return [client.extended_diagnostics(DEVICE).state for _ in range(5)]

        with ThreadPoolExecutor(max_workers=40) as pool:
            states = [state for batch in pool.map(call, range(40)) for state in batch]
    assert states == ["active"] * 200
    assert running.count(DIAG_PATH) == 200
