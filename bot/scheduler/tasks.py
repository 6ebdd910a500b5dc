"""Scheduled job functions: module-level, taking their dependencies (and ``now`` where time matters)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from bot.core.directory_sync import sync_directory
from storage import memberships, seen
from storage.audit.log import AuditLog, apply_retention, archive_folder, default_archive_path
from storage.db import write

if TYPE_CHECKING:
    from bot.app import Runtime

__all__ = [
    "DEFINITIVE_GROUP_ERRORS",
    "EXTRA_JOBS",
    "add_interval_job",
    "audit_anchor_job",
    "audit_retention_job",
    "housekeeping_job",
    "refresh_memberships_job",
    "sync_directory_job",
]

log = logging.getLogger(__name__)

#: Other modules append ``register(scheduler, runtime)`` functions here (reachability, digests).
EXTRA_JOBS: list[Callable[[Any, Runtime], None]] = []


def add_interval_job(
    scheduler: Any, func: Any, every: timedelta, job_id: str, args: list[Any], *, at_start: bool = False
) -> None:
    """Register *func* every *every* with an explicit id, ``coalesce``, ``max_instances=1`` and a
    misfire grace of half the interval (APScheduler's default of 1 s silently skips late runs)."""
    seconds = max(int(every.total_seconds()), 1)
    options: dict[str, Any] = {"next_run_time": datetime.now(UTC)} if at_start else {}
    scheduler.add_job(
        func,
        "interval",
        seconds=seconds,
        id=job_id,
        name=job_id,
        args=args,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=max(seconds // 2, 1),
        **options,
    )


def sync_directory_job(runtime: Runtime) -> None:
    sync_directory(runtime.thingspace, runtime.pool.get())


#: Slack errors that answer the question "who is in this group": the group does not exist (any
#: more), so it has no members. Every other error (``ratelimited``, a 5xx, a timeout, an auth
#: problem) says nothing about membership, and the last known members are kept.
DEFINITIVE_GROUP_ERRORS = frozenset({"no_such_subteam"})


def refresh_memberships_job(runtime: Runtime) -> None:
    """Fetch members of every user group named in the grants.

    Only a definitive answer replaces what is stored: a member list, or Slack saying the group does
    not exist. A temporary failure keeps the last known members (revoking everyone's grants
    because Slack rate-limited one call would be worse than a few minutes of staleness) for up to
    :data:`storage.memberships.MAX_AGE`, after which they stop counting (fail closed); a group
    never fetched has no members, so its grants deny until the first answer (default deny).
    """
    grants = runtime.settings.grants
    group_ids = sorted(
        {i for role in ("viewer", "operator", "admin") for i in grants.ids_for(role) if i.startswith("S")}
    )
    db = runtime.pool.get()
    for group_id in group_ids:
        try:
            answer = runtime.slack.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            if error not in DEFINITIVE_GROUP_ERRORS:
                log.warning(
                    "could not read members of user group %s (%s); keeping the last known members",
                    group_id,
                    error,
                )
                continue
            log.warning("user group %s does not exist (%s): its grants now match nobody", group_id, error)
            users: list[str] = []
        except Exception as exc:  # noqa: BLE001 - network trouble: keep what is known, try the next group
            log.warning(
                "could not reach Slack for the members of user group %s (%s); keeping the last known members",
                group_id,
                type(exc).__name__,
            )
            continue
        else:
            users = [str(u) for u in answer.get("users") or []]
        with write(db):
            memberships.replace_members(db, group_id, users)


def housekeeping_job(runtime: Runtime, now: float | None = None) -> None:
    db = runtime.pool.get()
    with write(db):
        seen.prune(db, now=time.time() if now is None else now)


def audit_anchor_job(runtime: Runtime) -> None:
    """Confirm the audit head file for rows appended inside other transactions (cheap, every minute)."""
    AuditLog(runtime.pool.get()).anchor()


def audit_retention_job(runtime: Runtime, now: datetime | None = None) -> None:
    """Export and remove audit rows older than ``[audit] retention``, re-anchoring the chain."""
    retention = runtime.settings.audit_retention
    if retention.total_seconds() <= 0:
        return
    now = datetime.now(UTC) if now is None else now
    db = runtime.pool.get()
    folder = archive_folder(runtime.settings.db_path, runtime.settings.audit_archive_dir)
    folder.mkdir(parents=True, exist_ok=True)
    result = apply_retention(db, older_than=now - retention, archive_path=default_archive_path(folder, now))
    log.info("audit retention: %s", result)
