"""Findings of the adversarial review (issue 14), each pinned by a test that failed before its fix:
no input breaks the audit log, the database files or a channel."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.cli.audit import parse_when
from bot.cli.main import main
from bot.core.config import ConfigError, Settings
from bot.core.durations import parse_duration
from bot.render.blocks import escape
from bot.slack.request_shape import body_problem
from commands.grammar import UsageError, parse
from commands.registry import VERBS
from storage.audit.log import AuditEvent, AuditLog, verify
from storage.schema import open_database
from tests.helpers.audit import build_log


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- 1. a NUL (or any invisible character) in a target -------------------------------------------


@pytest.mark.parametrize("hidden", ["\x00", "\x1b", "\x9b", "\u200b", "\u202e", "\u2066", "\ufeff"])
def test_a_target_with_an_invisible_character_is_a_usage_error(hidden: str) -> None:
    """`/ts suspend mdn:55512<NUL>34567` names the character instead of becoming a target."""
    with pytest.raises(UsageError, match=f"U\\+{ord(hidden):04X}"):
        parse(f"suspend mdn:55512{hidden}34567 --reason x", VERBS)
    with pytest.raises(UsageError, match="invisible"):
        parse(f"status group:plant{hidden}7", VERBS)


def test_a_nul_in_an_audited_target_cannot_break_verification(tmp_path: Path) -> None:
    """Whatever a caller passes, a target with a control character is stored so that the device
    index still matches the row: `verify` stays green (it reported "the device index lost a
    target" for ever after, since the log is append-only)."""
    db = open_database(tmp_path / "tsbot.db")
    log = AuditLog(db)
    log.record(AuditEvent(actor="U0EVE", verb="suspend", outcome="invalid", targets=["mdn:55512\x0034567"]))
    result = verify(db)
    assert result.ok, result.reason
    [row] = log.query(limit=5)
    assert list(row.targets) == ["mdn:55512\ufffd34567"]


# -- 2. escape: the one way outside text enters mrkdwn ---------------------------------------------


def test_escape_neutralises_mentions_links_and_bidi_overrides() -> None:
    """A label like `<!channel> <https://evil.example|open runbook>` stays text, and U+202E can no
    longer reverse what readers see."""
    shown = escape("<!channel> <https://evil.example|open runbook> \u202etxt.exe\u202c a\tb\nc")
    assert "<" not in shown and ">" not in shown
    assert "\u202e" not in shown and "\u202c" not in shown
    assert shown.endswith("a\tb\nc")


# -- 3. audit export -o never replaces what it must not --------------------------------------------


@pytest.fixture
def dbfile(tmp_path: Path) -> Path:
    path = tmp_path / "tsbot.db"
    db, _log = build_log(path, 6)
    db.conn.close()
    return path


def _export(capsys: pytest.CaptureFixture[str], db: Path, output: str | Path) -> tuple[int, str]:
    code = main(["audit", "export", "--format", "csv", "--db", str(db), "-o", str(output)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".audit-head"])
def test_export_refuses_the_database_and_its_own_files(
    dbfile: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o tsbot.db` used to overwrite the live database with CSV; `-o tsbot.db.audit-head` broke
    verification. Both, and the WAL/SHM files, are refused with one line, also through a symlink."""
    own = Path(f"{dbfile}{suffix}")
    own.touch(exist_ok=True)
    before = own.read_bytes()
    code, err = _export(capsys, dbfile, own)
    assert code == 2 and "own database or audit head file" in err and "Traceback" not in err
    link = dbfile.parent / "innocent.csv"
    link.symlink_to(own)
    code, err = _export(capsys, dbfile, link)
    assert code == 2 and "own database" in err
    if suffix in ("", ".audit-head"):  # SQLite removes -wal and -shm when the last connection closes
        assert own.read_bytes() == before
    assert verify(open_database(dbfile, migrate=False)).ok


def test_export_refuses_a_folder_and_special_files(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o DIR` was a traceback leaving DIR.partial; a FIFO was replaced by a regular file."""
    folder = tmp_path / "exports"
    folder.mkdir()
    code, err = _export(capsys, dbfile, folder)
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    assert list(tmp_path.glob("*partial*")) == [] and list(folder.iterdir()) == []
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, err = _export(capsys, dbfile, fifo)
    assert code == 2 and "not a regular file" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_export_never_follows_a_planted_partial_file(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], umask_022: None
) -> None:
    """A `FILE.partial` symlink planted next to the target is neither followed nor removed; the
    export is written 0600 even under umask 022, and no partial file is left behind."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    planted = tmp_path / "out.csv.partial"
    planted.symlink_to(victim)
    out = tmp_path / "out.csv"
    code, err = _export(capsys, dbfile, out)
    assert code == 0, err
    assert victim.read_text() == "keep me" and planted.is_symlink()
    assert out.read_text().startswith("id,") and _mode(out) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == ["out.csv.partial"]


# -- 5. deeply nested JSON -------------------------------------------------------------------------


def test_deeply_nested_bodies_are_refused_not_recursed() -> None:
    """A signed body nested 100,000 deep raised RecursionError (HTTP 500); now it is a 400 reason."""
    deep = "[" * 100_000 + "]" * 100_000
    assert "nested" in (body_problem('{"type":"x","a":' + deep + "}", "application/json") or "")
    form = "payload=" + quote('{"type":"block_actions","a":' + deep + "}")
    assert "nested" in (body_problem(form, "application/x-www-form-urlencoded") or "")
    fine = {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "a"}], "x": [[[[1]]]]}
    assert body_problem("payload=" + quote(json.dumps(fine)), "application/x-www-form-urlencoded") is None


# -- 7. durations: positive and bounded ------------------------------------------------------------


@pytest.mark.parametrize("text", ["0s", "0", "0h0m"])
def test_a_zero_duration_must_be_positive(text: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999d", "99999999999999999999d", "3651d", "9" * 400])
def test_a_huge_duration_is_refused_not_overflowed(text: str) -> None:
    """`--since 99999999d` and `--alert-after 99999999999999999999d` were OverflowErrors."""
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


def test_audit_export_since_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_when("99999999d")
    with pytest.raises(ValueError, match="out of range"):
        parse_when("9999-12-31", end_of_day=True)


def test_config_durations_are_bounded_too(tmp_path: Path) -> None:
    config = tmp_path / "tsbot.toml"
    config.write_text('[alerts]\nalert_after = 1e300\n[audit]\nretention = "0"\n')
    with pytest.raises(ConfigError, match="alert_after"):
        Settings.from_env({"TSBOT_CONFIG": str(config)})
    config.write_text('[audit]\nretention = "0"\n[alerts]\nrealert_after = "0s"\n')
    with pytest.raises(ConfigError, match="must be positive"):
        Settings.from_env({"TSBOT_CONFIG": str(config)})


# -- 9. files are private whatever the umask -------------------------------------------------------


def test_database_wal_shm_and_head_file_are_created_0600(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "tsbot.db"
    db, _log = build_log(path, 3)
    try:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.audit-head")):
            assert name.exists() and _mode(name) == 0o600, name
    finally:
        db.conn.close()


# -- 10. tsbot check with settings missing ---------------------------------------------------------


def test_check_with_settings_missing_calls_nobody_and_creates_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tsbot check` called Slack's auth.test with an empty token and created ./tsbot.db even when
    it failed on missing settings. Slack and ThingSpace point at a closed port: any call would be
    reported as unreachable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")
    monkeypatch.setenv("THINGSPACE_BASE_URL", "http://127.0.0.1:9")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "auth.test not tried" in out and "ThingSpace login not tried" in out
    assert "could not be reached" not in out and "failed" not in out.split("check(s) failed")[0]
    assert list(tmp_path.iterdir()) == []


def test_a_database_others_can_read_is_named_in_a_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Files made before this release (0644 under umask 022) are left alone but named at start."""
    from bot.app import warn_if_readable

    path = tmp_path / "tsbot.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    Path(f"{path}.audit-head").write_text("{}")
    os.chmod(f"{path}.audit-head", 0o600)
    with caplog.at_level("WARNING"):
        warn_if_readable(str(path))
    assert [r.getMessage().split(" is readable")[0] for r in caplog.records] == [str(path)]
    assert "chmod 600" in caplog.records[0].getMessage()
