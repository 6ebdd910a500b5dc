"""``tsbot outbox dead|requeue`` on a real database file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.cli.main import main
from storage import outbox
from storage.schema import open_database


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "tsbot.db"
    db = open_database(path)
    db.conn.close()
    yield path


def _kill(db: Database, key: str, error: str) -> int:
    row = outbox.get(db, key)
    assert row is not None
    assert outbox.claim(db, row.id, lease=30) is not None
    outbox.mark_dead(db, row.id, error=error)
    return row.id


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["outbox", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_dead_lists_id_channel_method_error_age_and_a_masked_preview(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tsbot outbox dead` shows one line per dead letter, newest first, identifiers masked."""
    db = open_database(db_path)
    outbox.enqueue_post(db, key="req:1", channel="C0GONE", text="Suspended 89148000000800139708 until 15 Mar")
    outbox.enqueue_post(db, key="alert:2", channel="C0OPS", text="line\ndown", blocks=None)
    outbox.enqueue_post(db, key="fine", channel="C0OPS", text="sent later")
    first = _kill(db, "req:1", "channel_not_found")
    second = _kill(db, "alert:2", "gave up after 24 h: HTTP 503")
    db.conn.close()
    code, out, _ = _cli(capsys, "dead", "--db", str(db_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "2 dead letters:"
    assert lines[1].split() == ["ID", "AGE", "CHANNEL", "METHOD", "ERROR", "TEXT"]
    assert lines[2].split()[:5] == [str(second), "0", "s", "C0OPS", "chat.postMessage"]
    assert "gave up after 24 h: HTTP 503" in lines[2] and lines[2].endswith("line down")
    assert lines[3].split()[0] == str(first) and "channel_not_found" in lines[3]
    assert "Suspended …9708 until 15 Mar" in lines[3] and "89148000000800139708" not in out
    assert "tsbot outbox requeue" in out
    code, out, _ = _cli(capsys, "dead", "--limit", "1", "--db", str(db_path))
    assert out.splitlines()[0] == "2 dead letters; the newest 1 shown:" and len(out.splitlines()) == 5


def test_dead_with_nothing_dead_says_so(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty dead-letter list is a sentence, exit 0."""
    code, out, _ = _cli(capsys, "dead", "--db", str(db_path))
    assert code == 0 and out.startswith("No dead letters")


def test_requeue_by_id_and_all(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Requeue named rows (saying which could not be), then every remaining one with --all."""
    db = open_database(db_path)
    for key in ("a", "b", "c"):
        outbox.enqueue_post(db, key=key, channel=f"C0{key.upper()}", text=key)
    a, b = _kill(db, "a", "not_in_channel"), _kill(db, "b", "not_in_channel")
    c = outbox.get(db, "c")
    assert c is not None
    code, out, _ = _cli(capsys, "requeue", str(a), str(c.id), "999", "--db", str(db_path))
    assert code == 1
    assert out.splitlines() == [
        f"{a}: requeued (chat.postMessage to C0A)",
        f"{c.id}: not requeued: not dead (pending)",
        "999: no such outbox row",
        "1 of 3 requeued; a running bot sends them within seconds.",
    ]
    row = outbox.get(db, "a")
    assert row is not None and row.state == "pending" and row.requeued_at is not None
    code, out, _ = _cli(capsys, "requeue", "--all", "--db", str(db_path))
    assert code == 0 and out.startswith("Requeued 1 dead message;")
    row = outbox.get(db, "b")
    assert row is not None and row.state == "pending" and b == row.id
    db.conn.close()


@pytest.mark.parametrize(
    "argv",
    [["requeue"], ["requeue", "1", "--all"], ["requeue", "x"], ["dead", "--limit", "0"]],
)
def test_bad_arguments_exit_2(db_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """No ids and no --all, both, a non-number, a zero limit: exit 2 with a reason."""
    try:
        code, _, err = _cli(capsys, *argv, "--db", str(db_path))
    except SystemExit as exc:  # argparse's own refusals
        code, err = int(exc.code or 0), capsys.readouterr().err
    assert code == 2 and err.strip()


def test_no_database_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that is not a database is refused before anything is created."""
    code, _, err = _cli(capsys, "dead", "--db", str(tmp_path / "missing.db"))
    assert code == 2 and "no database" in err and not (tmp_path / "missing.db").exists()
