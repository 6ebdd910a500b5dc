"""One call for commands to leave an audit entry (the audit log itself is storage.audit)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlite_utils import Database

from storage.audit import AuditEvent, AuditLog

__all__ = ["record", "transaction"]


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """A write transaction whose audit rows are anchored (head file confirmed) after the commit."""
    with AuditLog(db).transaction() as inner:
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
