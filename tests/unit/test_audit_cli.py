"""``tsbot audit verify|export|retain`` on real database files, through the real CLI entry point."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.cli.audit import parse_when
from bot.cli.main import main
from bot.core.config import Settings
from bot.scheduler.tasks import audit_retention_task
from storage.audit.log import AuditEvent, AuditLog, Verb, archive_folder
from storage.schema import open_database
from tests.helpers.audit import ICCIDS, START, Attacker, build_log, event, independent_hash

ROWS = 24


@pytest.fixture
def dbfile(tmp_path: Path) -> Path:
    path = tmp_path / "tsbot.db"
    db, _log = build_log(path, ROWS)
    db.conn.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_intact_prints_the_row_count(dbfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 0 and prints the number of rows when the log is intact."""
    code, out, _err = run(capsys, "verify", "--db", str(dbfile))
    assert code == 0
    assert f"intact: {ROWS} rows (rows 1–{ROWS}), anchored at row {ROWS}" in out


def test_verify_tampered_exits_1_naming_the_row(dbfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 1 and names the first bad row and why."""
    with Attacker(dbfile) as a:
        a.sql("UPDATE audit_log SET outcome = 'denied' WHERE id = 7")
    code, out, _err = run(capsys, "verify", "--db", str(dbfile))
    assert code == 1
    assert "FAILED verification at row 7: row 7 was changed" in out


def test_verify_reads_tsbot_db(
    dbfile: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --db the database is TSBOT_DB."""
    monkeypatch.setenv("TSBOT_DB", str(dbfile))
    code, out, _err = run(capsys, "verify")
    assert code == 0 and f"{ROWS} rows" in out


def test_verify_with_head_elsewhere(dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--head names a head file kept somewhere else; a wrong one fails."""
    moved = tmp_path / "other-volume.head"
    Path(str(dbfile) + ".audit-head").rename(moved)
    assert run(capsys, "verify", "--db", str(dbfile))[0] == 1
    assert run(capsys, "verify", "--db", str(dbfile), "--head", str(moved))[0] == 0


def test_verify_backup_with_head_copied_first(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup whose head file predates the database copy verifies with --head-may-lag, and only with it."""
    head_copy = tmp_path / "backup.head"
    head_copy.write_bytes(Path(str(dbfile) + ".audit-head").read_bytes())
    db = open_database(dbfile)
    AuditLog(db).record_many([event(100), event(101)])
    db.conn.close()
    code, out, _err = run(capsys, "verify", "--db", str(dbfile), "--head", str(head_copy))
    assert code == 1 and f"at row {ROWS + 1}" in out
    code, out, _err = run(capsys, "verify", "--db", str(dbfile), "--head", str(head_copy), "--head-may-lag")
    assert code == 0
    assert f"anchored at row {ROWS}" in out and f"rows {ROWS + 1}–{ROWS + 2} come after" in out


def test_missing_database_is_an_error_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database path that does not exist is reported (exit 2) and no file is created."""
    missing = tmp_path / "nope.db"
    for action in (["verify"], ["export", "--format", "json"], ["retain", "--older-than", "90d"]):
        code, _out, err = run(capsys, *action, "--db", str(missing))
        assert code == 2
        assert f"no database at {missing}" in err
    assert list(tmp_path.iterdir()) == []


def test_export_csv_with_actor_and_device_filters(dbfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CSV export has a header and exactly the rows matching --actor and --device, oldest first."""
    code, out, err = run(
        capsys,
        "export",
        "--format",
        "csv",
        "--db",
        str(dbfile),
        "--actor",
        "U0ALICE",
        "--device",
        f"iccid:{ICCIDS[0]}",
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = [i + 1 for i in range(ROWS) if i % 3 == 0]
    assert [int(r["id"]) for r in rows] == expected
    assert {r["actor"] for r in rows} == {"U0ALICE"}
    assert rows[0]["targets"] == f"iccid:{ICCIDS[0]} mdn:5551234567"
    assert json.loads(rows[0]["detail"]) == {"n": 0, "nested": {"list": [1, 2.5, None, True]}}
    assert f"exported {len(expected)} audit rows" in err


def test_export_json_lines_to_a_file_rehash(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON export to --output writes one object per line whose hashes recompute from the file alone."""
    target = tmp_path / "out" / "audit.jsonl"
    target.parent.mkdir()
    code, out, _err = run(capsys, "export", "--format", "json", "--db", str(dbfile), "--output", str(target))
    assert code == 0 and out == ""
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == ROWS
    prev = "0" * 64
    for line in lines:
        row = json.loads(line)
        assert row["prev_hash"] == prev and row["hash"] == independent_hash(prev, row)
        prev = row["hash"]
    assert list(target.parent.iterdir()) == [target]


def test_export_time_window(dbfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--since is inclusive and --until exclusive; ISO times with offsets are understood."""
    since = (START + timedelta(minutes=5)).isoformat()
    until = (START + timedelta(minutes=8)).astimezone().isoformat()
    code, out, _err = run(
        capsys, "export", "--format", "json", "--db", str(dbfile), "--since", since, "--until", until
    )
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [6, 7, 8]


def test_export_until_a_date_includes_that_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bare date in --until covers the whole day; --since with a date starts at its midnight UTC."""
    db = open_database(tmp_path / "tsbot.db")
    log = AuditLog(db)
    for day, hour in ((1, 0), (1, 23), (2, 12), (3, 0)):
        log.record(AuditEvent(at=datetime(2026, 5, day, hour, tzinfo=UTC), actor="U1", verb=Verb.DIAG))
    db.conn.close()
    code, out, _err = run(
        capsys,
        "export",
        "--format",
        "json",
        "--db",
        str(tmp_path / "tsbot.db"),
        "--since",
        "2026-05-01",
        "--until",
        "2026-05-02",
    )
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [1, 2, 3]


def test_export_duration_since(dbfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--since 24h counts back from now: the fixture's rows are older, the new one is not."""
    db = open_database(dbfile)
    AuditLog(db).record(event(99, at=datetime.now(UTC)))
    db.conn.close()
    code, out, _err = run(capsys, "export", "--format", "json", "--db", str(dbfile), "--since", "24h")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [ROWS + 1]


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_export_bad_time_is_a_usage_error(
    dbfile: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """An unreadable --since/--until exits 2 saying what is accepted."""
    with pytest.raises(SystemExit) as stop:
        main(["audit", "export", "--format", "csv", "--db", str(dbfile), option, "last tuesday"])
    assert stop.value.code == 2
    assert "is not a date, a time or a duration" in capsys.readouterr().err


def test_export_empty_device_is_refused(dbfile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--device with nothing in it is refused instead of matching nothing silently."""
    code, out, err = run(capsys, "export", "--format", "csv", "--db", str(dbfile), "--device", " ")
    assert (code, out) == (2, "")
    assert "--device needs a device id" in err


def test_export_csv_defuses_formulas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reason that starts like a spreadsheet formula is exported with a leading quote."""
    db = open_database(tmp_path / "tsbot.db")
    AuditLog(db).record(AuditEvent(actor="U1", verb=Verb.SUSPEND, reason='=HYPERLINK("http://x")'))
    db.conn.close()
    code, out, _err = run(capsys, "export", "--format", "csv", "--db", str(tmp_path / "tsbot.db"))
    assert code == 0
    assert next(csv.DictReader(io.StringIO(out)))["reason"] == '\'=HYPERLINK("http://x")'


def test_export_of_a_database_without_audit_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database the audit migrations never ran on exports an empty log and verifies as empty."""
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").close()
    code, out, _err = run(capsys, "export", "--format", "csv", "--db", str(tmp_path / "other.db"))
    assert (code, out.strip()) == (
        0,
        "id,at,actor,channel,verb,targets,reason,outcome,request_id,detail,prev_hash,hash",
    )
    code, out, _err = run(capsys, "verify", "--db", str(tmp_path / "other.db"))
    assert code == 0 and "0 rows" in out


def test_retain_archives_and_verify_passes(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """retain moves old rows to a dated archive in audit-archive/ beside the database; verify still passes."""
    code, out, _err = run(
        capsys, "retain", "--older-than", (START + timedelta(minutes=10)).isoformat(), "--db", str(dbfile)
    )
    assert code == 0
    assert "archived 10 audit rows (ids 1–10)" in out
    assert not list(tmp_path.glob("audit-archive-*.jsonl"))
    archives = list((tmp_path / "audit-archive").glob("audit-archive-*.jsonl"))
    assert len(archives) == 1 and len(archives[0].read_text().splitlines()) == 10
    code, out, _err = run(capsys, "verify", "--db", str(dbfile))
    assert code == 0 and "rows 11–25" in out
    code, out, _err = run(capsys, "retain", "--older-than", "2026-01-01", "--db", str(dbfile))
    assert code == 0 and "nothing to archive" in out


def test_retain_uses_the_configured_archive_dir(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --archive the archive goes to [audit] archive_dir from TSBOT_CONFIG."""
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    config = tmp_path / "tsbot.toml"
    config.write_text(f'[audit]\narchive_dir = "{archive_dir}"\n')
    monkeypatch.setenv("TSBOT_CONFIG", str(config))
    monkeypatch.setenv("TSBOT_DB", str(dbfile))
    code, _out, _err = run(capsys, "retain", "--older-than", "1d")
    assert code == 0
    assert len(list(archive_dir.glob("audit-archive-*.jsonl"))) == 1


def test_retain_and_the_daily_job_archive_to_the_same_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no [audit] archive_dir, `tsbot audit retain` and the retention job both write to
    <db dir>/audit-archive, so an operator finds every archive in one place."""
    cli_db, job_db = tmp_path / "cli" / "tsbot.db", tmp_path / "job" / "tsbot.db"
    for path in (cli_db, job_db):
        path.parent.mkdir()
        db, _log = build_log(path, ROWS)
        db.conn.close()
    code, _out, _err = run(capsys, "retain", "--older-than", "1d", "--db", str(cli_db))
    assert code == 0
    db = open_database(job_db)
    try:
        deps = SimpleNamespace(
            settings=Settings(db_path=str(job_db), audit_retention=timedelta(days=1)), db=lambda: db
        )
        audit_retention_task(deps)  # type: ignore[arg-type]
    finally:
        db.conn.close()
    for path in (cli_db, job_db):
        archives = list((path.parent / "audit-archive").glob("audit-archive-*.jsonl"))
        assert len(archives) == 1 and len(archives[0].read_text().splitlines()) == ROWS, path
        assert not list(path.parent.glob("audit-archive-*.jsonl"))
    assert archive_folder(cli_db) == cli_db.parent.resolve() / "audit-archive"
    assert archive_folder(cli_db, str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"


def test_retain_refuses_tampered_rows(
    dbfile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """retain exits 1 and archives nothing when a row to archive was changed."""
    with Attacker(dbfile) as a:
        a.sql("UPDATE audit_log SET reason = 'x' WHERE id = 2")
    code, _out, err = run(
        capsys, "retain", "--older-than", "1d", "--db", str(dbfile), "--archive", str(tmp_path / "a.jsonl")
    )
    assert code == 1
    assert "retention refused" in err and "row 2 was changed" in err
    assert not (tmp_path / "a.jsonl").exists()


def test_python_dash_m_bot_audit_verify(dbfile: Path) -> None:
    """``python -m bot audit verify`` works as a real process, with exit codes for intact and tampered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSBOT_", "SLACK_", "THINGSPACE_"))}
    repo = Path(__file__).resolve().parents[2]
    ok = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "verify", "--db", str(dbfile)],
        capture_output=True,
        text=True,
        cwd=repo,
        env=env,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert f"{ROWS} rows" in ok.stdout
    Path(str(dbfile) + ".audit-head").unlink()
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "verify", "--db", str(dbfile)],
        capture_output=True,
        text=True,
        cwd=repo,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "head file" in bad.stdout and "missing" in bad.stdout
    assert "Traceback" not in bad.stderr


def test_parse_when_forms() -> None:
    """Dates, times (with Z, offsets or none = UTC) and durations back from now are understood."""
    now = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    assert parse_when("2026-05-01", now=now) == datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_when("2026-05-01", now=now, end_of_day=True) == datetime(2026, 5, 2, tzinfo=UTC)
    assert parse_when("2026-05-01T10:30Z", now=now) == datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    assert parse_when("2026-05-01 10:30+02:00", now=now) == datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    assert parse_when("2026-05-01T10:30", now=now) == datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    assert parse_when("24h", now=now) == now - timedelta(hours=24)
    assert parse_when(" 7d ", now=now) == now - timedelta(days=7)
    for bad in ("", "yesterday", "2026-13-01", "2026-05-01T25:00", "-5h"):
        with pytest.raises(ValueError, match="not a date, a time or a duration"):
            parse_when(bad, now=now)
