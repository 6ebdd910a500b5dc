"""What the Slack stand-in remembers: messages, their versions, Web API calls and events.

Every record is an immutable snapshot. The stand-in replaces a :class:`Message` with a new one
when it is updated, so a test that holds a message sees it as it was when it got it, and an
event carries the message as it was at that moment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Button",
    "Call",
    "EventKind",
    "Message",
    "MessageSource",
    "MessageVersion",
    "StandInEvent",
    "iter_buttons",
]

#: How a message (or one version of it) came to be.
MessageSource = Literal["post", "update", "ephemeral", "response_url"]
#: What happened, as told to ``on_event`` listeners.
EventKind = Literal["post", "update", "ephemeral", "response", "delete"]


@dataclass(frozen=True)
class MessageVersion:
    """One state of a message: its text and blocks, when it was set and by which path."""

    text: str
    blocks: tuple[Mapping[str, Any], ...]
    at: float
    source: MessageSource


@dataclass(frozen=True)
class Button:
    """A button found in a message's blocks (an ``actions`` element or a section accessory)."""

    text: str
    action_id: str
    block_id: str
    value: str | None = None
    style: str | None = None
    url: str | None = None
    has_confirm: bool = False

    def payload_action(self, action_ts: str) -> dict[str, Any]:
        """The ``actions[]`` entry Slack sends in a ``block_actions`` payload for this button."""
        action: dict[str, Any] = {
            "type": "button",
            "action_id": self.action_id,
            "block_id": self.block_id,
            "text": {"type": "plain_text", "text": self.text, "emoji": True},
            "action_ts": action_ts,
        }
        if self.value is not None:
            action["value"] = self.value
        if self.style is not None:
            action["style"] = self.style
        return action


@dataclass(frozen=True)
class Message:
    """A message as the stand-in holds it.

    ``user`` is the only user who sees an ephemeral message (``None`` for channel messages).
    ``thread_ts`` is the root's ts for a reply, ``None`` for a root. ``versions`` holds every
    state from the first post to now; ``text`` and ``blocks`` are the newest.
    """

    channel: str
    ts: str
    versions: tuple[MessageVersion, ...]
    source: MessageSource
    thread_ts: str | None = None
    user: str | None = None
    deleted: bool = False
    seq: int = 0
    """Bumped on every change: orders messages by their latest activity."""

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def blocks(self) -> tuple[Mapping[str, Any], ...]:
        return self.versions[-1].blocks

    @property
    def ephemeral(self) -> bool:
        return self.user is not None

    @property
    def updated(self) -> bool:
        return len(self.versions) > 1

    @property
    def last_source(self) -> MessageSource:
        return self.versions[-1].source

    def buttons(self) -> list[Button]:
        """Every button of the newest version, in display order."""
        return list(iter_buttons(self.blocks))

    def visible_to(self, user: str) -> bool:
        """Whether ``user`` sees this message in Slack (channel messages: everyone)."""
        return not self.deleted and (self.user is None or self.user == user)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (used by ``GET /_standin/messages``)."""
        return {
            "channel": self.channel,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "user": self.user,
            "ephemeral": self.ephemeral,
            "deleted": self.deleted,
            "source": self.source,
            "text": self.text,
            "blocks": [dict(b) for b in self.blocks],
            "versions": [
                {"text": v.text, "blocks": [dict(b) for b in v.blocks], "at": v.at, "source": v.source}
                for v in self.versions
            ],
        }


@dataclass(frozen=True)
class Call:
    """One request the stand-in answered: a Web API method or a ``response_url`` post.

    ``params`` never holds the token. ``status`` is the HTTP status sent, ``headers`` the notable
    response headers (``Retry-After``), ``response`` the JSON body (``{}`` when the body was not
    JSON, e.g. an injected 5xx). ``injected`` says the answer came from :meth:`SlackStandIn.inject`.
    """

    method: str
    params: Mapping[str, Any]
    at: float
    status: int
    response: Mapping[str, Any]
    injected: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def channel(self) -> str | None:
        value = self.params.get("channel")
        return str(value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (used by ``GET /_standin/calls``)."""
        return {
            "method": self.method,
            "params": dict(self.params),
            "at": self.at,
            "status": self.status,
            "response": dict(self.response),
            "injected": self.injected,
            "headers": dict(self.headers),
        }


@dataclass(frozen=True)
class StandInEvent:
    """Told to ``on_event`` listeners after a message was posted, updated or deleted."""

    kind: EventKind
    message: Message
    at: float


def _plain(text_object: object) -> str:
    if isinstance(text_object, Mapping):
        return str(text_object.get("text", ""))
    return ""


def _button(element: Mapping[str, Any], block_id: str) -> Button:
    return Button(
        text=_plain(element.get("text")),
        action_id=str(element.get("action_id", "")),
        block_id=block_id,
        value=None if element.get("value") is None else str(element["value"]),
        style=None if element.get("style") is None else str(element["style"]),
        url=None if element.get("url") is None else str(element["url"]),
        has_confirm="confirm" in element,
    )


def iter_buttons(blocks: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]]) -> Iterator[Button]:
    """Yield the buttons of ``blocks``: ``actions`` elements and section accessories."""
    for block in blocks:
        block_id = str(block.get("block_id", ""))
        if block.get("type") == "actions":
            for element in block.get("elements") or ():
                if isinstance(element, Mapping) and element.get("type") == "button":
                    yield _button(element, block_id)
        accessory = block.get("accessory")
        if isinstance(accessory, Mapping) and accessory.get("type") == "button":
            yield _button(accessory, block_id)
