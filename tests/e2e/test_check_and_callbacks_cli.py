"""`tsbot check` and `tsbot callbacks register|list` against the sandbox and the Slack stand-in,
with the login gate in a real SQLite file (TSBOT_DB in tmp_path)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.thingspace import LoginFailed, shapes
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool
from tests.helpers.stacks import served_sandbox, served_standin
from tests.helpers.thingspace import client_for

LOGIN_PATH = "/m2m/v1/session/login"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, object]]:
    with served_sandbox(devices=20) as (sandbox, url), served_standin() as standin:
        values = {
            "SLACK_BOT_TOKEN": standin.bot_token,
            "SLACK_SIGNING_SECRET": "a-signing-secret",
            "SLACK_API_URL": standin.api_url,
            "THINGSPACE_BASE_URL": url,
            "THINGSPACE_CLIENT_ID": "sandbox-client",
            "THINGSPACE_CLIENT_SECRET": "sandbox-secret",
            "THINGSPACE_USERNAME": "sandbox-user",
            "THINGSPACE_PASSWORD": "sandbox-pass",
            "THINGSPACE_ACCOUNT": "0000123456-00001",
            "TSBOT_PUBLIC_URL": "https://tsbot.example.com",
            "TSBOT_CALLBACK_USERNAME": "tsbot",
            "TSBOT_CALLBACK_PASSWORD": "a-long-callback-password",
            "TSBOT_DB": str(tmp_path / "tsbot.db"),
        }
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        yield {"sandbox": sandbox, "standin": standin, "url": url, "db": tmp_path / "tsbot.db"}


def test_register_is_idempotent_and_lists_what_is_registered(
    env: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run registers every consumed service; the second changes nothing."""
    assert main(["callbacks", "register"]) == 0
    first = capsys.readouterr().out
    assert all(f"{service}" in first for service in shapes.CONSUMED_SERVICES)
    assert "registered" in first and "https://tsbot.example.com/thingspace/callbacks" in first
    assert main(["callbacks", "register"]) == 0
    second = capsys.readouterr().out
    assert second.count("already registered") == len(shapes.CONSUMED_SERVICES)
    assert main(["callbacks", "list"]) == 0
    assert capsys.readouterr().out.count("https://tsbot.example.com/thingspace/callbacks") == len(
        shapes.CONSUMED_SERVICES
    )


def test_check_passes_on_a_complete_installation(
    env: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """With everything set and callbacks registered, every check passes (exit 0)."""
    assert main(["callbacks", "register"]) == 0
    capsys.readouterr()
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert (
        "✓ Slack: authenticated" in out and "✓ ThingSpace: logged in" in out and "All checks passed." in out
    )


def test_check_names_what_is_wrong_and_logs_in_once(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong UWS password, a bad Slack token and unregistered callbacks are each reported; exit 1."""
    monkeypatch.setenv("THINGSPACE_PASSWORD", "not-the-password")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "✗ Slack auth.test failed: invalid_auth" in out
    assert "✗ ThingSpace login or account lookup failed" in out
    sandbox = env["sandbox"]
    logins = sandbox.requests_received("/m2m/v1/session/login")  # type: ignore[attr-defined]
    assert len(logins) == 1  # one attempt, never a loop: five failures lock the account


def test_check_reports_missing_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing configured, each missing setting is named with what to set; with no public
    URL the results are polled, so no callback password is asked for, and check says so."""
    assert main(["check", "--skip-slack", "--skip-thingspace"]) == 1
    out = capsys.readouterr().out
    assert "✗ SLACK_BOT_TOKEN is empty" in out and "TSBOT_CALLBACK_PASSWORD" not in out
    assert "✓ results: polled (TSBOT_PUBLIC_URL is empty): no callback listener is needed" in out


def test_in_poll_mode_register_refuses_and_check_skips_the_listeners(
    env: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """[thingspace] results = "poll": `callbacks register` registers nothing (exit 2, saying why);
    `tsbot check` names the mode and does not ask for listeners."""
    config = tmp_path / "tsbot.toml"
    config.write_text('[thingspace]\nresults = "poll"\n[grants]\nadmin = ["U012ADMIN"]\n', encoding="utf-8")
    monkeypatch.setenv("TSBOT_CONFIG", str(config))
    assert main(["callbacks", "register"]) == 2
    assert "nothing was registered" in capsys.readouterr().err
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert (
        '✓ results: polled ([thingspace] results = "poll")' in out and "callbacks not registered" not in out
    )


def test_register_updates_a_changed_password(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a password rotation, register re-registers every service with the new password."""
    assert main(["callbacks", "register"]) == 0
    monkeypatch.setenv("TSBOT_CALLBACK_PASSWORD", "the-new-callback-password")
    capsys.readouterr()
    assert main(["callbacks", "register"]) == 0
    out = capsys.readouterr().out
    assert out.count("re-registered with the new username or password") == len(shapes.CONSUMED_SERVICES)


def _logins(env: dict[str, object]) -> int:
    return len(env["sandbox"].requests_received(LOGIN_PATH))  # type: ignore[attr-defined]


def test_check_after_a_refused_login_pauses_and_reopen_logins_tries_once(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `tsbot check` with the refused password sends no login and says why, since when and
    how to reopen; `--reopen-logins` clears the pause and tries exactly once; a new password logs in."""
    monkeypatch.setenv("THINGSPACE_PASSWORD", "not-the-password")
    assert main(["check", "--skip-slack"]) == 1
    first = capsys.readouterr().out
    assert "✗ ThingSpace login or account lookup failed" in first
    assert "THINGSPACE_USERNAME and THINGSPACE_PASSWORD" in first
    assert "logins are now paused for every process using" in first
    assert _logins(env) == 1

    assert main(["check", "--skip-slack"]) == 1
    second = capsys.readouterr().out
    assert "✗ ThingSpace logins are paused: ThingSpace refused these credentials once" in second
    assert "REQUEST_FAILED.Login.InvalidCredentials" in second
    assert "paused since " in second and " UTC (" in second and "tsbot check (pid " in second
    assert "no login was tried" in second
    assert "`tsbot check --reopen-logins`" in second
    assert "not-the-password" not in first + second
    assert _logins(env) == 1  # the check itself made no attempt

    assert main(["check", "--skip-slack", "--reopen-logins"]) == 1
    reopened = capsys.readouterr().out
    assert "! reopening ThingSpace logins, which were paused" in reopened
    assert "ThingSpace logins reopened for every process using" in reopened
    assert _logins(env) == 2  # exactly one try

    monkeypatch.setenv("THINGSPACE_PASSWORD", "sandbox-pass")
    assert main(["check", "--skip-slack"]) == 1  # callbacks are not registered yet; the login works
    fixed = capsys.readouterr().out
    assert "✓ ThingSpace: logged in" in fixed
    assert _logins(env) == 3
    assert env["sandbox"].summary()["userLocked"] is False  # type: ignore[attr-defined]


def test_check_names_a_pause_until_the_credentials_change(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the serving bot met two refusals with these credentials, `tsbot check` sends nothing and
    says the pause lasts until they change (or an operator reopens)."""
    pool = ConnectionPool(env["db"])  # type: ignore[arg-type]
    moment = [time.time() - 900]
    try:
        gate = SqliteLoginGate(pool.get, clock=lambda: moment[0], program="the bot")
        with client_for(str(env["url"]), password="not-the-password", login_gate=gate) as bot:
            for _ in range(2):
                with pytest.raises(LoginFailed):
                    bot.account_info()
                moment[0] += 301
    finally:
        pool.close()
    assert _logins(env) == 2
    monkeypatch.setenv("THINGSPACE_PASSWORD", "not-the-password")
    assert main(["check", "--skip-slack"]) == 1
    out = capsys.readouterr().out
    assert "✗ ThingSpace logins are paused: ThingSpace refused these credentials 2 times" in out
    assert "no process logs in again until they change or an operator reopens logins" in out
    assert "last refusal met by the bot (pid " in out
    assert "fix THINGSPACE_USERNAME / THINGSPACE_PASSWORD: logins reopen by themselves" in out
    assert _logins(env) == 2


def test_callbacks_register_sends_nothing_while_logins_are_paused(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tsbot callbacks register` shares the gate: after a refused login it makes no attempt."""
    monkeypatch.setenv("THINGSPACE_PASSWORD", "not-the-password")
    assert main(["callbacks", "register"]) == 1
    assert _logins(env) == 1
    capsys.readouterr()
    assert main(["callbacks", "register"]) == 1
    err = capsys.readouterr().err
    assert "tsbot callbacks: nothing was sent" in err and "paused" in err
    assert _logins(env) == 1


def test_check_stays_away_from_a_locked_user(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A locked user is reported as locked, with Verizon Support and --reopen-logins as the way out;
    the next check sends no login."""
    sandbox = env["sandbox"]
    with client_for(str(env["url"]), password="nope") as wrong:
        for _ in range(5):
            with pytest.raises(LoginFailed):
                wrong.account_info()
            wrong.auth.reset()  # someone insisting from elsewhere, five times
    assert sandbox.summary()["userLocked"] is True  # type: ignore[attr-defined]
    before = _logins(env)
    assert main(["check", "--skip-slack"]) == 1
    first = capsys.readouterr().out
    assert "locked at Verizon" in first and "Verizon Support" in first
    assert _logins(env) == before + 1
    assert main(["check", "--skip-slack"]) == 1
    second = capsys.readouterr().out
    assert "ThingSpace says the API user is locked" in second
    assert (
        "ask Verizon Support to unlock the ThingSpace API user, then run `tsbot check --reopen-logins`"
        in second
    )
    assert _logins(env) == before + 1


def test_register_with_a_non_ascii_password_over_an_existing_listener(
    env: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A callback password with non-ASCII characters is compared as bytes (it once raised
    TypeError when a listener already existed): the second run finds everything registered."""
    monkeypatch.setenv("TSBOT_CALLBACK_PASSWORD", "pässwörd-für-rückrufe-✓")
    assert main(["callbacks", "register"]) == 0
    capsys.readouterr()
    assert main(["callbacks", "register"]) == 0
    assert capsys.readouterr().out.count("already registered") == len(shapes.CONSUMED_SERVICES)


def _keep(db_path: Path, body: dict[str, object], reason: str = "it has no requestId") -> None:
    from bot.intake.route import unknown_item
    from storage import unknown_callbacks
    from storage.db import write
    from storage.schema import open_database

    db = open_database(db_path)
    try:
        with write(db):
            unknown_callbacks.insert_many(db, [unknown_item(body, reason)])
    finally:
        db.close()


def test_unknown_lists_kept_callbacks_and_check_warns(
    env: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """`tsbot callbacks unknown` prints each kept callback's service guess, time, request id and
    JSON (exit 0, credentials gone); `tsbot check` warns while any wait."""
    db_path = env["db"]
    assert isinstance(db_path, Path)
    assert main(["callbacks", "unknown"]) == 0
    assert "No unreadable callbacks are waiting." in capsys.readouterr().out
    _keep(
        db_path,
        {"username": "tsbot", "password": "a-long-callback-password", "requestId": "r-42",
         "deviceIds": "89148000000800139708", "status": "Success"},
        "deviceIds must be a list",
    )  # fmt: skip
    assert main(["callbacks", "unknown"]) == 0
    out = capsys.readouterr().out
    assert "#1" in out and "request r-42" in out and "service unknown" in out and " UTC" in out
    assert '"deviceIds": "89148000000800139708"' in out and "a-long-callback-password" not in out
    assert main(["callbacks", "unknown", "--show", "1"]) == 0
    assert "r-42" in capsys.readouterr().out
    assert main(["callbacks", "unknown", "--show", "9"]) == 1
    capsys.readouterr()
    assert main(["check", "--skip-slack", "--skip-thingspace"]) == 0
    assert "! 1 authenticated ThingSpace callback(s) could not be read" in capsys.readouterr().out


def test_reprocess_moves_what_is_readable_now_into_the_inbox(
    env: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    """`reprocess` puts a kept callback the current parser reads into the inbox and leaves one it
    still cannot read waiting; without IDs or --all it says what to give."""
    from storage import inbox, unknown_callbacks
    from storage.schema import open_database

    db_path = env["db"]
    assert isinstance(db_path, Path)
    readable = {"requestId": "r-1", "deviceIds": [{"id": "89148000000800139708", "kind": "iccid"}],
                "status": "Failed", "faultResponse": {"faultcode": "X.REQUEST_FAILED.Nope"}}  # fmt: skip
    _keep(db_path, readable, "an older version could not read it")
    _keep(db_path, {"requestId": "r-2"}, "nothing says what happened")
    assert main(["callbacks", "reprocess"]) == 2
    capsys.readouterr()
    assert main(["callbacks", "reprocess", "--all"]) == 0
    out = capsys.readouterr().out
    assert "#1: readable now (action-failed); inbox row 1" in out
    assert "#2: still not readable" in out
    db = open_database(db_path)
    try:
        row = inbox.get(db, 1)
        assert row is not None and (row.request_id, row.state, row.kind) == (
            "r-1",
            "received",
            "action-failed",
        )
        assert [k.id for k in unknown_callbacks.listing(db)] == [2]
    finally:
        db.close()
    assert main(["callbacks", "reprocess", "1"]) == 0
    assert "already reprocessed (inbox row 1)" in capsys.readouterr().out
