"""Queries over the per-device outcomes of tracked requests (``ts_request_devices``) that the
callback worker and the no-result job need in bulk: find a device among several candidate keys,
count outcomes by status and failure reason in SQL (a 10,000-device request is tallied without
loading its rows), and settle still-pending devices in one statement.

The tables belong to :mod:`storage.requests`; this module only reads them and updates outcome
columns, in the caller's transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlite_utils import Database

__all__ = ["devices_with_status", "find_device", "settle_pending", "status_groups", "statuses"]


def find_device(db: Database, request_id: str, candidates: Iterable[str]) -> tuple[str, str] | None:
    """The first of *candidates* (device keys, in order) that belongs to the request:
    ``(key, status)``, or None."""
    keys = list(dict.fromkeys(candidates))
    if not keys:
        return None
    marks = ",".join("?" * len(keys))
    rows = db.execute(
        f"SELECT device, status FROM ts_request_devices WHERE request_id = ? AND device IN ({marks})",
        [request_id, *keys],
    ).fetchall()
    found = {str(r[0]): str(r[1]) for r in rows}
    for key in keys:
        if key in found:
            return key, found[key]
    return None


def status_groups(db: Database, request_id: str | Sequence[str]) -> list[tuple[str, str, str, int]]:
    """``(status, reason, code, count)`` for the devices of a request — or of several, the parts
    of one bulk action, counted together (reason and code from the outcome detail, ``""`` when
    absent)."""
    ids = [request_id] if isinstance(request_id, str) else list(request_id)
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        f"""
        SELECT status,
               coalesce(json_extract(detail, '$.reason'), ''),
               coalesce(json_extract(detail, '$.code'), ''),
               count(*)
        FROM ts_request_devices WHERE request_id IN ({marks})
        GROUP BY 1, 2, 3
        """,
        ids,
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


def devices_with_status(db: Database, request_id: str, statuses: Sequence[str]) -> list[str]:
    """The request's device keys whose status is one of *statuses*, in key order."""
    if not statuses:
        return []
    marks = ",".join("?" * len(statuses))
    rows = db.execute(
        f"SELECT device FROM ts_request_devices WHERE request_id = ? AND status IN ({marks}) ORDER BY device",
        [request_id, *statuses],
    ).fetchall()
    return [str(r[0]) for r in rows]


def statuses(db: Database, request_id: str, devices: Sequence[str]) -> list[tuple[str, str]]:
    """``(device, status)`` of the given devices of the request."""
    if not devices:
        return []
    marks = ",".join("?" * len(devices))
    rows = db.execute(
        f"SELECT device, status FROM ts_request_devices WHERE request_id = ? AND device IN ({marks})",
        [request_id, *devices],
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def settle_pending(
    db: Database,
    request_id: str,
    status: str,
    detail: Mapping[str, Any],
    *,
    devices: Sequence[str] | None = None,
    now: float | None = None,
) -> int:
    """Give every still-``pending`` device of the request (or only *devices*) *status*; devices
    that have answered meanwhile are left alone. Returns how many changed."""
    now = time.time() if now is None else now
    text = json.dumps(dict(detail))
    if devices is None:
        cursor = db.execute(
            "UPDATE ts_request_devices SET status = ?, detail = ?, updated_at = ? "
            "WHERE request_id = ? AND status = 'pending'",
            [status, text, now, request_id],
        )
        return int(cursor.rowcount)
    changed = 0
    for device in devices:
        cursor = db.execute(
            "UPDATE ts_request_devices SET status = ?, detail = ?, updated_at = ? "
            "WHERE request_id = ? AND device = ? AND status = 'pending'",
            [status, text, now, request_id, device],
        )
        changed += int(cursor.rowcount)
    return changed
