"""Refreshing the local device directory from ThingSpace (at start and on a schedule)."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlite_utils import Database

from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.models import Device
from storage import directory
from storage.db import write

__all__ = ["device_row", "sync_directory"]

log = logging.getLogger(__name__)

BATCH = 1000


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


def sync_directory(client: ThingSpaceClient, db: Database) -> int:
    """Page through the account's devices and upsert them; returns how many were seen."""
    started = time.monotonic()
    sync_started = time.time()  # the clock upsert_devices stamps synced_at with
    batch: list[dict[str, Any]] = []
    total = 0
    for device in client.list_devices():
        if not device.ids:
            continue
        batch.append(device_row(device))
        if len(batch) >= BATCH:
            with write(db):
                total += directory.upsert_devices(db, batch)
            batch = []
    if batch:
        with write(db):
            total += directory.upsert_devices(db, batch)
    with write(db):  # the listing was complete: whatever it did not name left the account
        gone = directory.mark_missing(db, synced_before=sync_started)
    if gone:
        log.warning("%d line(s) are no longer in the account; taken out of their groups", gone)
    log.info("directory synced: %d devices in %.1f s", total, time.monotonic() - started)
    return total
