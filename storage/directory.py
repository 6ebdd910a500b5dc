"""The device directory: a local copy of the account's lines, for search and target resolution.

Synced from ThingSpace at start and on a schedule; kept current between syncs by the bot's own
results (callbacks). ``find`` matches partial identifiers, labels, custom fields and groups, so
an on-call engineer with only "the ICCID ends in 9708" gets the line.

Rows are plain data (this package knows nothing of ThingSpace's client): ``ids`` maps an
identifier kind (``iccid``, ``mdn``, ``imei``…) to its value; the canonical ``key`` is
``iccid:<ICCID>`` when the ICCID is known, otherwise the first identifier.

A sync overwrites a line's IMEI with the one ThingSpace reports now; when that differs from the
stored one, :func:`upsert_devices` first records the change (``device_imei_changes``: previous
IMEI, new IMEI, when the bot saw it), so ``diag`` can still say "IMEI changed from … to … on …"
after the next sync (:func:`imei_changes`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import select_in

__all__ = [
    "ID_KINDS",
    "DirectoryDevice",
    "ImeiChange",
    "canonical_key",
    "count",
    "find",
    "group_members",
    "groups",
    "imei_changes",
    "lookup",
    "lookup_many",
    "migrations",
    "set_state",
    "upsert_devices",
]

migrations = Migrations("tsbot.directory")

ID_KINDS = ("iccid", "mdn", "msisdn", "imei", "imsi", "meid", "esn", "eid", "min")


@migrations()
def create_directory(db: Database) -> None:
    kinds = ",\n".join(f"{k} TEXT" for k in ID_KINDS)
    db.execute(
        f"""
        CREATE TABLE devices (
            key TEXT PRIMARY KEY,
            {kinds},
            state TEXT NOT NULL DEFAULT '',
            plan TEXT NOT NULL DEFAULT '',
            label TEXT NOT NULL DEFAULT '',
            groups_json TEXT NOT NULL DEFAULT '[]',
            custom_json TEXT NOT NULL DEFAULT '{{}}',
            search TEXT NOT NULL DEFAULT '',
            last_connection TEXT,
            resume_date TEXT,
            synced_at REAL NOT NULL
        )
        """
    )
    for kind in ID_KINDS:
        db.execute(f"CREATE INDEX devices_{kind} ON devices ({kind})")
    db.execute(
        """
        CREATE TABLE device_groups (
            name TEXT NOT NULL,
            key TEXT NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
            PRIMARY KEY (name, key)
        )
        """
    )


@migrations()
def index_device_groups_by_device(db: Database) -> None:
    """Replacing a device's groups deletes by ``key``; without this index each upsert scanned
    the whole table (a 25,000-line sync took 33 s instead of 2 s)."""
    db.execute("CREATE INDEX device_groups_key ON device_groups (key)")


@migrations()
def create_device_imei_changes(db: Database) -> None:
    """The IMEIs a line had before: one row each time a sync or lookup saw a new one."""
    db.execute(
        """
        CREATE TABLE device_imei_changes (
            key TEXT NOT NULL REFERENCES devices (key) ON DELETE CASCADE,
            previous_imei TEXT NOT NULL,
            imei TEXT NOT NULL,
            changed_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX device_imei_changes_key ON device_imei_changes (key, changed_at)")


@dataclass(frozen=True)
class DirectoryDevice:
    key: str
    ids: dict[str, str]
    state: str
    plan: str
    label: str
    groups: list[str] = field(default_factory=list)
    custom: dict[str, str] = field(default_factory=dict)
    last_connection: str | None = None
    resume_date: str | None = None
    #: when a sync (or a lookup) last wrote this row, epoch seconds
    synced_at: float | None = None

    @property
    def display(self) -> str:
        """``tracker-0042 (…9708)``: label and masked key, for lists."""
        kind, _, value = self.key.partition(":")
        short = f"{kind} …{value[-4:]}" if len(value) > 4 else self.key
        return f"{self.label} ({short})" if self.label else short


def canonical_key(ids: Mapping[str, str]) -> str:
    if ids.get("iccid"):
        return f"iccid:{ids['iccid']}"
    for kind in ID_KINDS:
        if ids.get(kind):
            return f"{kind}:{ids[kind]}"
    raise ValueError("a device needs at least one identifier")


@dataclass(frozen=True)
class ImeiChange:
    """A line seen with a new IMEI: ``previous`` and ``imei``, and when the bot saw it (epoch s)."""

    key: str
    previous: str
    imei: str
    changed_at: float


_SELECT = (
    "SELECT key, " + ", ".join(ID_KINDS) + ", state, plan, label, groups_json, custom_json, last_connection, "
    "resume_date, synced_at FROM devices"
)


def _row(r: Sequence[Any]) -> DirectoryDevice:
    n = len(ID_KINDS)
    ids = {kind: value for kind, value in zip(ID_KINDS, r[1 : 1 + n], strict=True) if value}
    rest = r[1 + n :]
    return DirectoryDevice(
        key=r[0],
        ids=ids,
        state=rest[0],
        plan=rest[1],
        label=rest[2],
        groups=json.loads(rest[3]),
        custom=json.loads(rest[4]),
        last_connection=rest[5],
        resume_date=rest[6],
        synced_at=rest[7],
    )


def upsert_devices(db: Database, devices: Iterable[Mapping[str, Any]], *, now: float | None = None) -> int:
    """Insert or refresh devices. Each mapping has ``ids`` and optionally ``state``, ``plan``,
    ``groups``, ``custom`` (name -> value), ``label``, ``last_connection``, ``resume_date``.

    A known line that comes with another IMEI than the stored one gets an :class:`ImeiChange`
    row (at ``now``) before its IMEI is overwritten; an IMEI that is missing is no change."""
    now = time.time() if now is None else now
    n = 0
    columns = ["key", *ID_KINDS, "state", "plan", "label", "groups_json", "custom_json", "search"]
    columns += ["last_connection", "resume_date", "synced_at"]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:] if c != "resume_date")
    sql = (
        f"INSERT INTO devices ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (key) DO UPDATE SET {updates}, "
        "resume_date = coalesce(excluded.resume_date, devices.resume_date)"
    )
    record_change = (
        "INSERT INTO device_imei_changes (key, previous_imei, imei, changed_at) "
        "SELECT key, imei, ?, ? FROM devices WHERE key = ? AND imei IS NOT NULL AND imei != '' AND imei != ?"
    )
    for device in devices:
        ids = {k.lower(): str(v) for k, v in dict(device["ids"]).items() if v}
        key = canonical_key(ids)
        custom = {str(k): str(v) for k, v in dict(device.get("custom") or {}).items()}
        groups = [str(g) for g in device.get("groups") or []]
        label = str(device.get("label") or next(iter(custom.values()), ""))
        search = " ".join([label, *custom.values(), *groups]).lower()
        values: list[Any] = [key, *(ids.get(k) for k in ID_KINDS)]
        values += [str(device.get("state") or ""), str(device.get("plan") or ""), label]
        values += [json.dumps(groups), json.dumps(custom), search]
        values += [device.get("last_connection"), device.get("resume_date"), now]
        imei = ids.get("imei")
        if imei:
            db.execute(record_change, [imei, now, key, imei])
        db.execute(sql, values)
        db.execute("DELETE FROM device_groups WHERE key = ?", [key])
        db.conn.executemany(
            "INSERT INTO device_groups (name, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(g.lower(), key) for g in groups],
        )
        n += 1
    return n


def lookup(db: Database, kind: str, value: str) -> DirectoryDevice | None:
    kind = kind.lower()
    if kind not in ID_KINDS:
        return None
    row = db.execute(f"{_SELECT} WHERE {kind} = ?", [value]).fetchone()
    return _row(row) if row else None


def lookup_many(db: Database, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], DirectoryDevice]:
    """Look up many (kind, id) pairs; missing ones are absent from the result."""
    found: dict[tuple[str, str], DirectoryDevice] = {}
    by_kind: dict[str, list[str]] = {}
    for kind, value in refs:
        by_kind.setdefault(kind.lower(), []).append(value)
    for kind, values in by_kind.items():
        if kind not in ID_KINDS:
            continue
        for row in select_in(db, f"{_SELECT} WHERE {kind} IN ({{marks}})", values):
            device = _row(row)
            found[(kind, device.ids[kind])] = device
    return found


def imei_changes(db: Database, key: str, *, since: float | None = None) -> list[ImeiChange]:
    """The IMEI changes recorded for the line ``key``, newest first (only those at/after ``since``)."""
    sql = "SELECT key, previous_imei, imei, changed_at FROM device_imei_changes WHERE key = ?"
    params: list[Any] = [key]
    if since is not None:
        sql += " AND changed_at >= ?"
        params.append(since)
    rows = db.execute(sql + " ORDER BY changed_at DESC, rowid DESC", params).fetchall()
    return [ImeiChange(r[0], r[1], r[2], float(r[3])) for r in rows]


def find(db: Database, text: str, *, limit: int = 20) -> tuple[list[DirectoryDevice], int]:
    """Devices whose identifiers contain *text* (digits) or whose label, custom fields or groups
    contain it. Returns (first *limit* matches, total match count)."""
    needle = text.strip().lower()
    if not needle:
        return [], 0
    like = f"%{needle.replace('%', '').replace('_', '')}%"
    id_match = " OR ".join(f"lower({k}) LIKE :like" for k in ID_KINDS)
    where = f"({id_match}) OR search LIKE :like"
    total = int(db.execute(f"SELECT count(*) FROM devices WHERE {where}", {"like": like}).fetchone()[0])
    rows = db.execute(
        f"{_SELECT} WHERE {where} ORDER BY label, key LIMIT :limit", {"like": like, "limit": limit}
    ).fetchall()
    return [_row(r) for r in rows], total


def by_label(db: Database, label: str) -> list[DirectoryDevice]:
    """The lines whose label is *label* (any case); more than one when labels repeat."""
    rows = db.execute(
        f"{_SELECT} WHERE lower(label) = ? ORDER BY key LIMIT 3", [label.strip().lower()]
    ).fetchall()
    return [_row(r) for r in rows]


def group_members(db: Database, name: str) -> list[DirectoryDevice]:
    rows = db.execute(
        f"{_SELECT} WHERE key IN (SELECT key FROM device_groups WHERE name = ?) ORDER BY key", [name.lower()]
    ).fetchall()
    return [_row(r) for r in rows]


def groups(db: Database) -> list[tuple[str, int]]:
    rows = db.execute("SELECT name, count(*) FROM device_groups GROUP BY name ORDER BY name").fetchall()
    return [(r[0], int(r[1])) for r in rows]


def set_state(db: Database, key: str, state: str, *, resume_date: str | None = None) -> None:
    if resume_date is None:
        db.execute("UPDATE devices SET state = ? WHERE key = ?", [state, key])
    else:
        db.execute("UPDATE devices SET state = ?, resume_date = ? WHERE key = ?", [state, resume_date, key])


def count(db: Database) -> int:
    return int(db.execute("SELECT count(*) FROM devices").fetchone()[0])


#: the state of a line the last complete sync did not list: it left the account
GONE = "gone"


def mark_missing(db: Database, *, synced_before: float) -> list[str]:
    """Lines a complete sync did not list (not refreshed since *synced_before*): state ``gone``
    and in no group any more, so ``group:NAME`` stops resolving them. Returns their keys."""
    keys = [
        str(r[0])
        for r in db.execute(
            "SELECT key FROM devices WHERE synced_at < ? AND state != ?", [synced_before, GONE]
        ).fetchall()
    ]
    for key in keys:
        db.execute("DELETE FROM device_groups WHERE key = ?", [key])
        db.execute("UPDATE devices SET state = ?, groups_json = '[]' WHERE key = ?", [GONE, key])
    return keys
