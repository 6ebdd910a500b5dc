"""Shared test set-up: no developer environment leaks into a test."""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_PREFIXES = ("SLACK_", "THINGSPACE_", "TSBOT_")

#: Property tests are deterministic: hypothesis derives each test's examples from the test itself
#: (``derandomize``), keeps no example database between runs and never times out on a slow
#: machine, so CI sees the same examples every time. ``HYPOTHESIS_PROFILE=slow`` runs twenty
#: times as many examples (``tests.helpers.fuzz.examples`` scales each test's count).
settings.register_profile(
    "default",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("slow", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: shared fixtures: a bot with the Slack stand-in only (tests.helpers.bot)
pytest_plugins = ["tests.helpers.bot"]


#: a memory-backed file system, where an fsync costs nothing
_TMPFS = Path("/dev/shm")


def pytest_configure(config: pytest.Config) -> None:
    """Temporary files (``tmp_path``, ``tempfile``) on tmpfs when the machine has one and nobody
    chose a place (``--basetemp``, ``TMPDIR``): every database a test makes is temporary and none
    needs to survive a power cut, while on a busy disk each fsync (SQLite's synchronous=FULL
    commits, the audit head file) can take longer than the test. Crash tests kill processes, which
    tmpfs survives as a disk does."""
    chosen = config.option.basetemp or os.environ.get("TMPDIR") or os.environ.get("PYTEST_DEBUG_TEMPROOT")
    if not chosen and _TMPFS.is_dir() and os.access(_TMPFS, os.W_OK | os.X_OK):
        tempfile.tempdir = str(_TMPFS)


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Remove SLACK_*, THINGSPACE_* and TSBOT_* variables for the duration of each test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(_PREFIXES)}
    for key in saved:
        del os.environ[key]
    yield
    for key in [k for k in os.environ if k.startswith(_PREFIXES)]:
        del os.environ[key]
    os.environ.update(saved)


# -- garbage collection around servers -------------------------------------------------------------
#
# A socket leaked in a reference cycle (a server, a client, an event loop) is only closed, and its
# ResourceWarning (an error here) only raised, when the cycle collector runs. So that the warning
# lands on the test that leaked it, garbage is collected after every test that opened a socket:
# those that start servers, stand-ins, stacks or processes, or talk to one. Pure tests open none and
# pay nothing. Everything alive once collection is over (modules, test items) is frozen out of the
# collector, so each of those collections only walks what the tests made.

_opened_a_socket = threading.Event()


def _watch_sockets(event: str, _args: tuple[object, ...]) -> None:
    if event == "socket.__new__":
        _opened_a_socket.set()


sys.addaudithook(_watch_sockets)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def collect_garbage_after_sockets() -> Iterator[None]:
    """After a test that opened a socket, run the collector, so a socket it leaked is reported
    against it, not against whichever test runs when the collector next happens to run."""
    yield
    if _opened_a_socket.is_set():
        _opened_a_socket.clear()
        gc.collect()


@pytest.fixture(autouse=True)
def restore_root_logging() -> Iterator[None]:
    """A test that runs a CLI command configures logging the way the command does; put the root
    logger's handlers and level back afterwards, so later tests' log lines stay captured."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
