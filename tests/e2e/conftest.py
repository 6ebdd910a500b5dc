"""End-to-end tests: loopback stacks (bot + sandbox + Slack stand-in), child processes, crashes.

Every test here is marked ``slow``, so ``pytest -m "not slow"`` (the inner loop) leaves them out and
plain ``pytest`` runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)
