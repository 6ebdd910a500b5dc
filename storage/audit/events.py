"""Audit events (what callers record) and audit rows (what the log holds), and how a row is hashed.

An :class:`AuditEvent` is one auditable thing: a command (including denied, invalid and dry-run
ones), a confirmation or approval, a ThingSpace call made for someone, a callback outcome, an
alert raised, snoozed or acknowledged, the configuration loaded at start. Use the :class:`Verb` and
:class:`Outcome` constants rather than new spellings; a dry run is ``verb=<the command>,
outcome=Outcome.DRY_RUN``.

The hash of a row (the chain rule, see ``storage.audit.log``)::

    hash = sha256(prev_hash + canonical_json(row)).hexdigest()

``prev_hash`` is the previous row's ``hash`` (64 zeros for row 1); ``row`` is the object with the
keys ``actor at channel detail id outcome reason request_id targets verb`` (``targets`` a list,
``detail`` an object, ``at`` the stored ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` text); canonical JSON is
``json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded as UTF-8,
so an auditor can recompute it with any JSON library that sorts keys by code point.

What is refused or changed on the way in: ``at`` must carry a time zone (it is stored in UTC);
``actor`` and ``verb`` must be non-empty (``verb`` and ``outcome`` are lower-case words joined by
``-`` or ``.``); ``detail`` must be JSON-able, and any value under a key that names a secret
(``password``, ``secret``, ``token``, ``authorization``, ``api_key``, ``credential``, ``cookie``)
or that looks like a Slack token is replaced by ``"(redacted)"``, so no secret ever reaches the
chain or an export. A control character in a target becomes U+FFFD. Device ids are kept in full:
the log is the record of what was done to which line; logs of the bot mask them, the audit log
does not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Final

__all__ = [
    "GENESIS_HASH",
    "SYSTEM_ACTOR",
    "THINGSPACE_ACTOR",
    "AuditEvent",
    "AuditRow",
    "Outcome",
    "Verb",
    "canonical_json",
    "export_line",
    "format_at",
    "parse_at",
    "row_hash",
    "row_payload",
]

#: ``prev_hash`` of the first row of a log.
GENESIS_HASH: Final = "0" * 64
#: ``actor`` of events nobody typed: scheduler jobs, retention, configuration loads, audit gaps.
SYSTEM_ACTOR: Final = "system"
#: ``actor`` of events ThingSpace caused (callbacks).
THINGSPACE_ACTOR: Final = "thingspace"
REDACTED: Final = "(redacted)"


class Verb:
    """The verbs of the audit log. A slash command is recorded under its own name."""

    # slash commands (the README's "Slash commands")
    HELP: Final = "help"
    STATUS: Final = "status"
    DIAG: Final = "diag"
    FIND: Final = "find"
    REACH: Final = "reach"
    SUSPEND: Final = "suspend"
    RESUME: Final = "resume"
    SMS: Final = "sms"
    CANCEL_LOCATION: Final = "cancel-location"
    WATCH: Final = "watch"
    UNWATCH: Final = "unwatch"
    WATCHES: Final = "watches"
    REQUEST: Final = "request"
    HISTORY: Final = "history"
    #: a command line that could not be parsed far enough to know its verb
    UNKNOWN: Final = "unknown"
    # buttons
    CONFIRM: Final = "confirm"
    CANCEL: Final = "cancel"
    APPROVE: Final = "approve"
    DENY: Final = "deny"
    RETRY: Final = "retry"
    # the bot's own work
    THINGSPACE_CALL: Final = "thingspace.call"
    CALLBACK: Final = "callback"
    ALERT_RAISE: Final = "alert.raise"
    ALERT_RECOVER: Final = "alert.recover"
    ALERT_SNOOZE: Final = "alert.snooze"
    ALERT_ACK: Final = "alert.ack"
    #: the configuration the bot started with (grants, non-secret settings, what changed since the
    #: previous load). The bot reads its configuration only at start: a restart is its reload.
    CONFIG_LOAD: Final = "config.load"
    #: written by retention: the chain's new starting point (see storage.audit.retention)
    AUDIT_CHECKPOINT: Final = "audit.checkpoint"
    #: the head file announced rows the log does not have (a crash before a commit, a rolled-back
    #: transaction, or a deletion); recorded before the head file is re-anchored (storage.audit.log)
    AUDIT_GAP: Final = "audit.gap"


class Outcome:
    """How an event ended."""

    OK: Final = "ok"
    #: the user's role does not allow it
    DENIED: Final = "denied"
    #: the command text or a parameter was wrong; nothing was done
    INVALID: Final = "invalid"
    #: ``--dry-run``: validated and shown, nothing changed
    DRY_RUN: Final = "dry-run"
    #: ThingSpace accepted an asynchronous request; the result comes by callback
    ACCEPTED: Final = "accepted"
    #: tried and failed (ThingSpace error, timeout)
    FAILED: Final = "failed"
    #: not attempted because a rule says no (e.g. a line's daily action limit), not a role
    REFUSED: Final = "refused"
    QUEUED: Final = "queued"
    AWAITING_CONFIRMATION: Final = "awaiting-confirmation"
    AWAITING_APPROVAL: Final = "awaiting-approval"
    EXPIRED: Final = "expired"
    CANCELLED: Final = "cancelled"
    #: a bulk action where some devices succeeded and some did not
    PARTIAL: Final = "partial"
    #: rows the head file announced are not in the log (``audit.gap``)
    MISSING: Final = "missing"


_WORD = re.compile(r"[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*")
_SECRET_KEY = re.compile(
    r"passw(?:or)?d|passphrase|secret|token|authori[sz]ation|api[-_]?key|credential|cookie|^pwd$",
    re.IGNORECASE,
)
_SLACK_TOKEN = re.compile(r"xox[abeoprs]-[0-9A-Za-z-]{8,}")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: control characters, which no device id has; U+0000 would also cut the target short in SQLite's
#: JSON functions, which the device index and its verification read
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept as is (encode the result as UTF-8)."""
    return _CANONICAL.encode(value)


def format_at(moment: datetime) -> str:
    """``2026-05-09T07:35:25.123456Z``: fixed width, so text order is time order."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"audit times must carry a time zone (got naive {moment.isoformat()})")
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_at(text: str) -> datetime:
    """The inverse of :func:`format_at`."""
    return datetime.fromisoformat(text).astimezone(UTC)


def row_payload(
    row_id: int,
    at: str,
    actor: str,
    channel: str,
    verb: str,
    targets_json: str,
    reason: str,
    outcome: str,
    request_id: str,
    detail_json: str,
) -> str:
    """``canonical_json(row)`` built from stored columns (``targets`` and ``detail`` already canonical).

    Equal to ``canonical_json`` of the row object; written out because verification runs it for
    every row and a single string build is several times faster than ``json.dumps`` of a dict.
    """
    s = encode_basestring
    return (
        f'{{"actor":{s(actor)},"at":{s(at)},"channel":{s(channel)},"detail":{detail_json},'
        f'"id":{int(row_id)},"outcome":{s(outcome)},"reason":{s(reason)},'
        f'"request_id":{s(request_id)},"targets":{targets_json},"verb":{s(verb)}}}'
    )


def export_line(columns: Sequence[Any]) -> str:
    """``canonical_json(AuditRow.to_dict())`` straight from stored columns (``COLUMNS`` order).

    The form of JSON-lines exports and retention archives: the hashed object plus ``prev_hash``
    and ``hash``, keys sorted, so each line can be re-hashed without the database.
    """
    rid, at, actor, channel, verb, targets, reason, outcome, request_id, detail, prev_hash, digest = columns
    s = encode_basestring
    return (
        f'{{"actor":{s(actor)},"at":{s(at)},"channel":{s(channel)},"detail":{detail},'
        f'"hash":{s(digest)},"id":{int(rid)},"outcome":{s(outcome)},"prev_hash":{s(prev_hash)},'
        f'"reason":{s(reason)},"request_id":{s(request_id)},"targets":{targets},"verb":{s(verb)}}}'
    )


def row_hash(prev_hash: str, payload: str) -> str:
    """``sha256(prev_hash + payload)`` as 64 lower-case hex digits."""
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _clean_text(value: str) -> str:
    """Text that SQLite and UTF-8 can store: lone surrogates (from JSON escapes) become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def _text(value: object, name: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"audit {name} must be text, not {type(value).__name__}")
    cleaned = _clean_text(value)
    if required and not cleaned.strip():
        raise ValueError(f"audit {name} must not be empty")
    return cleaned


def _word(value: object, name: str, examples: str) -> str:
    text = _text(value, name, required=True).strip()
    if not _WORD.fullmatch(text):
        raise ValueError(
            f"audit {name} {text!r} is not a lower-case word (letters, digits, '-' or '.'), e.g. {examples}"
        )
    return text


def _scrub(value: Any) -> Any:
    """A JSON-able copy of *value* with secrets replaced and text made storable."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit detail keys must be text, not {type(key).__name__} ({key!r})")
            key = _clean_text(key)
            out[key] = REDACTED if _SECRET_KEY.search(key) else _scrub(item)
        return out
    if isinstance(value, str):
        return _SLACK_TOKEN.sub(REDACTED, _clean_text(value))
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def _normal_target(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"audit targets must be text, not {type(value).__name__}")
    text = _CONTROL.sub("\ufffd", _clean_text(value).strip())
    kind, sep, rest = text.partition(":")
    if sep and kind.isalpha():
        text = f"{kind.lower()}:{rest.strip()}"
    return text


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One auditable thing, as a caller records it.

    :ivar at: when it happened (UTC; default now)
    :ivar actor: Slack user id, or ``"system"`` / ``"thingspace"``
    :ivar channel: Slack channel id, or ``""``
    :ivar verb: a :class:`Verb`
    :ivar targets: device ids as ``kind:id`` (``iccid:8914…``) or ``group:NAME``; kept in order,
        duplicates and blanks dropped
    :ivar reason: the ``--reason`` text, or why it was refused
    :ivar outcome: an :class:`Outcome`
    :ivar request_id: the ThingSpace request id (``None`` is stored as ``""``)
    :ivar detail: anything else, JSON-able (secrets are redacted, see the module docstring)
    """

    at: datetime = field(default_factory=_utc_now)
    actor: str
    channel: str = ""
    verb: str
    targets: Sequence[str] = ()
    reason: str = ""
    outcome: str = Outcome.OK
    request_id: str | None = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    _at_text: str = field(init=False, repr=False, compare=False, default="")
    _targets_json: str = field(init=False, repr=False, compare=False, default="[]")
    _detail_json: str = field(init=False, repr=False, compare=False, default="{}")

    def __post_init__(self) -> None:
        if not isinstance(self.at, datetime):
            raise TypeError(f"audit at must be a datetime, not {type(self.at).__name__}")
        at_text = format_at(self.at)
        at = self.at if self.at.tzinfo is UTC else self.at.astimezone(UTC)
        if isinstance(self.targets, str) or not isinstance(self.targets, Iterable):
            raise TypeError("audit targets must be a list of device ids, not a single string")
        targets = tuple(dict.fromkeys(t for t in map(_normal_target, self.targets) if t))
        if not isinstance(self.detail, Mapping):
            raise TypeError(f"audit detail must be a dict, not {type(self.detail).__name__}")
        detail = _scrub(self.detail)
        try:
            detail_json = canonical_json(detail)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"audit detail must be JSON-able: {exc}") from None
        set_ = object.__setattr__
        set_(self, "at", at)
        set_(self, "actor", _text(self.actor, "actor", required=True).strip())
        set_(self, "channel", _text(self.channel, "channel").strip())
        set_(self, "verb", _word(self.verb, "verb", "suspend, alert.snooze"))
        set_(self, "targets", targets)
        set_(self, "reason", _text(self.reason, "reason"))
        set_(self, "outcome", _word(self.outcome, "outcome", "ok, denied, dry-run"))
        set_(self, "request_id", _text(self.request_id, "request_id").strip())
        set_(self, "detail", detail)
        set_(self, "_at_text", at_text)
        set_(self, "_targets_json", "[" + ",".join(map(encode_basestring, targets)) + "]")
        set_(self, "_detail_json", detail_json)

    # -- named constructors for the events that are not a person's command --------------------

    @classmethod
    def system(
        cls,
        verb: str,
        *,
        outcome: str = Outcome.OK,
        targets: Sequence[str] = (),
        channel: str = "",
        reason: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Something the bot did on its own: a scheduled job, a configuration load, an alert."""
        return cls(
            actor=SYSTEM_ACTOR,
            channel=channel,
            verb=verb,
            targets=targets,
            reason=reason,
            outcome=outcome,
            detail=detail or {},
        )

    @classmethod
    def thingspace_call(
        cls,
        *,
        actor: str,
        operation: str,
        targets: Sequence[str],
        outcome: str,
        latency_ms: float,
        request_id: str | None = "",
        channel: str = "",
        status: int | None = None,
        error: str = "",
    ) -> AuditEvent:
        """A ThingSpace API call made for *actor*: operation, devices, request id, outcome, latency."""
        detail: dict[str, Any] = {"operation": operation, "latency_ms": round(float(latency_ms), 1)}
        if status is not None:
            detail["status"] = status
        if error:
            detail["error"] = error
        return cls(
            actor=actor,
            channel=channel,
            verb=Verb.THINGSPACE_CALL,
            targets=targets,
            outcome=outcome,
            request_id=request_id,
            detail=detail,
        )

    @classmethod
    def callback(
        cls,
        *,
        kind: str,
        targets: Sequence[str],
        outcome: str,
        request_id: str | None = "",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """The outcome of a ThingSpace callback (*kind* is the callback service name)."""
        return cls(
            actor=THINGSPACE_ACTOR,
            verb=Verb.CALLBACK,
            targets=targets,
            outcome=outcome,
            request_id=request_id,
            detail={"kind": kind, **(detail or {})},
        )


@dataclass(frozen=True)
class AuditRow:
    """One stored row: the event's fields plus its place in the chain."""

    id: int
    at: datetime
    actor: str
    channel: str
    verb: str
    targets: tuple[str, ...]
    reason: str
    outcome: str
    request_id: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_columns(cls, columns: Sequence[Any]) -> AuditRow:
        """Build from ``storage.audit.chain.COLUMNS`` order."""
        rid, at, actor, channel, verb, targets, reason, outcome, request_id, detail, prev, digest = columns
        return cls(
            id=int(rid),
            at=parse_at(at),
            actor=actor,
            channel=channel,
            verb=verb,
            targets=tuple(json.loads(targets)),
            reason=reason,
            outcome=outcome,
            request_id=request_id,
            detail=json.loads(detail),
            prev_hash=prev,
            hash=digest,
        )

    def to_dict(self) -> dict[str, Any]:
        """The export form (JSON lines, retention archives): the hashed object plus both hashes."""
        return {
            "id": self.id,
            "at": format_at(self.at),
            "actor": self.actor,
            "channel": self.channel,
            "verb": self.verb,
            "targets": list(self.targets),
            "reason": self.reason,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
