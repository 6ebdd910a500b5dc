"""`tsbot check` and `tsbot callbacks register|list` against the sandbox and the Slack stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.cli import main
from bot.console.standin import SlackStandIn
from bot.sandbox import create_sandbox
from bot.serving import ServerThread
from bot.thingspace import shapes


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    sandbox = create_sandbox(devices=20)
    server = ServerThread(sandbox.app).start()
    standin = SlackStandIn().start()
    values = {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_SIGNING_SECRET": "a-signing-secret",
        "SLACK_API_URL": standin.api_url,
        "THINGSPACE_BASE_URL": server.url,
        "THINGSPACE_CLIENT_ID": "sandbox-client",
        "THINGSPACE_CLIENT_SECRET": "sandbox-secret",
        "THINGSPACE_USERNAME": "sandbox-user",
        "THINGSPACE_PASSWORD": "sandbox-pass",
        "THINGSPACE_ACCOUNT": "0000123456-00001",
        "TSBOT_PUBLIC_URL": "https://tsbot.example.com",
        "TSBOT_CALLBACK_USERNAME": "tsbot",
        "TSBOT_CALLBACK_PASSWORD": "a-long-callback-password",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    try:
        yield {"sandbox": sandbox, "standin": standin}
    finally:
        standin.stop()
        server.stop()
        sandbox.close()


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
    """With nothing configured, each missing setting is named with what to set."""
    assert main(["check", "--skip-slack", "--skip-thingspace"]) == 1
    out = capsys.readouterr().out
    assert "✗ SLACK_BOT_TOKEN is empty" in out and "✗ TSBOT_CALLBACK_PASSWORD is empty" in out


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
