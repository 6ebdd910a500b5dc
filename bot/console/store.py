"""The stand-in's memory: messages and Web API calls, safe to share between threads.

The HTTP side (uvicorn's thread) writes; tests and the demo read, wait and listen from their own
threads. One lock guards everything; a condition on that lock wakes :meth:`wait_for` on every
change, so tests wait for asynchronous posts without sleeping. Listeners run after the lock is
released, on the thread that made the change.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.console.records import Call, EventKind, Message, MessageSource, MessageVersion, StandInEvent

__all__ = ["EventListener", "MessageStore"]

log = logging.getLogger(__name__)

EventListener = Callable[[StandInEvent], None]

#: Slack truncates message text beyond this many characters.
MAX_TEXT = 40_000


class MessageStore:
    """Messages by ``(channel, ts)``, the call log, and ``on_event`` listeners."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._messages: dict[tuple[str, str], Message] = {}
        self._calls: list[Call] = []
        self._listeners: list[EventListener] = []
        self._last_ts_us = 0
        self._seq = 0

    # -- time ---------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def next_ts(self) -> str:
        """A new message ts: ``"1732550000.000100"`` style, unique and increasing."""
        with self._lock:
            micros = max(int(self._clock() * 1_000_000), self._last_ts_us + 100)
            self._last_ts_us = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- messages -----------------------------------------------------------------------------

    def add(
        self,
        *,
        channel: str,
        text: str,
        blocks: Iterable[Mapping[str, Any]],
        source: MessageSource,
        thread_ts: str | None = None,
        user: str | None = None,
        ts: str | None = None,
    ) -> Message:
        """Store a new message and tell the listeners; returns it."""
        kind: EventKind = "response" if source == "response_url" else "ephemeral" if user else "post"
        with self._lock:
            ts = ts or self.next_ts()
            if thread_ts is not None:
                parent = self._messages.get((channel, thread_ts))
                if parent is not None and parent.thread_ts is not None:
                    thread_ts = parent.thread_ts  # a reply to a reply lands in the parent's thread
            self._seq += 1
            version = MessageVersion(text=text[:MAX_TEXT], blocks=tuple(blocks), at=self.now(), source=source)
            message = Message(
                channel=channel,
                ts=ts,
                versions=(version,),
                source=source,
                thread_ts=thread_ts,
                user=user,
                seq=self._seq,
            )
            self._messages[(channel, ts)] = message
            self._changed.notify_all()
        self._emit(StandInEvent(kind=kind, message=message, at=version.at))
        return message

    def update(
        self,
        channel: str,
        ts: str,
        *,
        text: str | None,
        blocks: Iterable[Mapping[str, Any]] | None,
        source: MessageSource,
    ) -> Message:
        """Add a version to a message (``None`` keeps that part); ``KeyError`` if unknown/deleted."""
        with self._lock:
            current = self._get_live(channel, ts)
            self._seq += 1
            version = MessageVersion(
                text=current.text if text is None else text[:MAX_TEXT],
                blocks=current.blocks if blocks is None else tuple(blocks),
                at=self.now(),
                source=source,
            )
            message = dataclasses.replace(current, versions=(*current.versions, version), seq=self._seq)
            self._messages[(channel, ts)] = message
            self._changed.notify_all()
        self._emit(StandInEvent(kind="update", message=message, at=version.at))
        return message

    def delete(self, channel: str, ts: str) -> Message:
        """Mark a message deleted; ``KeyError`` if unknown or already deleted."""
        with self._lock:
            current = self._get_live(channel, ts)
            self._seq += 1
            message = dataclasses.replace(current, deleted=True, seq=self._seq)
            self._messages[(channel, ts)] = message
            self._changed.notify_all()
        self._emit(StandInEvent(kind="delete", message=message, at=self.now()))
        return message

    def _get_live(self, channel: str, ts: str) -> Message:
        message = self._messages.get((channel, ts))
        if message is None or message.deleted:
            raise KeyError((channel, ts))
        return message

    def get(self, channel: str, ts: str) -> Message:
        """The message at ``(channel, ts)``, deleted or not; ``KeyError`` if there never was one."""
        with self._lock:
            return self._messages[(channel, ts)]

    def messages(
        self,
        channel: str | None = None,
        thread_ts: str | None = None,
        *,
        include_ephemeral: bool = True,
        include_deleted: bool = False,
    ) -> list[Message]:
        """Messages in ts order; ``thread_ts`` selects the replies of one thread (not the root)."""
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if (channel is None or m.channel == channel)
                and (thread_ts is None or m.thread_ts == thread_ts)
                and (include_ephemeral or not m.ephemeral)
                and (include_deleted or not m.deleted)
            ]
        return sorted(found, key=lambda m: (float(m.ts), m.channel))

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The root at ``ts`` (if stored) followed by its replies, in ts order."""
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if m.channel == channel and not m.deleted and (m.ts == ts or m.thread_ts == ts)
            ]
        return sorted(found, key=lambda m: float(m.ts))

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The first message (ts order) matching ``predicate``, waiting up to ``timeout`` seconds.

        Deleted messages are offered too (``m.deleted``), so a test can wait for a deletion.

        Raises ``TimeoutError`` naming the messages that were there, to make a failing test clear.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self.messages(include_deleted=True):
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = (
                        "; ".join(f"{m.channel} {m.ts}: {m.text[:60]!r}" for m in self.messages()) or "none"
                    )
                    raise TimeoutError(f"no matching Slack message within {timeout} s (messages: {seen})")
                self._changed.wait(remaining)

    # -- calls --------------------------------------------------------------------------------

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            self._changed.notify_all()
        log.debug("slack stand-in: %s -> %s %s", call.method, call.status, call.response.get("error", "ok"))

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for_call(self, predicate: Callable[[Call], bool], timeout: float = 5.0) -> Call:
        """The first recorded call matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for call in self._calls:
                    if predicate(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    methods = ", ".join(c.method for c in self._calls[-20:]) or "none"
                    raise TimeoutError(
                        f"no matching Slack API call within {timeout} s (last calls: {methods})"
                    )
                self._changed.wait(remaining)

    # -- listeners ----------------------------------------------------------------------------

    def on_event(self, listener: EventListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _emit(self, event: StandInEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken printer must not turn a Slack call into a 500
                log.exception("slack stand-in: event listener %r failed", listener)

    def clear(self) -> None:
        """Forget every message and call (listeners stay)."""
        with self._lock:
            self._messages.clear()
            self._calls.clear()
            self._changed.notify_all()
