"""What a command handler gets: its dependencies (:class:`Deps`), the Slack request it answers,
and the row of the verb table that describes it (:class:`VerbSpec`; the table itself is
:data:`commands.registry.VERBS`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from sqlite_utils import Database

from bot.core.config import Settings
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import RequestAccepted
from commands.grammar import TARGETS, Invocation
from storage.jobs import Job
from storage.pool import ConnectionPool

__all__ = [
    "ActionHandler",
    "ActionRequest",
    "CommandRequest",
    "Deps",
    "Handler",
    "Reply",
    "Runner",
    "Submit",
    "VerbSpec",
    "ViewHandler",
]


@dataclass
class Deps:
    """What every part that does work gets: settings, the database pool, the clock, the
    ThingSpace client, the one Slack Web API client, the verb table and the metrics hooks.

    The composition root (:class:`bot.app.Runtime`) builds one; tests build their own with real
    parts. Nothing takes the whole runtime.
    """

    settings: Settings
    pool: ConnectionPool
    thingspace: ThingSpaceClient
    #: called after a write that gives the worker or the outbox relay something to do
    wake: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.time
    #: optional hooks set by the app (metrics); commands never depend on them
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: the verb table (:data:`commands.registry.VERBS`): roles, usage, handlers, runners
    verbs: Mapping[str, VerbSpec] = field(default_factory=dict)
    #: the Slack Web API client for calls made outside the outbox (user groups, views, files)
    slack: WebClient | None = None

    def db(self) -> Database:
        return self.pool.get()

    def hook(self, name: str, *args: Any) -> None:
        """Call an optional hook (metrics); commands never depend on one being set."""
        fn = self.hooks.get(name)
        if fn is not None:
            fn(*args)

    def role_needed(self, verb: str) -> str | None:
        """The role *verb* needs (None: anyone), from the verb table."""
        return self.verbs[verb].role


@dataclass(frozen=True)
class CommandRequest:
    user: str
    channel: str
    text: str
    response_url: str = ""
    trigger_id: str = ""
    team: str = ""
    #: run by a button on a card (``ts:run``): the response_url's "original" is that card, which
    #: an answer must never overwrite
    via_button: bool = False
    #: run by the worker after the ack (:mod:`commands.prepare`): its targets were too many to
    #: check inside Slack's 3 s, so the answer replaces the ack's placeholder via the response_url
    prepared: bool = False


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
    #: for a click: nothing to post now (the answer follows as its own message)
    silent: bool = False
    #: for a click: a modal to open with the click's ``trigger_id`` (``views.open``) instead of a
    #: message; if it cannot be opened, ``text``/``blocks`` are posted as the answer
    view: dict[str, Any] | None = None

    def as_ack(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text, "response_type": self.response_type}
        if self.blocks:
            body["blocks"] = self.blocks
        if self.replace_original is not None:
            body["replace_original"] = self.replace_original
        return body


#: the ack-path handler of a verb: local work only, a reply for Slack's ack
Handler = Callable[[Deps, CommandRequest, Invocation, str | None], Reply]
#: a button's handler: a reply for the response_url, or None when it queued its own messages
ActionHandler = Callable[[Deps, ActionRequest], Reply | None]
#: a submitted modal's handler (deps, user, view): None closes it, {block_id: message} shows errors
ViewHandler = Callable[[Deps, str, Mapping[str, Any]], dict[str, str] | None]
#: a verb's background half, run by the command worker after the ack (it calls ThingSpace)
Runner = Callable[[Deps, Job], None]
#: the ThingSpace call of a confirmed action: (client, devices, the action's options) -> request
Submit = Callable[[ThingSpaceClient, Sequence[DeviceId], Mapping[str, Any]], RequestAccepted]


@dataclass(frozen=True)
class VerbSpec:
    """One row of the verb table: everything the router, help, the manifest, the role checks and
    the command worker need to know of a verb."""

    name: str
    #: the role needed (``viewer`` < ``operator`` < ``admin``); None: anyone
    role: str | None
    usage: str
    summary: str
    example: str
    #: answers the slash command from local work only
    handler: Handler
    #: the lookup job's body for verbs that ask ThingSpace after the ack (status, diag, …)
    runner: Runner | None = None
    #: the ThingSpace call of a confirmed action (suspend, resume, …)
    submit: Submit | None = None
    #: the handler writes its own audit entry (with an outcome only it knows)
    self_audited: bool = False
    #: changes something: asks for confirmation, takes --dry-run
    mutating: bool = False
    options: tuple[str, ...] = ()
    #: what follows the verb: ``targets``, free ``text`` or ``targets+text`` (see commands.grammar)
    arguments: str = TARGETS
