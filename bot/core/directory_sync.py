"""Refreshing the local device directory from ThingSpace (at start and on a schedule).

The listing is read page by page (ThingSpace sends at most 2,000 lines per page) and written in
short transactions, so memory stays one page whatever the fleet, and a slash command never waits
long for the database while a million-line sync runs: each transaction is sized to take about
:data:`WRITE_SECONDS` (between :data:`MIN_BATCH` and :data:`BATCH` lines).

ThingSpace's device list filters only by when a line was *added* (``earliest``), not by when it
changed, so there are two kinds of sync:

* **complete** — the whole account; lines it does not list are marked gone. At start, and
  whenever the last complete sync is older than ``[directory] full_sync_every``
  (:func:`full_sync_due`).
* **incremental** — only lines added since the newest ``createdAt`` seen (less a minute, for
  clocks that disagree), on every other ``[directory] sync_every`` tick. State changes made
  elsewhere reach the directory through ThingSpace's callbacks in between.

:func:`sync_directory` runs one sync wherever it is called; the bot runs it in a process of its
own (:mod:`bot.scheduler.sync_process`), which passes *write_turn* (wait for the serving
process's writers before each transaction) and *read_ahead* (fetch the next page while this one
is written). Progress (lines read, pages, lines per second) goes to the log every
:data:`LOG_EVERY` lines and to *on_progress* after every page (the app points it at
``/metrics``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.models import Device, DevicePage
from storage import directory
from storage.db import write

__all__ = ["BATCH", "SyncProgress", "device_row", "full_sync_due", "sync_directory"]

log = logging.getLogger(__name__)

#: the most lines per write transaction (a page)
BATCH = 2000
#: the fewest lines per write transaction
MIN_BATCH = 50
#: a write transaction is sized to take about this long (unless its turn gives it another
#: budget), so a command's write never waits long
WRITE_SECONDS = 0.05
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


def full_sync_due(db: Database, every: timedelta, now: float) -> bool:
    """Whether the next sync should be complete: none has been yet, or the last one is older than
    *every* (``[directory] full_sync_every``)."""
    last_full = directory.sync_marks(db).last_full_at
    return last_full is None or now - last_full >= every.total_seconds()


def sync_directory(
    client: ThingSpaceClient,
    db: Database,
    *,
    complete: bool = True,
    on_progress: Callable[[SyncProgress], None] | None = None,
    write_turn: Callable[[], AbstractContextManager[float | None]] = nullcontext,
    read_ahead: Callable[[Iterator[DevicePage]], Iterator[DevicePage]] | None = None,
) -> int:
    """Page through the account's devices (all of them, or with ``complete=False`` only those
    added since the last sync saw its newest line) and upsert them; returns how many were read.

    Every write transaction is taken inside ``write_turn()``, which gives the seconds it may
    take (None: :data:`WRITE_SECONDS`); *read_ahead*, if given, wraps the page iterator (to fetch
    the next page while this one is written)."""
    marks = directory.sync_marks(db)
    earliest: datetime | None = None
    if not complete and marks.newest_created:
        earliest = datetime.fromisoformat(marks.newest_created) - OVERLAP
    complete = complete or earliest is None  # nothing to start from: read everything
    progress = SyncProgress(complete=complete, started=time.monotonic())
    sync_started = time.time()  # the clock upsert_devices stamps synced_at with
    newest: datetime | None = None
    logged = 0
    pace = _Pace()
    pages = client.device_pages(earliest=earliest)
    for page in pages if read_ahead is None else read_ahead(pages):
        rows = [device_row(d) for d in page.devices if d.ids]
        for d in page.devices:
            if d.created_at is not None and (newest is None or d.created_at > newest):
                newest = d.created_at
        done = 0
        while done < len(rows):
            with write_turn() as budget:
                batch = rows[done : done + pace.lines_for(WRITE_SECONDS if budget is None else budget)]
                began = time.monotonic()
                with write(db):
                    progress.lines += directory.upsert_devices(db, batch)
                pace.observe(len(batch), time.monotonic() - began)
            done += len(batch)
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
    with write_turn(), write(db):
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


class _Pace:
    """How many lines a write transaction can take in a given time: seconds per line, averaged
    over the last transactions of at least :data:`MIN_BATCH` lines."""

    def __init__(self) -> None:
        self.per_line: float | None = None

    def lines_for(self, seconds: float) -> int:
        if self.per_line is None:
            return MIN_BATCH
        return max(MIN_BATCH, min(BATCH, int(seconds / self.per_line)))

    def observe(self, lines: int, took: float) -> None:
        if lines < MIN_BATCH:
            return
        now = max(took, 1e-4) / lines
        self.per_line = now if self.per_line is None else 0.7 * self.per_line + 0.3 * now
