"""Settings from the environment and the TOML file: clear errors, nothing half-applied."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, Settings


def test_defaults_from_an_empty_environment() -> None:
    """With nothing set, the documented defaults apply and the serve secrets are reported missing."""
    settings = Settings.from_env({})
    assert settings.port == 3000 and settings.db_path == "./tsbot.db"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.missing_to_serve() == ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]


def test_toml_file_sets_grants_and_limits(tmp_path: Path) -> None:
    """The TOML file grants roles by user, group and channel and sets limits and durations."""
    path = tmp_path / "tsbot.toml"
    path.write_text(
        '[grants]\nadmin = ["U012ADMIN"]\noperator = ["S0ONCALL"]\nviewer = ["C0NOC"]\n'
        '[limits]\napproval_size = 10\nconfirm_ttl = "2m"\n[channels]\nops = "C0OPS"\n',
        encoding="utf-8",
    )
    settings = Settings.from_env({"TSBOT_CONFIG": str(path)})
    assert settings.grants.admin == frozenset({"U012ADMIN"})
    assert settings.grants.mentions_groups()
    assert settings.approval_size == 10 and settings.confirm_ttl == timedelta(minutes=2)
    assert settings.ops_channel == "C0OPS"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[grants]\nroot = ["U1"]\n', "unknown role"),
        ('[grants]\nadmin = ["alice"]\n', "not a Slack ID"),
        ('[grants]\nadmin = "U1"\n', "list of Slack IDs"),
        ("[limits]\napproval_size = 0\n", "positive whole number"),
        ('[limits]\nconfirm_ttl = "soon"\n', "not a duration"),
        ("[nonsense]\nx = 1\n", "unknown table"),
        ("[grants\n", "not valid TOML"),
    ],
)
def test_bad_configuration_says_what_to_fix(tmp_path: Path, toml: str, message: str) -> None:
    """Each mistake in the file is a ConfigError naming the problem."""
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"TSBOT_CONFIG": str(path)})


def test_missing_config_file_and_bad_port() -> None:
    """A config path that does not exist, or a non-numeric port, is a clear error."""
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.from_env({"TSBOT_CONFIG": "/nonexistent/tsbot.toml"})
    with pytest.raises(ConfigError, match="TSBOT_PORT"):
        Settings.from_env({"TSBOT_PORT": "eighty"})


def test_serve_refuses_to_start_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """`tsbot serve` with empty secrets exits 2 and names what is missing."""
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN" in err and "SLACK_SIGNING_SECRET" in err


def test_serve_socket_mode_needs_the_app_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--socket-mode also needs SLACK_APP_TOKEN."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    assert main(["serve", "--socket-mode"]) == 2
    assert "SLACK_APP_TOKEN" in capsys.readouterr().err
