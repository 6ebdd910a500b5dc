"""Shared test set-up: no developer environment leaks into a test."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator

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


@pytest.fixture(autouse=True)
def collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage after each test, so a leaked socket or file is reported (ResourceWarning is
    an error here) against the test that leaked it, not against whichever test runs when the
    collector happens to run."""
    yield
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
