"""Tamper tests on databases the real bot produced (LocalStack: sandbox, Slack stand-in, the bot).

The synthetic tamper tests (test_audit_verify.py) build their logs outside any transaction, so the
head file is always confirmed there. The bot records commands inside transactions and leaves the
head file pending until its confirmer (or shutdown) confirms it; these tests check that deleting
the newest rows is caught in every state the bot leaves behind: after a clean stop, after a crash
right after a command, and while it keeps running.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.local_stack import LocalStack
from storage.audit import log as audit
from storage.audit.log import AnchorConfirmer, AuditLog, Verb
from storage.schema import open_database
from tests.helpers.audit import Attacker

ADMIN, VIEWER = "U012ADMIN", "U0NOC1"
ICCID = "iccid:89148000000800139708"


@pytest.fixture(autouse=True)
def _no_stray_confirmer() -> Iterator[None]:
    """Every test stops the confirmers it started (Runtime.stop stops the bot's)."""
    yield
    assert not audit._CONFIRMERS, "a confirmer was left running"


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def _head(db_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(Path(str(db_path) + ".audit-head").read_text())
    return data


def _confirmed(db_path: Path) -> bool:
    head = _head(db_path)
    return head["id"] == head["base_id"]


def _work(stack: LocalStack) -> None:
    """A short session: help, find, status, a denied suspend, a confirmed suspend and its callback."""
    stack.command("help")
    stack.command("find 9708")
    stack.command(f"status {ICCID}", user=VIEWER, channel="C0NOC")
    stack.command(f"suspend {ICCID}", user=VIEWER, channel="C0NOC")
    stack.command(f"suspend {ICCID} --reason stolen")
    stack.click("Confirm")
    assert stack.settle(30)


def _snapshot(live: Path, into: Path) -> Path:
    """What a kill -9 at this moment leaves on disk: the committed database and the head file."""
    into.mkdir(parents=True, exist_ok=True)
    copy = into / live.name
    shutil.copyfile(Path(str(live) + ".audit-head"), Path(str(copy) + ".audit-head"))
    source, target = sqlite3.connect(live), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return copy


def _verify(capsys: pytest.CaptureFixture[str], db_path: Path, *extra: str) -> tuple[int, str]:
    try:
        code = main(["audit", "verify", "--db", str(db_path), *extra])
    except SystemExit as exc:  # argparse refusing an argument
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


def _newest_rows(db_path: Path, count: int) -> list[int]:
    conn = sqlite3.connect(db_path)
    try:
        found = conn.execute("SELECT id FROM audit_log ORDER BY id DESC LIMIT ?", (count,)).fetchall()
    finally:
        conn.close()
    return sorted(r[0] for r in found)


def _delete_rows(db_path: Path, ids: list[int]) -> None:
    with Attacker(db_path) as a:
        for row_id in ids:
            a.sql("DELETE FROM audit_target WHERE row_id = ?", row_id)
            a.sql("DELETE FROM audit_log WHERE id = ?", row_id)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database and head file a cleanly stopped bot leaves behind (never modified: copy it)."""
    workdir = tmp_path_factory.mktemp("real-bot")
    stack = LocalStack(workdir, devices=60, scheduler=False)
    stack.start()
    try:
        _work(stack)
    finally:
        stack.stop()
    return stack.db_path


@pytest.fixture
def copy(stopped: Path, tmp_path: Path) -> Path:
    return _snapshot(stopped, tmp_path)


def test_a_clean_run_verifies_after_stop(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a clean stop the head file is confirmed and verify exits 0 with nothing to note."""
    assert _confirmed(copy)
    code, out = _verify(capsys, copy)
    assert code == 0, out
    assert "intact:" in out and "note:" not in out
    db = open_database(copy, migrate=False)
    try:
        verbs = [row.verb for row in AuditLog(db).iter_rows()]
    finally:
        db.conn.close()
    assert verbs[0] == Verb.CONFIG_LOAD and {"help", "find", "status", "suspend", "confirm"} <= set(verbs)


@pytest.mark.parametrize("count", [1, 3], ids=["newest-row", "newest-three-rows"])
def test_deleting_the_newest_rows_after_a_clean_stop_is_caught(
    copy: Path, count: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting the newest row (or rows) of a stopped bot's log: verify exits 1 naming the first missing row."""
    ids = _newest_rows(copy, count)
    _delete_rows(copy, ids)
    code, out = _verify(capsys, copy)
    assert code == 1, out
    assert f"FAILED verification at row {ids[0]}" in out
    assert f"names row {ids[-1]} but the log ends at row {ids[0] - 1}" in out


def test_deleting_the_newest_transaction_after_a_crash_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash right after a command leaves the head file pending. Intact, that verifies; with the
    command's rows deleted, verify exits 1 naming the announced row and what to do, accepts it only
    with --accept-uncommitted naming that row, and the bot started on it records an audit.gap row
    that verify notes and history shows."""
    stack = LocalStack(tmp_path / "live", devices=60, scheduler=False)
    stack.start()
    try:
        _work(stack)
        assert stack.runtime is not None and stack.runtime.audit_confirmer is not None
        _wait(lambda: _confirmed(stack.db_path))
        stack.runtime.audit_confirmer.stop()  # the crash comes before the confirmer's pass
        stack.command("help")
        head = _head(stack.db_path)
        assert head["id"] != head["base_id"], "a command leaves the head file pending"
        crashed = _snapshot(stack.db_path, tmp_path / "crashed")
    finally:
        stack.stop()

    code, out = _verify(capsys, crashed)
    assert code == 0, out  # the command committed: its row is the anchored row

    announced = int(str(head["id"]))
    assert _newest_rows(crashed, 1) == [announced]
    _delete_rows(crashed, [announced])
    code, out = _verify(capsys, crashed)
    assert code == 1, out
    assert f"FAILED verification at row {announced}" in out
    assert f"head file announces row {announced}" in out
    assert "crashed" in out and "deleted" in out
    assert f"--accept-uncommitted {announced}" in out
    code, out = _verify(capsys, crashed, "--accept-uncommitted", str(announced + 1))
    assert code == 1 and "names another row" in out
    code, out = _verify(capsys, crashed, "--accept-uncommitted", str(announced))
    assert code == 0 and "accepted as a crash" in out
    code, out = _verify(capsys, crashed, "--accept-uncommitted", "row")
    assert code == 2 and "not a row number" in out

    with LocalStack(tmp_path / "restart", devices=60, scheduler=False, db_path=crashed) as restarted:
        db = open_database(crashed, migrate=False)
        try:
            gap = AuditLog(db).get(announced)
        finally:
            db.conn.close()
        assert gap is not None and gap.verb == Verb.AUDIT_GAP and gap.detail["announced_id"] == announced
        shown = json.dumps(restarted.command("history --since 1h").json())
        assert "*audit.gap*" in shown and f"announced row {announced}" in shown
    code, out = _verify(capsys, crashed)
    assert code == 0, out
    assert f"1 audit gap: row {announced} (row {announced} announced, never found)" in out


def test_a_deletion_under_a_running_bot_is_recorded_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows deleted while the bot runs, before their head file was confirmed: the bot's next append
    records an audit.gap row (announced row and hash) before its own row, so the deletion stays
    on record; the confirmer then confirms the head file promptly."""
    with LocalStack(tmp_path, devices=60, scheduler=False) as stack:
        assert stack.runtime is not None and stack.runtime.audit_confirmer is not None
        stack.command("help")
        _wait(lambda: _confirmed(stack.db_path), timeout=5)  # confirmed promptly, off the ack path
        stack.runtime.audit_confirmer.stop()
        stack.command("find 9708")
        head = _head(stack.db_path)
        announced = int(str(head["id"]))
        _delete_rows(stack.db_path, [announced])
        stack.command("help")  # the next append finds the head file announcing a missing row
        stopped = stack.runtime.audit_confirmer
        stack.runtime.audit_confirmer = AnchorConfirmer(stack.db_path).start()
        parts = stack.runtime.parts
        parts[parts.index(stopped)] = stack.runtime.audit_confirmer  # stopped with the runtime
        _wait(lambda: _confirmed(stack.db_path), timeout=5)
        db = stack.runtime.pool.get()
        gap = AuditLog(db).get(announced)
        assert gap is not None and gap.verb == Verb.AUDIT_GAP
        assert (gap.detail["announced_id"], gap.detail["announced_hash"]) == (announced, head["hash"])
        assert gap.detail["log_ended_at_id"] == announced - 1
        after = AuditLog(db).get(announced + 1)
        assert after is not None and after.verb == "help"
    code, out = _verify(capsys, tmp_path / "tsbot.db")
    assert code == 0, out
    assert f"1 audit gap: row {announced}" in out


def test_the_confirmer_confirms_after_commands_and_stops_cleanly(tmp_path: Path) -> None:
    """A burst of commands is confirmed within moments by few confirmer passes; stop ends its thread."""
    with LocalStack(tmp_path, devices=60, scheduler=False) as stack:
        assert stack.runtime is not None and stack.runtime.audit_confirmer is not None
        confirmer = stack.runtime.audit_confirmer
        _wait(lambda: confirmer.runs >= 1, timeout=5)
        runs = confirmer.runs
        for _ in range(10):
            stack.command("help")
        _wait(lambda: _confirmed(stack.db_path), timeout=5)
        assert confirmer.runs - runs <= 10
        assert confirmer.alive()
    assert not confirmer.alive()
    assert _confirmed(tmp_path / "tsbot.db")
