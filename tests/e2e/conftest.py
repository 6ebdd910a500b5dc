"""End-to-end tests: loopback stacks (bot + sandbox + Slack stand-in), child processes, crashes.

Every test here is marked ``slow``, so ``pytest -m "not slow"`` (the inner loop) leaves them out and
plain ``pytest`` runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.console.standin import SlackStandIn

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def payloads_within_slack_limits(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every payload this test made the bot send through a Slack stand-in (posts, updates,
    ephemerals, ``response_url`` replies, views) keeps Slack's documented Block Kit limits
    (``bot.console.limits``): no later change can break them silently."""
    start = {id(s): len(s.limit_problems()) for s in list(SlackStandIn.instances)}
    yield
    if request.node.get_closest_marker("slack_limits_exempt"):
        return
    found: list[str] = []
    for standin in list(SlackStandIn.instances):
        problems = standin.limit_problems()
        first = start.get(id(standin), 0)
        found += problems[first if first <= len(problems) else 0 :]
    assert not found, "payloads broke Slack's Block Kit limits:\n" + "\n".join(found[:20])
