"""One call for commands to leave an audit entry (the audit log itself is storage.audit).

Outcomes and verbs are the constants of :class:`Outcome` and :class:`Verb` (re-exported here), so a
misspelt outcome is a type error, not a row nobody's query finds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlite_utils import Database

from storage.audit.events import Outcome, Verb
from storage.audit.log import AuditEvent, AuditLog

__all__ = ["Outcome", "Verb", "record", "transaction"]


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """A write transaction for a state change and its audit rows, committed together.

    Each audit append writes the head file (the chain's anchor outside the database) before the
    commit. Confirming it after the commit costs another file write and flush, so that is left
    to the runtime's ``AnchorConfirmer``, which does it moments later on its own thread (a burst
    of commands costs one confirmation). If the transaction fails, the head file is put back
    before the rollback, so a failed command never reads as rows gone missing.
    """
    with AuditLog(db).transaction(confirm=False) as inner:
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
    """Append one audit entry; inside a caller's write transaction it commits with it.

    Either way the head file is confirmed off this thread (see :func:`transaction`).
    """
    AuditLog(db).record_many(
        [
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
        ],
        confirm=False,
    )
