"""Every ThingSpace call made for someone lands in the audit log.

ThingSpace has one shared API login, so only the bot can say who a call was for. The worker runs
each job inside :func:`acting_for` with the person who asked; :func:`audit_call`, the client's
observer, notes one ``thingspace.call`` entry per call (operation, targets, outcome, latency), and
the entries are appended together when the job ends. Calls that open a ThingSpace request (suspend, restore, SMS, cancel location, a
reachability query) are recorded by the code that makes them, with the request id ThingSpace
returned, so they are not recorded twice. Calls made for nobody (the directory sync, the
scheduler's jobs) are not attributed to anyone here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlite_utils import Database

from storage import pending
from storage.audit.events import AuditEvent, Outcome, Verb
from storage.audit.log import AuditLog
from storage.db import write
from storage.jobs import Job
from storage.pool import ConnectionPool

__all__ = ["Principal", "acting_for", "audit_call", "current_principal", "principal_for_job", "record_calls"]

log = logging.getLogger(__name__)

#: operations whose callers record the call themselves, with the request id it returned
RECORDED_BY_CALLER = frozenset(
    {
        "suspend",
        "restore",
        "send_sms",
        "cancel_location",
        "reachability_status",
        "start_reachability_monitor",
        "stop_reachability_monitors",
    }
)


@dataclass(frozen=True)
class Principal:
    """Who a piece of work is done for."""

    actor: str
    channel: str
    verb: str
    targets: tuple[str, ...] = ()
    reason: str = ""


@dataclass
class _Calls:
    principal: Principal
    events: list[AuditEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_ACTING_FOR: ContextVar[_Calls | None] = ContextVar("tsbot_acting_for", default=None)


@contextmanager
def acting_for(principal: Principal | None, pool: ConnectionPool) -> Iterator[None]:
    """ThingSpace calls inside the block (and in threads started with a copy of this context) are
    audited as made for *principal*: by :func:`record_calls` in the job's closing transaction,
    or, for what that did not take, in one transaction when the block ends, however it ends."""
    calls = _Calls(principal) if principal is not None else None
    token = _ACTING_FOR.set(calls)
    try:
        yield
    finally:
        events = _take()  # what the job's closing transaction did not take (it failed first)
        _ACTING_FOR.reset(token)
        if events:
            _write(pool, events)


def _take() -> list[AuditEvent]:
    calls = _ACTING_FOR.get()
    if calls is None:
        return []
    with calls.lock:
        events, calls.events = calls.events, []
    return events


def record_calls(db: Database) -> None:
    """Append the calls noted so far inside the caller's open write transaction (the worker's
    closing one), so auditing them costs no commit of its own. A failure here is logged and
    rolled back to a savepoint: it must never undo the job's own outcome."""
    events = _take()
    if not events:
        return
    try:
        with write(db):  # a savepoint inside the caller's transaction
            AuditLog(db).record_many(events)
    except Exception:
        log.exception("could not audit %d ThingSpace call(s) for %s", len(events), events[0].actor)


def _write(pool: ConnectionPool, events: list[AuditEvent]) -> None:
    db = pool.get()
    try:
        with write(db):
            AuditLog(db).record_many(events)
    except Exception:  # the calls succeeded or failed on their own; never mask that
        log.exception("could not audit %d ThingSpace call(s) for %s", len(events), events[0].actor)


def current_principal() -> Principal | None:
    """Who the work on this thread is for, if anyone (a job run for a user)."""
    calls = _ACTING_FOR.get()
    return calls.principal if calls is not None else None


def principal_for_job(pool: ConnectionPool, job: Job) -> Principal | None:
    """The person a queued job works for: its payload's user, or its pending action's requester."""
    payload = job.payload
    action_id = payload.get("pending")
    if job.kind == "execute" and isinstance(action_id, str):
        action = pending.get(pool.get(), action_id)
        if action is None:
            return None
        return Principal(action.actor, action.channel, action.verb, tuple(action.devices), action.reason)
    user = payload.get("user")
    if not isinstance(user, str) or not user:
        return None
    key = payload.get("key")
    return Principal(
        actor=user,
        channel=str(payload.get("channel", "")),
        verb=str(payload.get("verb", job.kind)),
        targets=(key,) if isinstance(key, str) and key else (),
    )


def audit_call(operation: str, seconds: float, error: str | None) -> None:
    """The client's observer hook: note a call made for the current principal, if any."""
    calls = _ACTING_FOR.get()
    if calls is None or operation in RECORDED_BY_CALLER:
        return
    principal = calls.principal
    detail: dict[str, object] = {
        "operation": operation,
        "for": principal.verb,
        "latency_ms": round(seconds * 1000),
    }
    if error:
        detail["error"] = error
    event = AuditEvent(
        actor=principal.actor,
        channel=principal.channel,
        verb=Verb.THINGSPACE_CALL,
        targets=list(principal.targets),
        reason=principal.reason,
        outcome=Outcome.FAILED if error else Outcome.OK,
        detail=detail,
    )
    with calls.lock:
        calls.events.append(event)
