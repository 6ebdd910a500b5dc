"""Refreshing the local device directory from ThingSpace (at start and on a schedule).

The listing is read page by page (ThingSpace sends at most 2,000 lines per page) and written in
short transactions of :data:`BATCH` lines, so memory stays one page whatever the fleet, and a
slash command never waits long for the database while a million-line sync runs.

ThingSpace's device list filters only by when a line was *added* (``earliest``), not by when it
changed, so there are two kinds of sync:

* **complete** — the whole account; lines it does not list are marked gone. At start, and
  whenever the last complete sync is older than ``[directory] full_sync_every``.
* **incremental** — only lines added since the newest ``createdAt`` seen (less a minute, for
  clocks that disagree), on every other ``[directory] sync_every`` tick. State changes made
  elsewhere reach the directory through ThingSpace's callbacks in between.

Between batches the sync pauses (:data:`YIELD`), so the acks of slash commands served by the
same process do not queue behind it. Progress (lines read, pages, lines per second) goes to the log every :data:`LOG_EVERY` lines and
to *on_progress* after every page (the app points it at ``/metrics``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.models import Device
from storage import directory
from storage.db import write

__all__ = ["BATCH", "SyncProgress", "device_row", "sync_directory"]

log = logging.getLogger(__name__)

#: lines per write transaction: short enough that a command's write never waits long
BATCH = 500
#: after each batch the sync pauses for this share of the time the batch took (a long sync
#: gives way to slash commands; 0.5 makes it about half again as long)
YIELD = 0.5
#: a progress line in the log every this many lines
LOG_EVERY = 50_000
#: an incremental sync asks for lines added this long before the newest one it saw
OVERLAP = timedelta(minutes=1)


@dataclass
class SyncProgress:
    """Where a running sync is; *done* once it has finished (then *gone* is known)."""

    complete: bool
    lines: int = 0
    pages: int = 0
    started: float = 0.0  # time.monotonic()
    done: bool = False
    gone: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def device_row(device: Device) -> dict[str, Any]:
    """A ThingSpace device as a directory row."""
    return {
        "ids": dict(device.ids),
        "state": device.state,
        "plan": device.service_plan,
        "groups": list(device.groups),
        "custom": dict(device.custom_fields),
        "label": device.label,
        "last_connection": device.last_connection.isoformat() if device.last_connection else None,
        "resume_date": device.extended_attributes.get("ResumeDate") or None,
    }


def _utc(moment: datetime) -> datetime:
    """*moment* in UTC (a naive one is taken as UTC), so stored marks compare as text."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def sync_directory(
    client: ThingSpaceClient,
    db: Database,
    *,
    complete: bool = True,
    on_progress: Callable[[SyncProgress], None] | None = None,
) -> int:
    """Page through the account's devices (all of them, or with ``complete=False`` only those
    added since the last sync saw its newest line) and upsert them; returns how many were read."""
    marks = directory.sync_marks(db)
    earliest: datetime | None = None
    if not complete and marks.newest_created:
        earliest = datetime.fromisoformat(marks.newest_created) - OVERLAP
    complete = complete or earliest is None  # nothing to start from: read everything
    progress = SyncProgress(complete=complete, started=time.monotonic())
    sync_started = time.time()  # the clock upsert_devices stamps synced_at with
    newest: datetime | None = None
    logged = 0
    for page in client.device_pages(earliest=earliest):
        rows = [device_row(d) for d in page.devices if d.ids]
        for d in page.devices:
            if d.created_at is not None and (newest is None or d.created_at > newest):
                newest = d.created_at
        for i in range(0, len(rows), BATCH):
            began = time.monotonic()
            with write(db):
                progress.lines += directory.upsert_devices(db, rows[i : i + BATCH])
            # step aside for as long again, times YIELD: slash commands in this process get the
            # interpreter and the database between batches instead of queueing behind the sync
            time.sleep((time.monotonic() - began) * YIELD)
        progress.pages += 1
        progress.seconds = time.monotonic() - progress.started
        if progress.lines - logged >= LOG_EVERY:
            logged = progress.lines
            log.info(
                "directory sync: %d lines read (%d pages, %.0f lines/s)",
                progress.lines,
                progress.pages,
                progress.rate,
            )
        if on_progress is not None:
            on_progress(progress)
    with write(db):
        if complete:  # the listing was complete: whatever it did not name left the account
            progress.gone = directory.mark_missing(db, synced_before=sync_started)
        directory.save_sync_marks(
            db,
            newest_created=_utc(newest).isoformat() if newest else None,
            full=complete,
            lines=progress.lines,
            now=time.time(),
        )
    if progress.gone:
        log.warning("%d line(s) are no longer in the account; taken out of their groups", progress.gone)
    progress.seconds = time.monotonic() - progress.started
    progress.done = True
    if on_progress is not None:
        on_progress(progress)
    log.info(
        "directory synced (%s): %d lines in %.1f s (%.0f lines/s)",
        "complete" if complete else "lines added since the last sync",
        progress.lines,
        progress.seconds,
        progress.rate,
    )
    return progress.lines
