"""Who may run what: roles, their order, and a user's role here (default deny).

Roles are ordered ``viewer < operator < admin``. A user's role is the highest one granted to
their user ID, any of their user groups, or the channel the command runs in. Someone with no
grant at all may only run what needs no role (``help``). What each verb needs is its
:class:`~commands.context.VerbSpec` row in :data:`commands.registry.VERBS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bot.core.config import ROLES, Grants
from commands.context import Deps, VerbSpec
from storage import memberships

__all__ = ["may_run", "role_of", "user_role", "verbs_for"]

_RANK = {role: i for i, role in enumerate(ROLES, start=1)}


def role_of(grants: Grants, *, user: str, groups: Iterable[str], channel: str) -> str | None:
    """The highest role granted to the user, one of their groups, or the channel."""
    ids = {user, channel, *groups}
    best: str | None = None
    for role in ROLES:
        if grants.ids_for(role) & ids:
            best = role
    return best


def user_role(deps: Deps, user: str, channel: str) -> str | None:
    """*user*'s role in *channel*, with the members of the user groups named in the grants."""
    groups: set[str] = set()
    if deps.settings.grants.mentions_groups():
        groups = memberships.groups_of(deps.db(), user)  # wall clock, like the refresh that wrote them
    return role_of(deps.settings.grants, user=user, groups=groups, channel=channel)


def may_run(role: str | None, needed: str | None) -> bool:
    """Whether *role* is at least *needed* (None: anyone may)."""
    if needed is None:
        return True
    if role is None:
        return False
    return _RANK[role] >= _RANK[needed]


def verbs_for(verbs: Mapping[str, VerbSpec], role: str | None) -> list[VerbSpec]:
    """The rows of *verbs* that *role* may run, in table order."""
    return [v for v in verbs.values() if may_run(role, v.role)]
