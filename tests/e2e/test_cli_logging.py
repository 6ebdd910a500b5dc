"""Every `tsbot` command logs like `tsbot serve`: redacted JSON lines on stderr, with the
environment's secrets registered, so `check`, `callbacks` and `audit` never print a secret."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from bot.cli.main import main
from bot.console.standin import SlackStandIn
from bot.core import logs
from tests.helpers.stacks import served_sandbox, served_standin

ROOT = Path(__file__).resolve().parents[2]
BAD_PASSWORD = "Wr0ng pass/word+4417"
SECRETS = {
    "SLACK_SIGNING_SECRET": "signing-secret-for-cli-logs",
    "THINGSPACE_CLIENT_SECRET": "sandbox-secret",
    "THINGSPACE_PASSWORD": BAD_PASSWORD,
    "TSBOT_CALLBACK_PASSWORD": "callback-password-for-cli-logs",
}


@pytest.fixture
def world() -> Iterator[tuple[str, SlackStandIn]]:
    with (
        served_sandbox(devices=5, seed=2) as (_sandbox, url),
        served_standin(bot_token="xoxb-cli-logging-token") as standin,
    ):
        yield url, standin


def _environment(thingspace_url: str, standin: SlackStandIn, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": standin.bot_token,
        "SLACK_API_URL": standin.api_url,
        "THINGSPACE_BASE_URL": thingspace_url,
        "THINGSPACE_CLIENT_ID": "sandbox-client",
        "THINGSPACE_USERNAME": "sandbox-user",
        "THINGSPACE_ACCOUNT": "0000123456-00001",
        "TSBOT_PUBLIC_URL": "https://tsbot.example.com",
        "TSBOT_CALLBACK_USERNAME": "tsbot-callbacks",
        **SECRETS,
        **extra,
    }


def _forms(secret: str) -> set[str]:
    """The ways a secret could show up in a log line."""
    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


def test_check_with_a_bad_password_prints_no_secret(world: tuple[str, SlackStandIn], tmp_path: Path) -> None:
    """`tsbot check` (a real process, DEBUG logs) with a wrong ThingSpace password: it says the login
    failed, its log lines are JSON, and neither the output nor the log holds any secret."""
    url, standin = world
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "THINGSPACE_", "TSBOT_"))},
        "PYTHONPATH": str(ROOT),
        **_environment(url, standin, TSBOT_LOG_LEVEL="DEBUG", TSBOT_DB=str(tmp_path / "bot.db")),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ThingSpace login or account lookup failed" in result.stdout
    log_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert log_lines, "a failed login leaves a log line"
    for line in log_lines:
        json.loads(line)  # every line on stderr is a JSON log line, not plain text or a traceback
    output = result.stdout + result.stderr
    basic = base64.b64encode(b"sandbox-client:sandbox-secret").decode()
    for secret in [*SECRETS.values(), standin.bot_token, basic]:
        for form in _forms(secret):
            assert form not in output, f"{form!r} is in the output of tsbot check"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logs._installed = None
        logs.clear_secrets()


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--skip-slack", "--skip-thingspace"],
        ["callbacks", "list"],
        ["audit", "verify", "--db", "{db}"],
    ],
    ids=["check", "callbacks", "audit"],
)
def test_each_command_sets_up_redacted_json_logging(
    argv: list[str],
    world: tuple[str, SlackStandIn],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After `tsbot check|callbacks|audit` set up, a warning that quotes a secret comes out as a JSON
    line with the secret replaced by ***."""
    url, standin = world
    for name in list(os.environ):
        if name.startswith(("SLACK_", "THINGSPACE_", "TSBOT_")):
            monkeypatch.delenv(name)
    env = _environment(url, standin, THINGSPACE_PASSWORD="sandbox-pass", TSBOT_DB=str(tmp_path / "bot.db"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    main([a.format(db=tmp_path / "bot.db") for a in argv])
    capsys.readouterr()
    logging.getLogger("tsbot.test").warning(
        "tried %s with %s", "sandbox-pass", env["TSBOT_CALLBACK_PASSWORD"]
    )
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["message"] == "tried *** with ***"


@pytest.mark.usefixtures("restore_logging")
def test_secrets_are_registered_even_when_the_configuration_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken TOML file (or log level) stops the command, but its secrets are still redacted."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits\n", encoding="utf-8")
    for name in list(os.environ):
        if name.startswith(("SLACK_", "THINGSPACE_", "TSBOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TSBOT_CONFIG", str(bad))
    monkeypatch.setenv("TSBOT_LOG_LEVEL", "chatty")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-unreadable-config-token")
    assert main(["check"]) == 2
    assert "TSBOT_LOG_LEVEL must be one of" in capsys.readouterr().err
    logging.getLogger("tsbot.test").warning("token xoxb-unreadable-config-token")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "token ***"
