"""Per-device outcome statuses of a tracked request, and how a callback maps onto them.

A device of a request starts ``pending``. A callback moves it to an *intermediate* status (an
SMS handed to the network, a reachability query registered while the device sleeps) or a
*final* one. A status never moves back to a lower rank, so ThingSpace's out-of-order messages
(the SMS "sent" notice arriving after "delivered") cannot undo a result; a final status may be
replaced by a later final one (a late callback after "no result after 30 min").

========== ======== ============================================== =====================
status     rank     set by                                         counted as
========== ======== ============================================== =====================
pending    0        the request row                                waiting
sent       1        SMS handed to the network                      waiting (for delivery)
registered 1        reachability query registered, no status yet   waiting
queued     1        NIDD data buffered until the device wakes      waiting (for delivery)
ok         2        suspend / resume / cancel location succeeded   done
delivered  2        SMS or NIDD data received by the device        done
reachable  2        reachability answer                            done
unreachable 2       reachability answer                            done
failed     2        a failure callback (``faultResponse``)         done, failed
expired    2        SMS not delivered within 5 days                done, failed
no-result  2        nothing heard after ``no_result_after``        done, failed
========== ======== ============================================== =====================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bot.thingspace.events import CallbackEvent, CallbackKind

__all__ = [
    "FAILURES",
    "FINAL",
    "NO_RESULT",
    "PENDING",
    "RETRYABLE",
    "failure_reason",
    "rank",
    "status_for",
    "supersedes",
]

PENDING: Final = "pending"
OK: Final = "ok"
FAILED: Final = "failed"
NO_RESULT: Final = "no-result"
SENT: Final = "sent"
DELIVERED: Final = "delivered"
EXPIRED: Final = "expired"
REACHABLE: Final = "reachable"
UNREACHABLE: Final = "unreachable"
REGISTERED: Final = "registered"
QUEUED: Final = "queued"

INTERMEDIATE: Final = frozenset({SENT, REGISTERED, QUEUED})
FINAL: Final = frozenset({OK, FAILED, NO_RESULT, DELIVERED, EXPIRED, REACHABLE, UNREACHABLE})
FAILURES: Final = frozenset({FAILED, EXPIRED, NO_RESULT})
#: what the "Retry failed" button sends again
RETRYABLE: Final = FAILURES

_BY_KIND: Final[Mapping[CallbackKind, str]] = {
    CallbackKind.SUSPENDED: OK,
    CallbackKind.RESTORED: OK,
    CallbackKind.STATE_CHANGED: OK,
    CallbackKind.LOCATION_CANCELLED: OK,
    CallbackKind.ACTION_FAILED: FAILED,
    CallbackKind.SMS_SENT: SENT,
    CallbackKind.SMS_DELIVERED: DELIVERED,
    CallbackKind.SMS_EXPIRED: EXPIRED,
    CallbackKind.SMS_FAILED: FAILED,
    CallbackKind.REACHABLE: REACHABLE,
    CallbackKind.UNREACHABLE: UNREACHABLE,
    CallbackKind.MONITOR_UPDATE: REGISTERED,
    CallbackKind.MONITOR_FAILED: FAILED,
    CallbackKind.NIDD_QUEUED: QUEUED,
    CallbackKind.NIDD_DELIVERED: DELIVERED,
    CallbackKind.NIDD_FAILED: FAILED,
    CallbackKind.SMS_HISTORY: OK,
}


#: What a ``succeeded`` callback (``status`` Success, an inner key we do not know) means for the
#: request it answers: the envelope says it worked; the verb says what "worked" is. For an SMS it
#: could be the "sent" or the "delivered" notice, so it counts as the lesser one.
_SUCCEEDED_BY_VERB: Final[Mapping[str, str]] = {
    "suspend": OK,
    "resume": OK,
    "cancel-location": OK,
    "sms": SENT,
    "reach": REGISTERED,
}
#: final statuses a later final answer may still replace (nothing was known for sure)
_REPLACEABLE: Final = frozenset({NO_RESULT})


def status_for(event: CallbackEvent, verb: str | None = None) -> str | None:
    """The device status a callback means for a request of *verb*, or None when it is no answer
    to a request."""
    if event.kind is CallbackKind.SUCCEEDED:
        return _SUCCEEDED_BY_VERB.get(verb or "", OK) if verb else None
    return _BY_KIND.get(event.kind)


def supersedes(new: str, current: str) -> bool:
    """Whether a device whose outcome is *current* takes *new*: each outcome is told once (a
    callback and a request-status answer saying the same are one), an outcome never moves back,
    and a final one is replaced only when it was "no result"."""
    if new == current:
        return False
    if rank(new) != rank(current):
        return rank(new) > rank(current)
    return rank(new) == 2 and current in _REPLACEABLE


def rank(status: str) -> int:
    if status in FINAL:
        return 2
    if status in INTERMEDIATE:
        return 1
    return 0


def failure_reason(status: str, detail: Mapping[str, Any], *, no_result_after: str = "30 min") -> str:
    """One line saying why a device failed, used to group failures in summaries."""
    if status == NO_RESULT:
        return f"no result after {no_result_after}"
    if status == EXPIRED:
        return "SMS expired undelivered (the network tried for 5 days)"
    message = str(detail.get("reason") or "").strip()
    code = str(detail.get("code") or "").strip()
    if message and code:
        return f"{message} ({code})"
    return message or code or "failed (ThingSpace gave no reason)"
