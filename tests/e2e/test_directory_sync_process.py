"""The directory sync runs in a process of its own (``bot.scheduler.sync_process``): progress and
log lines come back to the bot, stopping the bot stops it, a child that dies is reported and the
next run works, a child never outlives the bot, and two syncs never run at once.

Real parts only: the sandbox on loopback (its device list slowed down where a test needs a sync
that is still running), the bot's Runtime, real child processes and signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.core.directory_sync import SyncProgress
from bot.local_stack import LocalStack
from bot.scheduler.sync_process import DirectorySync, SyncStopped
from bot.scheduler.tasks import sync_directory_task
from storage import directory
from tests.helpers.stacks import served_sandbox

LIST = "/m2m/v1/devices/actions/list"
DEVICES = 4500  # three pages of the device list
REFUSAL = {"errorCode": "REQUEST_FAILED.UnexpectedError", "errorMessage": "nope"}


def _alive(pid: int) -> bool:
    """Whether *pid* is a running process (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(name="slow_stack")
def slow_stack_fixture(tmp_path: Path) -> Iterator[LocalStack]:
    """A stack whose start-up sync is still running: each page of the device list takes 1 s."""
    stack = LocalStack(tmp_path, devices=DEVICES, scheduler=False, sync_wait=0.0)
    stack.sandbox.inject_fault(LIST, count=1000, latency=1.0)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_the_start_up_sync_runs_in_a_child_and_reports_back(
    slow_stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    """The start-up sync's process is not the bot's; its argument list holds no secret; its
    progress reaches /metrics and its log lines are the bot's, marked with its pid; it fills the
    directory and sets ``directory_synced``."""
    caplog.set_level(logging.INFO)
    runtime = slow_stack.runtime
    assert runtime is not None
    _wait_for(lambda: runtime.directory_sync.pid is not None, 10, "the sync process")
    pid = runtime.directory_sync.pid
    assert pid is not None and pid != os.getpid()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"sync_process" in argv
    for secret in (b"sandbox-pass", b"sandbox-secret", runtime.settings.slack_bot_token.encode()):
        assert secret not in argv
    _wait_for(lambda: runtime.metrics.value("directory_sync_lines") > 0, 20, "progress in /metrics")
    assert runtime.metrics.value("directory_sync_running") == 1
    assert not runtime.directory_synced.is_set()

    assert runtime.directory_synced.wait(30)

    assert directory.count(runtime.pool.get()) == DEVICES
    assert runtime.metrics.value("directory_sync_lines") == DEVICES
    assert runtime.metrics.value("directory_sync_running") == 0
    assert runtime.metrics.value("directory_synced_timestamp_seconds", kind="complete") > 0
    [done] = [r for r in caplog.records if r.getMessage().startswith("directory synced (complete)")]
    assert done.name == "bot.core.directory_sync" and done.process == pid
    assert f"{DEVICES} lines" in done.getMessage()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    _wait_for(lambda: not _alive(pid), 5, "the sync process to exit")
    assert runtime.directory_sync.pid is None


def test_stopping_the_bot_stops_the_sync_process_at_once(
    slow_stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runtime = slow_stack.runtime
    assert runtime is not None
    _wait_for(lambda: runtime.directory_sync.pid is not None, 10, "the sync process")
    pid = runtime.directory_sync.pid
    assert pid is not None

    began = time.monotonic()
    slow_stack.stop_bot()
    took = time.monotonic() - began

    assert took < 5, f"stopping took {took:.1f} s"
    assert not _alive(pid)
    assert runtime.directory_synced.is_set()
    assert "the start-up directory sync stopped with the bot; the next start syncs again" in caplog.messages
    began = time.monotonic()
    with pytest.raises(SyncStopped):  # a stopped bot starts no other sync
        runtime.directory_sync.run(complete=True)
    assert time.monotonic() - began < 1


def test_a_killed_sync_process_is_reported_once_and_the_next_run_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalStack(tmp_path, devices=DEVICES, sync_directory=False, scheduler=False) as stack:
        runtime = stack.runtime
        assert runtime is not None
        stack.sandbox.inject_fault(LIST, count=2, latency=2.0)
        caplog.set_level(logging.INFO)
        outcome: list[BaseException | int | None] = []
        task = threading.Thread(
            target=_capture(
                outcome, lambda: sync_directory_task(runtime.deps, run=runtime.directory_sync.run)
            )
        )
        task.start()
        _wait_for(lambda: runtime.directory_sync.pid is not None, 10, "the sync process")
        pid = runtime.directory_sync.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        task.join(10)

        assert outcome == [None]  # the scheduled task logs the failure; the scheduler sees no error
        [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert failed.getMessage() == (
            "directory sync failed; find and group targets use what is stored until the next one "
            "(the sync process was killed by SIGKILL)"
        )
        assert not failed.exc_text  # killed: there is no traceback to show
        assert runtime.directory_sync.pid is None

        assert runtime.directory_sync.run(complete=True) == DEVICES  # the next run works
        assert directory.count(runtime.pool.get()) == DEVICES
        assert runtime.metrics.value("directory_sync_running") == 0


def test_a_failing_sync_is_logged_once_with_the_child_s_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """ThingSpace refusing the device list: one ERROR line names the error and carries the
    child's traceback; the child itself writes nothing to stderr."""
    with LocalStack(tmp_path, devices=30, sync_directory=False, scheduler=False) as stack:
        runtime = stack.runtime
        assert runtime is not None
        stack.sandbox.inject_fault(LIST, count=50, status=400, body=REFUSAL)
        caplog.set_level(logging.INFO)
        capfd.readouterr()

        sync_directory_task(runtime.deps, run=runtime.directory_sync.run)

        [failed] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert failed.getMessage().startswith(
            "directory sync failed; find and group targets use what is stored until the next one ("
        )
        assert "nope" in failed.getMessage()
        assert failed.exc_text and "Traceback" in failed.exc_text
        assert "Traceback" not in capfd.readouterr().err
        assert directory.count(runtime.pool.get()) == 0


def _capture(into: list[BaseException | int | None], fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            into.append(exc)
        else:
            into.append(result if isinstance(result, int) else None)

    return run


def test_two_syncs_never_run_at_once(tmp_path: Path) -> None:
    with LocalStack(tmp_path, devices=DEVICES, sync_directory=False, scheduler=False) as stack:
        runtime = stack.runtime
        assert runtime is not None
        stack.sandbox.inject_fault(LIST, count=1, latency=1.5)
        first: list[BaseException | int | None] = []
        task = threading.Thread(target=_capture(first, lambda: runtime.directory_sync.run(complete=True)))
        task.start()
        _wait_for(lambda: runtime.directory_sync.pid is not None, 10, "the sync process")

        assert runtime.directory_sync.run(complete=False) is None  # refused at once, not queued

        task.join(30)
        assert first == [DEVICES]


PARENT = textwrap.dedent(
    """
    import sys, time
    from bot.core.config import Settings
    from bot.scheduler.sync_process import DirectorySync
    from bot.thingspace.client import ThingSpaceClient
    from storage.pool import ConnectionPool

    url, db = sys.argv[1], sys.argv[2]
    settings = Settings(
        thingspace_base_url=url, thingspace_client_id="sandbox-client",
        thingspace_client_secret="sandbox-secret", thingspace_username="sandbox-user",
        thingspace_password="sandbox-pass", thingspace_account="0000123456-00001", db_path=db,
    )
    pool = ConnectionPool(db)
    sync = DirectorySync(
        settings, pool=pool, thingspace=ThingSpaceClient(**settings.thingspace_login()),
        on_progress=lambda p: None, on_call=lambda *a: None,
    )
    import threading
    threading.Thread(target=lambda: sync.run(complete=True), daemon=True).start()
    while sync.pid is None:
        time.sleep(0.01)
    print(sync.pid, flush=True)
    time.sleep(60)
    """
)


def test_the_sync_process_never_outlives_the_bot(tmp_path: Path) -> None:
    """A bot killed with SIGKILL mid-sync: its sync process leaves within seconds."""
    with served_sandbox(devices=DEVICES) as (sandbox, url):
        sandbox.inject_fault(LIST, count=1000, latency=1.0)
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, url, str(tmp_path / "bot.db")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert _alive(child)
            parent.kill()
            parent.wait()
            _wait_for(lambda: not _alive(child), 5, "the orphaned sync process to leave")
        finally:
            parent.kill()
            parent.wait()
            if parent.stdout is not None:
                parent.stdout.close()


def test_back_to_back_syncs_each_report_their_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A finished sync is a success however fast its process ends (its end of input closing as
    it leaves is no stop)."""
    with LocalStack(tmp_path, devices=30, sync_directory=False, scheduler=False) as stack:
        runtime = stack.runtime
        assert runtime is not None
        caplog.set_level(logging.INFO)
        assert [runtime.directory_sync.run(complete=True) for _ in range(5)] == [30] * 5
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_where_no_other_process_could_reach_thingspace_the_sync_runs_in_the_calling_thread(
    tmp_path: Path,
) -> None:
    """The same runner, in this thread (a test transport or an in-memory database): it reads the
    lines, reports progress, and once stopped starts no other sync."""
    with LocalStack(tmp_path, devices=30, sync_directory=False, scheduler=False) as stack:
        runtime = stack.runtime
        assert runtime is not None
        seen: list[SyncProgress] = []
        here = DirectorySync(
            runtime.settings,
            pool=runtime.pool,
            thingspace=runtime.thingspace,
            on_progress=lambda p: seen.append(replace(p)),
            on_call=lambda *call: None,
            in_child=False,
        )
        assert here.run(complete=True) == 30
        assert here.pid is None and seen[-1].done and seen[-1].lines == 30
        here.stop()
        with pytest.raises(SyncStopped):
            here.run(complete=True)
