"""One call for commands to leave an audit entry (the audit log itself is storage.audit)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlite_utils import Database

from storage.audit import AuditEvent, AuditLog
from storage.db import write

__all__ = ["record", "transaction"]


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """A write transaction for a state change and its audit rows, committed together.

    Each audit append writes the head file (the chain's anchor outside the database) before the
    commit; the anchor is confirmed by the next append or by the ``audit-anchor`` job within a
    minute. Confirming after every command would cost two more disk flushes on the ack path,
    and the only thing it closes is a window of at most a minute in which deleting the newest
    transaction's rows would go unnoticed until that confirmation.
    """
    with write(db) as inner:
        yield inner


def record(
    db: Database,
    *,
    actor: str,
    channel: str,
    verb: str,
    outcome: str,
    targets: Iterable[str] = (),
    reason: str = "",
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry; inside a caller's write transaction it commits with it."""
    AuditLog(db).record(
        AuditEvent(
            actor=actor,
            channel=channel,
            verb=verb,
            targets=list(targets),
            reason=reason,
            outcome=outcome,
            request_id=request_id,
            detail=detail or {},
        )
    )
