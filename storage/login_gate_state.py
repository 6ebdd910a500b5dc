"""The ThingSpace login gate's state for one set of credentials: one frozen value, no dependencies.

Both gates return it from ``load``: the in-memory one of :mod:`bot.thingspace.auth` and the
shared one in SQLite (:mod:`storage.login_gate`); the auth decides what it means. It lives here,
with the standard library only, so that both tiers can import it. Times are seconds on the gate's
clock (``LoginGate.now``); 0 means "never".
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LoginGateState"]


@dataclass(frozen=True)
class LoginGateState:
    """The gate for one set of credentials (zero counts when they have no record)."""

    #: Changes on every write to the gate: ``LoginGate.claim`` compares it.
    version: int = 0
    #: Token requests/logins with these credentials since their last success, one maybe in flight.
    attempts: int = 0
    #: Of those, how many ThingSpace refused.
    refusals: int = 0
    #: Refusals in a row with any credentials since the last successful login.
    streak: int = 0
    #: When the attempt now in flight was claimed; 0 once its outcome is recorded.
    in_flight_since: float = 0.0
    #: When these credentials were first refused: the pause began then.
    first_refused_at: float = 0.0
    last_refused_at: float = 0.0
    #: HTTP status of the last refusal (0 when there was none).
    status: int = 0
    error_code: str = ""
    #: The endpoint that refused: the token endpoint or the login.
    path: str = ""
    #: ThingSpace's message, masked (``bot.thingspace.errors.error_from_response``).
    message: str = ""
    #: ThingSpace said the user is locked.
    locked: bool = False
    #: Which program met the last refusal (e.g. ``tsbot check (pid 4242 on host)``).
    refused_by: str = ""
