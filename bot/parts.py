"""What the runtime starts and stops: the background parts (threads) of ``tsbot serve``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Part"]


@runtime_checkable
class Part(Protocol):
    """A background part: the command worker, the outbox relay, the inbox writer and worker, the
    audit head confirmer, the Socket Mode connection.

    ``start`` and ``stop`` are called once each by the runtime (stop in reverse order of start);
    ``alive`` feeds ``/readyz``; ``idle`` says nothing is queued or in flight (``tsbot demo
    --script`` waits for it); ``wake`` says there is new work (a part that polls may ignore it).
    """

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def alive(self) -> bool: ...

    def idle(self) -> bool: ...

    def wake(self) -> None: ...
