"""Settings from the environment and the TOML file: clear errors, nothing half-applied."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.cli.serve import listen
from bot.core.config import ConfigError, Settings, load_config_file


def test_defaults_from_an_empty_environment() -> None:
    """With nothing set, the documented defaults apply and the serve secrets are reported missing."""
    settings = Settings.from_env({})
    assert settings.port == 3000 and settings.db_path == "./tsbot.db"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.missing_to_serve() == [
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "THINGSPACE_CLIENT_ID",
        "THINGSPACE_CLIENT_SECRET",
        "THINGSPACE_USERNAME",
        "THINGSPACE_PASSWORD",
        "THINGSPACE_ACCOUNT",
    ]


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
        ("[limits]\nrequest_size = 20000\n", "ThingSpace takes at most 10,000 lines per request"),
        ('[directory]\nfull_sync_every = "daily"\n', "not a duration"),
        ('[limits]\nconfirm_ttl = "soon"\n', "not a duration"),
        ("[nonsense]\nx = 1\n", "unknown table"),
        ("[alert]\nx = 1\n", r"unknown table \[alert\] \(did you mean \[alerts\]\?\)"),
        (
            "[limits]\naproval_size = 5\n",
            r"unknown setting limits.aproval_size \(did you mean approval_size\?\)",
        ),
        (
            '[alerts]\ndigest_tme = "23:00"\n',
            r"unknown setting alerts.digest_tme \(did you mean digest_time\?\)",
        ),
        ('[limits]\ntimezone = "UTC"\n', r"unknown setting limits.timezone \(it belongs under \[alerts\]\)"),
        ("[sms]\nfoo = 1\n", "unknown setting sms.foo"),
        ("approval_size = 5\n", r"approval_size must be inside its table: write it under \[limits\]"),
        ("limits = 5\n", r"limits must be a table"),
        ('[grants]\nadmins = ["U1"]\n', r"unknown role 'admins' \(did you mean admin\?\)"),
        ('[scheduler]\nlease_ttl = "1s"\n', "scheduler.lease_ttl must be at least 3 s"),
        ('[socket_mode]\nstale_after = "30s"\n', "socket_mode.stale_after must be at least 60 s"),
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


def test_every_key_of_a_known_table_is_checked_and_all_unknown_ones_are_named(tmp_path: Path) -> None:
    """Several typos are reported at once, each with its table; the good keys are not flagged."""
    path = tmp_path / "typos.toml"
    path.write_text(
        '[limits]\napproval_size = 5\naproval_size = 5\n[alerts]\ntimezone = "UTC"\nrecover_afer = "5m"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TSBOT_CONFIG": str(path)})
    message = str(caught.value)
    assert "unknown setting alerts.recover_afer (did you mean recover_after?)" in message
    assert "unknown setting limits.aproval_size (did you mean approval_size?)" in message
    assert "limits.approval_size" not in message and "alerts.timezone" not in message


def test_scheduler_and_socket_mode_settings(tmp_path: Path) -> None:
    """[scheduler] lease_ttl and [socket_mode] stale_after are read as durations."""
    path = tmp_path / "tsbot.toml"
    path.write_text('[scheduler]\nlease_ttl = "30s"\n[socket_mode]\nstale_after = "5m"\n', encoding="utf-8")
    settings = Settings.from_env({"TSBOT_CONFIG": str(path)})
    assert settings.scheduler_lease_ttl == timedelta(seconds=30)
    assert settings.socket_stale_after == timedelta(minutes=5)
    defaults = Settings.from_env({})
    assert defaults.scheduler_lease_ttl == timedelta(seconds=60)
    assert defaults.socket_stale_after == timedelta(minutes=10)


def test_thingspace_results_settings(tmp_path: Path) -> None:
    """[thingspace] reconcile_after and results; poll mode when results = "poll" or when
    TSBOT_PUBLIC_URL is empty, and then the first question comes after about 5 s."""
    path = tmp_path / "tsbot.toml"
    path.write_text('[thingspace]\nreconcile_after = "2m"\nresults = "poll"\n', encoding="utf-8")
    settings = Settings.from_env({"TSBOT_CONFIG": str(path), "TSBOT_PUBLIC_URL": "https://bot.example.com"})
    assert settings.reconcile_after == timedelta(minutes=2)
    assert settings.poll_results and settings.first_reconcile == timedelta(seconds=5)
    callbacks = Settings.from_env({"TSBOT_PUBLIC_URL": "https://bot.example.com"})
    assert callbacks.results == "callbacks" and not callbacks.poll_results
    assert callbacks.first_reconcile == timedelta(seconds=60)
    assert Settings.from_env({}).poll_results  # no public URL: nothing to call back
    path.write_text('[thingspace]\nresults = "push"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="results must be one of callbacks, poll"):
        Settings.from_env({"TSBOT_CONFIG": str(path)})
    path.write_text("[thingspace]\nreconcile_after = 0.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="reconcile_after must be at least 1 s"):
        Settings.from_env({"TSBOT_CONFIG": str(path)})


def test_a_bad_log_level_or_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    """TSBOT_LOG_LEVEL must be a level name; a config path that is a folder cannot be read."""
    with pytest.raises(ConfigError, match="TSBOT_LOG_LEVEL must be one of DEBUG, INFO"):
        Settings.from_env({"TSBOT_LOG_LEVEL": "loud"})
    assert Settings.from_env({"TSBOT_LOG_LEVEL": "debug"}).log_level == "debug"
    with pytest.raises(ConfigError, match="cannot be read"):
        Settings.from_env({"TSBOT_CONFIG": str(tmp_path)})


SLACK_ONLY = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "signing"}
THINGSPACE = {
    "THINGSPACE_CLIENT_ID": "client",
    "THINGSPACE_CLIENT_SECRET": "client-secret",
    "THINGSPACE_USERNAME": "user",
    "THINGSPACE_PASSWORD": "password",
    "THINGSPACE_ACCOUNT": "0000123456-00001",
}


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "THINGSPACE_", "TSBOT_")):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_serve_refuses_to_start_without_the_thingspace_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like the Slack secrets, every ThingSpace credential is required; each missing one is named."""
    _env(monkeypatch, SLACK_ONLY)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    for name in THINGSPACE:
        assert name in err
    assert "SLACK_" not in err and "Traceback" not in err
    _env(monkeypatch, {**SLACK_ONLY, **{k: v for k, v in THINGSPACE.items() if k != "THINGSPACE_ACCOUNT"}})
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start: THINGSPACE_ACCOUNT is empty" in err and "Traceback" not in err


def test_serve_and_check_refuse_an_unknown_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the file stops `tsbot serve` and `tsbot check` with the did-you-mean message."""
    path = tmp_path / "tsbot.toml"
    path.write_text("[limits]\naproval_size = 5\n", encoding="utf-8")
    _env(monkeypatch, {**SLACK_ONLY, **THINGSPACE, "TSBOT_CONFIG": str(path)})
    wanted = "unknown setting limits.aproval_size (did you mean approval_size?)"
    assert main(["serve"]) == 2
    assert wanted in capsys.readouterr().err
    assert main(["check", "--skip-slack", "--skip-thingspace"]) == 2
    assert wanted in capsys.readouterr().err


def test_serve_says_when_it_cannot_listen_or_open_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port in use or a database path that cannot be opened: one clear line, exit 1, no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _env(monkeypatch, {**SLACK_ONLY, **THINGSPACE, "TSBOT_DB": str(tmp_path / "bot.db")})
        assert main(["serve", "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    _env(monkeypatch, {**SLACK_ONLY, **THINGSPACE, "TSBOT_DB": str(tmp_path / "missing" / "dir" / "bot.db")})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert main(["serve", "--port", str(free)]) == 1
    err = capsys.readouterr().err
    assert "cannot open the database" in err and "TSBOT_DB" in err and "Traceback" not in err


def test_serve_listens_on_a_tcp_socket_asyncio_turns_nagle_off_for() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket was made
    with IPPROTO_TCP; with protocol 0 each reused keep-alive request waited ~40 ms (ThingSpace's
    callback bursts fell from ~2,400/s to ~340/s)."""

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        with socket.create_connection(sock.getsockname()[:2]):
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_approver_mention_is_a_user_group_id(tmp_path: Path) -> None:
    """[limits] approver_mention takes a user group ID (S…); anything else is refused with how to find one."""
    good = tmp_path / "good.toml"
    good.write_text('[limits]\napprover_mention = "S0ONCALL"\n', encoding="utf-8")
    assert load_config_file(str(good))["approver_mention"] == "S0ONCALL"
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\napprover_mention = "@oncall"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="user group ID like S0ONCALL"):
        load_config_file(str(bad))
