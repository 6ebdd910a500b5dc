"""Who may run what: the verb table and role resolution (default deny).

Roles are ordered ``viewer < operator < admin``. A user's role is the highest one granted to
their user ID, any of their user groups, or the channel the command runs in. Someone with no
grant at all may only run ``help``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.core.config import ROLES, Grants

__all__ = ["VERBS", "Verb", "may_run", "needed_role", "role_of", "verbs_for"]

_RANK = {role: i for i, role in enumerate(ROLES, start=1)}


@dataclass(frozen=True)
class Verb:
    name: str
    role: str | None  # None: anyone
    usage: str
    summary: str
    example: str
    mutating: bool = False
    options: tuple[str, ...] = ()


VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb(
            "help", None, "help [verb]", "what you may run here, or how to use one verb", "/ts help suspend"
        ),
        Verb(
            "status",
            "viewer",
            "status TARGET",
            "state, plan, last connection and identifiers of a line",
            "/ts status iccid:89148000000800139708",
        ),
        Verb(
            "diag",
            "viewer",
            "diag TARGET",
            "diagnostics with a verdict and the next step",
            "/ts diag 89148000000800139708",
        ),
        Verb(
            "find",
            "viewer",
            "find TEXT",
            "search the device directory by partial id, label or group",
            "/ts find 9708",
        ),
        Verb(
            "reach",
            "viewer",
            "reach TARGET",
            "ask ThingSpace now whether a device is reachable",
            "/ts reach mdn:5551234567",
        ),
        Verb(
            "suspend",
            "operator",
            "suspend TARGETS [--reason TEXT] [--dry-run]",
            "suspend lines (asks for confirmation; big batches need a second approver)",
            '/ts suspend iccid:89148000000800139708 --reason "stolen"',
            mutating=True,
            options=("reason", "dry-run"),
        ),
        Verb(
            "resume",
            "operator",
            "resume TARGETS [--reason TEXT] [--dry-run]",
            "restore suspended lines (asks for confirmation)",
            "/ts resume group:plant-7 --reason recommissioned",
            mutating=True,
            options=("reason", "dry-run"),
        ),
        Verb(
            "sms",
            "operator",
            'sms TARGETS "TEXT" [--reason TEXT] [--dry-run]',
            "send an SMS; delivery receipts arrive in the thread",
            '/ts sms mdn:5551234567 "REBOOT"',
            mutating=True,
            options=("dry-run", "reason"),
        ),
        Verb(
            "cancel-location",
            "admin",
            "cancel-location TARGET [--reason TEXT] [--dry-run]",
            "detach a device from the network so it re-attaches (queued by ThingSpace)",
            "/ts cancel-location imei:990013907835573",
            mutating=True,
            options=("reason", "dry-run"),
        ),
        Verb(
            "watch",
            "operator",
            "watch TARGETS [--alert-after 2h] [--wake-every 6h] [--channel #c] [--dry-run]",
            "alert a channel when devices stay unreachable",
            "/ts watch group:meters --wake-every 12h",
            mutating=True,
            options=("alert-after", "wake-every", "channel", "dry-run", "reason"),
        ),
        Verb(
            "unwatch",
            "operator",
            "unwatch TARGETS [--dry-run]",
            "stop watching devices",
            "/ts unwatch group:meters",
            mutating=True,
            options=("dry-run", "reason"),
        ),
        Verb("watches", "viewer", "watches", "what is watched in this workspace", "/ts watches"),
        Verb(
            "request",
            "viewer",
            "request ID",
            "status of an asynchronous ThingSpace request",
            "/ts request 595f5c44-c31c-4552-8670-020a1545a84d",
        ),
        Verb(
            "history",
            "viewer",
            "history [TARGET] [--user @u] [--since 24h] [--limit N]",
            "who did what, when and why (the audit log)",
            "/ts history iccid:89148000000800139708 --since 7d",
            options=("user", "since", "limit"),
        ),
    )
}


def needed_role(verb: str) -> str | None:
    return VERBS[verb].role


def role_of(grants: Grants, *, user: str, groups: Iterable[str], channel: str) -> str | None:
    """The highest role granted to the user, one of their groups, or the channel."""
    ids = {user, channel, *groups}
    best: str | None = None
    for role in ROLES:
        if grants.ids_for(role) & ids:
            best = role
    return best


def may_run(role: str | None, verb: str) -> bool:
    need = VERBS[verb].role
    if need is None:
        return True
    if role is None:
        return False
    return _RANK[role] >= _RANK[need]


def verbs_for(role: str | None) -> list[Verb]:
    return [v for v in VERBS.values() if may_run(role, v.name)]
