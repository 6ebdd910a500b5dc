"""Shared test set-up: no developer environment leaks into a test."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

_PREFIXES = ("SLACK_", "THINGSPACE_", "TSBOT_")

#: shared fixtures: a bot with the Slack stand-in only (tests.helpers_bot)
pytest_plugins = ["tests.helpers_bot"]


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
