"""What a command handler gets: its dependencies and the Slack request it answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from bot.core.config import Settings
from bot.thingspace.client import ThingSpaceClient
from storage.pool import ConnectionPool

__all__ = ["ActionRequest", "CommandRequest", "Deps", "Reply"]


@dataclass
class Deps:
    """The composition root builds one of these; tests build their own with real parts."""

    settings: Settings
    pool: ConnectionPool
    thingspace: ThingSpaceClient
    #: called after a write that gives the worker or the outbox relay something to do
    wake: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.time
    #: optional hooks set by the app (metrics); commands never depend on them
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def db(self) -> Database:
        return self.pool.get()

    def hook(self, name: str, *args: Any) -> None:
        """Call an optional hook (metrics); commands never depend on one being set."""
        fn = self.hooks.get(name)
        if fn is not None:
            fn(*args)


@dataclass(frozen=True)
class CommandRequest:
    user: str
    channel: str
    text: str
    response_url: str = ""
    trigger_id: str = ""
    team: str = ""


@dataclass(frozen=True)
class ActionRequest:
    user: str
    channel: str
    action_id: str
    value: str
    response_url: str = ""
    message_ts: str = ""
    trigger_id: str = ""


@dataclass(frozen=True)
class Reply:
    """What goes back in the ack: ephemeral unless said otherwise."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    response_type: str = "ephemeral"
    replace_original: bool | None = None

    def as_ack(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text, "response_type": self.response_type}
        if self.blocks:
            body["blocks"] = self.blocks
        if self.replace_original is not None:
            body["replace_original"] = self.replace_original
        return body
