"""Loopback servers and stacks for tests, started and stopped in one place.

* :func:`served_sandbox` — the ThingSpace sandbox served on loopback: ``(sandbox, url)``;
* :func:`served_standin` — the Slack stand-in served on loopback;
* :func:`local_stack` — the bot, the sandbox and the stand-in wired together (:class:`LocalStack`);
* :func:`stack_fixture` — a pytest fixture of a started :class:`LocalStack`, for a test module:
  ``stack = stack_fixture(devices=40, settings_overrides={...})``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from bot.console.standin import SlackStandIn
from bot.local_stack import LocalStack
from bot.sandbox import Sandbox, create_sandbox
from bot.serving import ServerThread

__all__ = ["local_stack", "served_sandbox", "served_standin", "stack_fixture"]


@contextmanager
def served_sandbox(**options: Any) -> Iterator[tuple[Sandbox, str]]:
    """``create_sandbox(**options)`` served on loopback; yields the sandbox and its URL."""
    sandbox = create_sandbox(**options)
    server = ServerThread(sandbox.app).start()
    try:
        yield sandbox, server.url
    finally:
        server.stop()
        sandbox.close()


@contextmanager
def served_standin(**options: Any) -> Iterator[SlackStandIn]:
    """``SlackStandIn(**options)`` served on loopback."""
    standin = SlackStandIn(**options).start()
    try:
        yield standin
    finally:
        standin.stop()


@contextmanager
def local_stack(workdir: Path, **options: Any) -> Iterator[LocalStack]:
    """A started :class:`LocalStack` in *workdir* (options as for ``LocalStack``)."""
    stack = LocalStack(workdir, **options)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def stack_fixture(
    *, scope: Literal["function", "module"] = "module", name: str = "stack", **options: Any
) -> Any:
    """A fixture (named ``stack`` unless *name* says otherwise) that yields a started
    :class:`LocalStack` with these options, shared by the module's tests (``scope="module"``) or
    fresh for each test (``scope="function"``)."""

    @pytest.fixture(scope=scope, name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
        with local_stack(tmp_path_factory.mktemp(name), **options) as stack:
            yield stack

    return fixture
