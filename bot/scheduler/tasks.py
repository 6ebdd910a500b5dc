"""Scheduled tasks: what the scheduler runs, and the tasks of the bot's core upkeep.

A :class:`ScheduledTask` is an id, a function of :class:`~commands.context.Deps`, and an interval.
Task functions are module-level, take their dependencies (and ``now`` where time matters), and
are listed explicitly: :func:`upkeep_tasks` here, :func:`bot.inbox.unanswered.scheduled_tasks` and
:func:`bot.scheduler.reachability_tasks.scheduled_tasks`; the composition root hands the whole
list to :func:`bot.scheduler.build.build_scheduler`. ("Job" means a row of the command worker's
queue, :mod:`storage.jobs`; APScheduler's own word for a scheduled function stays inside
:mod:`bot.scheduler.build`.)"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core.config import Settings
from bot.core.directory_sync import full_sync_due, sync_directory
from bot.scheduler.sync_process import SyncFailed, SyncStopped, log_failure
from commands.actions import expire_approvals
from commands.context import Deps
from storage import memberships, seen
from storage.audit.log import AuditLog, apply_retention, archive_folder, default_archive_path
from storage.db import write

__all__ = [
    "DEFINITIVE_GROUP_ERRORS",
    "ScheduledTask",
    "audit_anchor_task",
    "audit_retention_task",
    "housekeeping_task",
    "refresh_memberships_task",
    "sync_directory_task",
    "upkeep_tasks",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledTask:
    """Run ``func(deps)`` every *every*, under the id *id* (its name in logs, metrics and the
    lease's run records); ``at_start`` runs it once as soon as the scheduler starts too."""

    id: str
    func: Callable[..., Any]
    every: timedelta
    at_start: bool = False


#: runs one directory sync, complete or not, and waits for it (the composition root passes
#: :meth:`bot.scheduler.sync_process.DirectorySync.run`, which runs it in a process of its own)
SyncRun = Callable[..., int | None]


def sync_directory_task(deps: Deps, now: float | None = None, *, run: SyncRun | None = None) -> None:
    """A complete sync when the last one is older than ``[directory] full_sync_every``, else
    only the lines added since the last sync. Run by *run* (``run(complete=…)``), or without
    one here, in this thread, with progress to the ``directory_sync`` hook. A sync that fails is
    logged once; the next run tries again."""
    db = deps.db()
    now = time.time() if now is None else now
    complete = full_sync_due(db, deps.settings.directory_full_sync_every, now)
    if run is None:
        sync_directory(
            deps.thingspace, db, complete=complete, on_progress=lambda p: deps.hook("directory_sync", p)
        )
        return
    try:
        run(complete=complete)
    except SyncStopped:
        log.info("the directory sync stopped with the bot")
    except SyncFailed as failure:
        log_failure(
            log,
            "directory sync failed; find and group targets use what is stored until the next one",
            failure,
        )


#: Slack errors that answer the question "who is in this group": the group does not exist (any
#: more), so it has no members. Every other error (``ratelimited``, a 5xx, a timeout, an auth
#: problem) says nothing about membership, and the last known members are kept.
DEFINITIVE_GROUP_ERRORS = frozenset({"no_such_subteam"})


def refresh_memberships_task(deps: Deps) -> None:
    """Fetch members of every user group named in the grants.

    Only a definitive answer replaces what is stored: a member list, or Slack saying the group does
    not exist. A temporary failure keeps the last known members (revoking everyone's grants
    because Slack rate-limited one call would be worse than a few minutes of staleness) for up to
    :data:`storage.memberships.MAX_AGE`, after which they stop counting (fail closed); a group
    never fetched has no members, so its grants deny until the first answer (default deny).
    """
    grants = deps.settings.grants
    group_ids = sorted(
        {i for role in ("viewer", "operator", "admin") for i in grants.ids_for(role) if i.startswith("S")}
    )
    if group_ids and deps.slack is None:
        raise RuntimeError("reading user groups needs a Slack client")
    db = deps.db()
    for group_id in group_ids:
        assert deps.slack is not None
        try:
            answer = deps.slack.usergroups_users_list(usergroup=group_id)
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


def housekeeping_task(deps: Deps, now: float | None = None) -> None:
    db = deps.db()
    with write(db):
        seen.prune(db, now=time.time() if now is None else now)


def audit_anchor_task(deps: Deps) -> None:
    """Confirm the audit head file for rows appended inside other transactions (cheap, every minute)."""
    AuditLog(deps.db()).anchor()


def audit_retention_task(deps: Deps, now: datetime | None = None) -> None:
    """Export and remove audit rows older than ``[audit] retention``, re-anchoring the chain."""
    retention = deps.settings.audit_retention
    if retention.total_seconds() <= 0:
        return
    now = datetime.now(UTC) if now is None else now
    db = deps.db()
    folder = archive_folder(deps.settings.db_path, deps.settings.audit_archive_dir)
    folder.mkdir(parents=True, exist_ok=True)
    result = apply_retention(db, older_than=now - retention, archive_path=default_archive_path(folder, now))
    log.info("audit retention: %s", result)


def upkeep_tasks(settings: Settings, *, sync_run: SyncRun | None = None) -> list[ScheduledTask]:
    """The bot's own upkeep: directory sync (run by *sync_run*, else in the scheduler's thread),
    user-group members, housekeeping, the audit head file and retention, and approvals nobody
    decided."""
    approval_every = max(1, min(60, int(settings.approval_ttl.total_seconds() // 4)))
    sync = sync_directory_task if sync_run is None else functools.partial(sync_directory_task, run=sync_run)
    return [
        ScheduledTask("directory-sync", sync, settings.directory_sync_every),
        # at start too: until the first answer, grants naming user groups match nobody
        ScheduledTask("memberships-refresh", refresh_memberships_task, timedelta(minutes=10), at_start=True),
        ScheduledTask("housekeeping", housekeeping_task, timedelta(minutes=10)),
        ScheduledTask("audit-anchor", audit_anchor_task, timedelta(minutes=1)),
        ScheduledTask("audit-retention", audit_retention_task, timedelta(days=1)),
        ScheduledTask("approval-expiry", expire_approvals, timedelta(seconds=approval_every)),
    ]
