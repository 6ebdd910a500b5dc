"""The audit log's duties at start-up: recording the configuration the bot runs with.

Who may do what is decided by the configuration (``[grants]``) and a few settings (approval size,
channels, retention, the callback allowlist). An auditor reading the log after an incident must
see when those changed, so every start records one ``config.load`` row (actor ``system``):

* ``grants``: role → the Slack ids granted it, in full;
* ``settings``: every other setting that is not a credential (tokens, secrets, passwords,
  usernames and client ids are left out by name; ``callback_rotation_open`` only says
  whether a second callback password is accepted);
* ``digest``: ``sha256`` of the canonical JSON of the two above, so equal configurations are
  seen equal at a glance;
* ``changes``: against the previous ``config.load`` row: grants added and removed per role,
  settings changed (from, to); ``{"first": true}`` when the log holds no earlier load (the
  first start, or retention archived it). The row's ``reason`` says the same in one line.

The bot reads its configuration only at start (there is no reload signal), so a restart is
how a configuration change takes effect, and each one is recorded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import fields
from datetime import timedelta
from typing import Any

from sqlite_utils import Database

from bot.core.config import ROLES, Settings
from storage.audit.events import canonical_json
from storage.audit.log import AuditEvent, AuditLog, Verb

__all__ = ["config_summary", "record_config_load"]

#: Settings never recorded: credentials, whatever their value.
_CREDENTIAL = re.compile(r"token|secret|password|username|client_id", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _value(value: Any) -> Any:
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    if isinstance(value, bool | int | float) or value is None:
        return value
    return _URL_USERINFO.sub("", str(value))


def config_summary(settings: Settings) -> dict[str, Any]:
    """``{"grants": …, "settings": …, "digest": …}`` of *settings*, without any credential."""
    grants = {role: sorted(settings.grants.ids_for(role)) for role in ROLES}
    values: dict[str, Any] = {}
    for f in fields(settings):
        if f.name == "grants" or _CREDENTIAL.search(f.name):
            continue
        values[f.name] = _value(getattr(settings, f.name))
    values["callback_rotation_open"] = bool(settings.callback_password_previous)
    digest = hashlib.sha256(canonical_json({"grants": grants, "settings": values}).encode()).hexdigest()
    return {"grants": grants, "settings": values, "digest": digest}


def _changes(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    old_grants, new_grants = previous.get("grants") or {}, current["grants"]
    added = {r: sorted(set(new_grants[r]) - set(old_grants.get(r) or [])) for r in ROLES}
    removed = {r: sorted(set(old_grants.get(r) or []) - set(new_grants[r])) for r in ROLES}
    if any(added.values()):
        changes["grants_added"] = {r: ids for r, ids in added.items() if ids}
    if any(removed.values()):
        changes["grants_removed"] = {r: ids for r, ids in removed.items() if ids}
    old_values, new_values = previous.get("settings") or {}, current["settings"]
    changed = {
        name: {"from": old_values.get(name), "to": new_values.get(name)}
        for name in sorted(set(old_values) | set(new_values))
        if old_values.get(name) != new_values.get(name)
    }
    if changed:
        changes["settings_changed"] = changed
    return changes


def _reason(changes: dict[str, Any], previous_id: int | None) -> str:
    if previous_id is None:
        return "configuration loaded at start; no earlier load in the log"
    parts = [
        f"{sign}{slack_id} {role}"
        for key, sign in (("grants_added", "+"), ("grants_removed", "-"))
        for role, ids in changes.get(key, {}).items()
        for slack_id in ids
    ]
    grants = f"grants {', '.join(parts)}" if parts else ""
    settings = ", ".join(changes.get("settings_changed", {}))
    said = "; ".join(p for p in (grants, f"settings changed: {settings}" if settings else "") if p)
    return f"configuration loaded at start; since row {previous_id}: {said or 'unchanged'}"


def record_config_load(db: Database, settings: Settings) -> int:
    """Record the configuration the bot starts with (see the module docstring); returns the row id."""
    log = AuditLog(db)
    summary = config_summary(settings)
    earlier = log.query(verb=Verb.CONFIG_LOAD, limit=1)
    previous_id = earlier[0].id if earlier else None
    changes = _changes(earlier[0].detail, summary) if earlier else {"first": True}
    detail = {
        "source": settings.config_path or "(environment only)",
        **summary,
        "changes": changes,
        "previous_id": previous_id,
    }
    return log.record(
        AuditEvent.system(Verb.CONFIG_LOAD, reason=_reason(changes, previous_id), detail=detail)
    )
