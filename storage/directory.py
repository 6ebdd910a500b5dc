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
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage.db import select_in

__all__ = [
    "ID_KINDS",
    "SEARCH_COUNT_CAP",
    "DirectoryDevice",
    "ImeiChange",
    "SearchPage",
    "SyncMarks",
    "canonical_key",
    "count",
    "count_matches",
    "display",
    "find",
    "group_count",
    "group_member_rows",
    "group_members",
    "group_names",
    "groups",
    "imei_changes",
    "lookup",
    "lookup_many",
    "member_entry",
    "migrations",
    "save_sync_marks",
    "search",
    "search_text",
    "set_state",
    "size",
    "sync_marks",
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


#: Marks around each searchable value in ``devices.search`` (``\x02value\x03``), so the trigram
#: index answers "starts with" (``\x02q``) as well as "contains" (``q``); queries never contain them.
_START, _END = "\x02", "\x03"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: what separates the words of a label: ``gateway-0042`` starts a word at ``0042``
_WORD_BREAK = re.compile(r"[-_\s./:#]+")


def search_text(ids: Iterable[str], label: str, custom: Iterable[str], groups: Iterable[str]) -> str:
    """What the search index holds for one line: every identifier, the label, each custom field
    value and group, each marked as a whole value, plus each later word of the label marked as a
    start (so ``0042`` *starts* a word of ``gateway-0042``)."""
    label = _printable(label)
    values = dict.fromkeys(_printable(v).strip() for v in [*ids, label, *custom, *groups])
    out = [f"{_START}{v}{_END}" for v in values if v]
    out += [f"{_START}{w}" for w in dict.fromkeys(_WORD_BREAK.split(label)[1:]) if w]
    return "".join(out)


def _printable(value: str) -> str:
    """*value* without control characters (most values have none: no regex for them)."""
    return value if value.isprintable() else _CONTROL.sub("", value)


_BACKFILL_BATCH = 5000


@migrations()
def index_directory_for_search(db: Database) -> None:
    """An FTS5 trigram index over ``devices.search`` (SQLite 3.34+), kept in step by triggers, so
    ``find`` reads an index instead of scanning every line; and labels indexed case-insensitively
    for exact matches. Existing rows get their search text rewritten in batches.

    The index is tied to ``devices.rowid``; a ``VACUUM`` may renumber rowids, after which
    ``INSERT INTO devices_fts(devices_fts) VALUES ('rebuild')`` restores it."""
    columns = ", ".join(ID_KINDS)
    last = 0
    while True:
        rows = db.execute(
            f"SELECT rowid, {columns}, label, custom_json, groups_json FROM devices "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?",
            [last, _BACKFILL_BATCH],
        ).fetchall()
        if not rows:
            break
        n = len(ID_KINDS)
        db.conn.executemany(
            "UPDATE devices SET search = ? WHERE rowid = ?",
            [
                (
                    search_text(
                        [v for v in r[1 : 1 + n] if v],
                        r[1 + n],
                        json.loads(r[2 + n]).values(),
                        json.loads(r[3 + n]),
                    ),
                    r[0],
                )
                for r in rows
            ],
        )
        last = rows[-1][0]
    db.execute(
        "CREATE VIRTUAL TABLE devices_fts USING fts5("
        "search, content='devices', content_rowid='rowid', tokenize='trigram', columnsize=0)"
    )
    db.execute("INSERT INTO devices_fts (devices_fts) VALUES ('rebuild')")
    db.execute(
        """
        CREATE TRIGGER devices_fts_insert AFTER INSERT ON devices BEGIN
            INSERT INTO devices_fts (rowid, search) VALUES (new.rowid, new.search);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER devices_fts_delete AFTER DELETE ON devices BEGIN
            INSERT INTO devices_fts (devices_fts, rowid, search) VALUES ('delete', old.rowid, old.search);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER devices_fts_update AFTER UPDATE OF search ON devices
        WHEN old.search IS NOT new.search BEGIN
            INSERT INTO devices_fts (devices_fts, rowid, search) VALUES ('delete', old.rowid, old.search);
            INSERT INTO devices_fts (rowid, search) VALUES (new.rowid, new.search);
        END
        """
    )
    db.execute("CREATE INDEX devices_label ON devices (label COLLATE NOCASE)")


@migrations()
def create_sync_marks(db: Database) -> None:
    """Where the last syncs got to: the newest ``createdAt`` listed (an incremental sync asks
    ThingSpace only for lines added after it) and when the last complete sync ended."""
    db.execute(
        """
        CREATE TABLE directory_sync (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            newest_created TEXT,
            last_full_at REAL,
            last_at REAL,
            lines INTEGER NOT NULL DEFAULT 0
        )
        """
    )


@migrations()
def copy_line_facts_into_memberships(db: Database) -> None:
    """Each membership row also holds its line's label, state, auto-resume date and plan, under
    one index: resolving ``group:NAME`` then reads that index alone (a 100,000-line group in tens
    of milliseconds) instead of looking every member up in ``devices``. Writers keep both in step."""
    db.execute("ALTER TABLE device_groups ADD COLUMN label TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE device_groups ADD COLUMN state TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE device_groups ADD COLUMN resume_date TEXT")
    db.execute("ALTER TABLE device_groups ADD COLUMN plan TEXT NOT NULL DEFAULT ''")
    db.execute(
        "UPDATE device_groups SET (label, state, resume_date, plan) = "
        "(SELECT d.label, d.state, d.resume_date, d.plan FROM devices d WHERE d.key = device_groups.key)"
    )
    db.execute(
        "CREATE INDEX device_groups_members ON device_groups (name, key, label, state, resume_date, plan)"
    )


@dataclass(frozen=True)
class SyncMarks:
    """What :func:`sync_marks` reads: ``newest_created`` (ISO 8601, ThingSpace's clock), the epoch
    seconds the last complete and the last sync of any kind ended, and how many lines it read."""

    newest_created: str | None = None
    last_full_at: float | None = None
    last_at: float | None = None
    lines: int = 0


def sync_marks(db: Database) -> SyncMarks:
    row = db.execute(
        "SELECT newest_created, last_full_at, last_at, lines FROM directory_sync WHERE id = 1"
    ).fetchone()
    return SyncMarks(*row) if row else SyncMarks()


def save_sync_marks(db: Database, *, newest_created: str | None, full: bool, lines: int, now: float) -> None:
    """Record a finished sync; ``newest_created`` only moves forward."""
    db.execute(
        """
        INSERT INTO directory_sync (id, newest_created, last_full_at, last_at, lines) VALUES (1, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            newest_created = CASE
                WHEN excluded.newest_created IS NULL THEN directory_sync.newest_created
                WHEN directory_sync.newest_created IS NULL THEN excluded.newest_created
                ELSE max(directory_sync.newest_created, excluded.newest_created) END,
            last_full_at = coalesce(excluded.last_full_at, directory_sync.last_full_at),
            last_at = excluded.last_at,
            lines = excluded.lines
        """,
        [newest_created, now if full else None, now, lines],
    )


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
        return display(self.label, self.key)


def display(label: str, key: str) -> str:
    """``tracker-0042 (iccid …9708)``: a line's label and masked key, for lists."""
    kind, _, value = key.partition(":")
    short = f"{kind} …{value[-4:]}" if len(value) > 4 else key
    return f"{label} ({short})" if label else short


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

_SELECT_BY_ROWID = "SELECT rowid, " + _SELECT.removeprefix("SELECT ") + " WHERE rowid IN ({marks})"


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


#: rows written per statement batch by :func:`upsert_devices`
UPSERT_CHUNK = 500


@dataclass(frozen=True)
class _Prepared:
    key: str
    values: list[Any]
    imei: str | None
    groups: list[str]
    groups_json: str
    label: str
    state: str
    resume_date: str | None
    plan: str


def _prepare(device: Mapping[str, Any], now: float) -> _Prepared:
    ids = {k.lower(): str(v) for k, v in dict(device["ids"]).items() if v}
    key = canonical_key(ids)
    custom = {str(k): str(v) for k, v in dict(device.get("custom") or {}).items()}
    groups = [str(g) for g in device.get("groups") or []]
    label = str(device.get("label") or next(iter(custom.values()), ""))
    search = search_text([ids[k] for k in ID_KINDS if ids.get(k)], label, custom.values(), groups)
    groups_json = json.dumps(groups)
    values: list[Any] = [key, *(ids.get(k) for k in ID_KINDS)]
    values += [str(device.get("state") or ""), str(device.get("plan") or ""), label]
    values += [groups_json, json.dumps(custom), search]
    values += [device.get("last_connection"), device.get("resume_date"), now]
    state, plan = str(device.get("state") or ""), str(device.get("plan") or "")
    return _Prepared(
        key, values, ids.get("imei"), groups, groups_json, label, state, device.get("resume_date"), plan
    )


_COLUMNS = [
    "key",
    *ID_KINDS,
    *("state", "plan", "label", "groups_json", "custom_json", "search"),
    *("last_connection", "resume_date", "synced_at"),
]
_UPSERT = (
    f"INSERT INTO devices ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:] if c != "resume_date")
    + ", resume_date = coalesce(excluded.resume_date, devices.resume_date)"
)


def _write_chunk(db: Database, chunk: dict[str, _Prepared], now: float) -> None:
    stored = {
        str(r[0]): r[1:]
        for r in select_in(
            db,
            "SELECT key, imei, groups_json, label, state, resume_date, plan FROM devices WHERE key IN ({marks})",
            list(chunk),
        )
    }
    changes = [
        (p.key, stored[p.key][0], p.imei, now)
        for p in chunk.values()
        if p.imei and p.key in stored and stored[p.key][0] and stored[p.key][0] != p.imei
    ]
    conn = db.conn
    if changes:
        conn.executemany(
            "INSERT INTO device_imei_changes (key, previous_imei, imei, changed_at) VALUES (?, ?, ?, ?)",
            changes,
        )
    conn.executemany(_UPSERT, [p.values for p in chunk.values()])
    regroup: list[tuple[_Prepared, str | None]] = []
    refresh: list[tuple[str, str, str | None, str, str]] = []
    for p in chunk.values():
        before = stored.get(p.key)
        # the upsert keeps a stored auto-resume date when the listing gives none
        resume = p.resume_date if p.resume_date is not None or before is None else before[4]
        if before is None or before[1] != p.groups_json:
            regroup.append((p, resume))
        elif (before[2], before[3], before[4], before[5]) != (p.label, p.state, resume, p.plan):
            refresh.append((p.label, p.state, resume, p.plan, p.key))
    if regroup:
        conn.executemany("DELETE FROM device_groups WHERE key = ?", [(p.key,) for p, _ in regroup])
        conn.executemany(
            "INSERT INTO device_groups (name, key, label, state, resume_date, plan) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(g.lower(), p.key, p.label, p.state, resume, p.plan) for p, resume in regroup for g in p.groups],
        )
    if refresh:
        conn.executemany(
            "UPDATE device_groups SET label = ?, state = ?, resume_date = ?, plan = ? WHERE key = ?", refresh
        )


def upsert_devices(db: Database, devices: Iterable[Mapping[str, Any]], *, now: float | None = None) -> int:
    """Insert or refresh devices. Each mapping has ``ids`` and optionally ``state``, ``plan``,
    ``groups``, ``custom`` (name -> value), ``label``, ``last_connection``, ``resume_date``.

    A known line that comes with another IMEI than the stored one gets an :class:`ImeiChange`
    row (at ``now``) before its IMEI is overwritten; an IMEI that is missing is no change.

    Written :data:`UPSERT_CHUNK` rows per statement batch: one read of the stored IMEIs and
    groups, one upsert, and group rows rewritten only for lines whose groups changed, so a sync
    of an unchanged fleet costs little more than reading it (the search index is rewritten
    only for lines whose searchable text changed, see the update trigger)."""
    now = time.time() if now is None else now
    n = 0
    chunk: dict[str, _Prepared] = {}
    for device in devices:
        prepared = _prepare(device, now)
        if prepared.key in chunk or len(chunk) >= UPSERT_CHUNK:
            _write_chunk(db, chunk, now)
            chunk = {}
        chunk[prepared.key] = prepared
        n += 1
    if chunk:
        _write_chunk(db, chunk, now)
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


#: ``find`` counts matches up to this many; beyond it the count says "more than"
SEARCH_COUNT_CAP = 10_000
#: the most exact matches (one id, or one label shared by many lines) a search ranks first
_EXACT_MAX = 1000

#: ranking tiers: an identifier or label that is exactly the text, then a value or label word
#: that starts with it, then any other match
EXACT, PREFIX, SUBSTRING = 0, 1, 2


@dataclass(frozen=True)
class SearchPage:
    """One page of :func:`search`: the devices, best first; how many match in all (``total``,
    exact unless ``capped``: then at least that many); and where the next page starts
    (``None`` when this is the last)."""

    devices: list[DirectoryDevice]
    total: int
    capped: bool
    after: tuple[int, int] | None


def _phrase(text: str) -> str:
    """An FTS5 phrase matching *text* literally (``%``, ``_``, ``*``, ``:`` have no meaning inside)."""
    return '"' + text.replace('"', '""') + '"'


def _needle(text: str) -> str:
    return _CONTROL.sub("", text).strip()


def _exact_rowids(db: Database, needle: str) -> list[int]:
    """Rowids of lines with an identifier or a label that is exactly *needle* (indexed lookups)."""
    parts = [f"SELECT rowid FROM devices WHERE {kind} IN (?, ?)" for kind in ID_KINDS]
    parts.append("SELECT rowid FROM devices WHERE label = ? COLLATE NOCASE")
    params: list[Any] = []
    for _ in ID_KINDS:
        params += [needle, needle.upper()]
    params.append(needle)
    sql = " UNION ".join(parts) + f" ORDER BY 1 LIMIT {_EXACT_MAX}"
    return [int(r[0]) for r in db.execute(sql, params).fetchall()]


def _tier_rowids(db: Database, tier: int, needle: str, after: int, limit: int) -> list[int]:
    match = {
        PREFIX: _phrase(_START + needle),
        SUBSTRING: f"{_phrase(needle)} NOT {_phrase(_START + needle)}",
    }[tier]
    rows = db.execute(
        "SELECT rowid FROM devices_fts WHERE devices_fts MATCH ? AND rowid > ? ORDER BY rowid LIMIT ?",
        [match, after, limit],
    ).fetchall()
    return [int(r[0]) for r in rows]


#: a text this long is looked up by its last :data:`_WINDOW` characters, then checked whole
_LONG = 9
_WINDOW = 6
_CANDIDATES_MAX = 2000


def _candidates(db: Database, needle: str) -> list[tuple[int, str]] | None:
    """For a long text, ``(rowid, search text)`` of the lines containing it, or None.

    Identifiers share long prefixes (every ICCID of an account starts ``8914800000``), so the
    trigrams of ``8914800000123`` each occur in nearly every line and a phrase query over all of
    them reads the whole index. Its last characters are the distinctive part: the lines that
    contain those (at most :data:`_CANDIDATES_MAX`, else None and the caller asks the index for
    the whole text) are checked for the whole text here."""
    if len(needle) < _LONG:
        return None
    rows = db.execute(
        "SELECT rowid, search FROM devices_fts WHERE devices_fts MATCH ? LIMIT ?",
        [_phrase(needle[-_WINDOW:]), _CANDIDATES_MAX + 1],
    ).fetchall()
    if len(rows) > _CANDIDATES_MAX:
        return None
    folded = needle.casefold()
    return [(int(r[0]), str(r[1])) for r in rows if folded in str(r[1]).casefold()]


def count_matches(db: Database, text: str, *, cap: int = SEARCH_COUNT_CAP) -> tuple[int, bool]:
    """How many lines :func:`search` finds for *text*, read from the index: ``(n, capped)``."""
    needle = _needle(text)
    if len(needle) < 3:
        return 0, False
    n = int(
        db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM devices_fts WHERE devices_fts MATCH ? LIMIT ?)",
            [_phrase(needle), cap + 1],
        ).fetchone()[0]
    )
    return (cap, True) if n > cap else (n, False)


def search(db: Database, text: str, *, limit: int = 20, after: tuple[int, int] | None = None) -> SearchPage:
    """Lines whose identifiers, label, custom fields or groups contain *text* (at least three
    characters; case-insensitive), read from the trigram index, ranked: an identifier or label
    that is exactly the text first, then values and label words that start with it
    (``gateway-0042`` for ``0042``), then the rest; within a rank, in directory order.

    *after* is the previous page's :attr:`SearchPage.after`, so a "More" button continues
    where the page ended without counting or skipping rows."""
    needle = _needle(text)
    if len(needle) < 3:
        return SearchPage([], 0, False, None)
    tier, last = after or (EXACT, 0)
    exact = _exact_rowids(db, needle)
    exact_set = set(exact)
    want = limit + 1
    picked: list[tuple[int, int]] = []  # (tier, rowid), one more than asked for
    found = _candidates(db, needle)
    if found is not None:
        start = _START + needle.casefold()
        ranked = sorted(
            (EXACT if r in exact_set else PREFIX if start in text.casefold() else SUBSTRING, r)
            for r, text in found
        )
        total, capped = len(ranked), False
        picked = [x for x in ranked if x > (tier, last)][:want]
    else:
        total, capped = count_matches(db, needle)
        if total == 0:
            return SearchPage([], 0, False, None)
        if tier == EXACT:
            picked += [(EXACT, r) for r in exact if r > last][:want]
            tier, last = PREFIX, 0
    while found is None and tier <= SUBSTRING and len(picked) < want:
        need = want - len(picked)
        skip = len(exact_set) if tier == PREFIX else 0  # exact matches also "start with" the text
        rows = _tier_rowids(db, tier, needle, last, need + skip)
        fresh = [r for r in rows if not skip or r not in exact_set]
        picked += [(tier, r) for r in fresh[:need]]
        if len(picked) >= want:
            break
        if len(rows) == need + skip:  # the batch was all used up by skipped rows: read on
            last = rows[-1]
            continue
        tier, last = tier + 1, 0
    more = len(picked) > limit
    picked = picked[:limit]
    by_rowid = {int(r[0]): _row(r[1:]) for r in select_in(db, _SELECT_BY_ROWID, [r for _, r in picked])}
    devices = [by_rowid[r] for _, r in picked if r in by_rowid]
    return SearchPage(devices, max(total, len(devices)), capped, picked[-1] if more and picked else None)


def find(db: Database, text: str, *, limit: int = 20) -> tuple[list[DirectoryDevice], int]:
    """The first *limit* lines :func:`search` finds for *text*, and how many match (capped)."""
    page = search(db, text, limit=limit)
    return page.devices, page.total


def by_label(db: Database, label: str) -> list[DirectoryDevice]:
    """The lines whose label is *label* (any case); more than one when labels repeat."""
    rows = db.execute(
        f"{_SELECT} WHERE label = ? COLLATE NOCASE ORDER BY key LIMIT 3", [label.strip()]
    ).fetchall()
    return [_row(r) for r in rows]


def group_members(db: Database, name: str) -> list[DirectoryDevice]:
    rows = db.execute(
        f"{_SELECT} WHERE key IN (SELECT key FROM device_groups WHERE name = ?) ORDER BY key", [name.lower()]
    ).fetchall()
    return [_row(r) for r in rows]


def group_count(db: Database, name: str) -> int:
    """How many lines are in group *name* (read from the membership index alone)."""
    row = db.execute("SELECT count(*) FROM device_groups WHERE name = ?", [name.lower()]).fetchone()
    return int(row[0])


def member_entry(
    key: str, label: str, state: str, resume_date: str | None, plan: str = ""
) -> DirectoryDevice:
    """A partial entry for a group member read by :func:`group_member_rows`: its key's identifier,
    label, state, auto-resume date and plan, without groups or custom fields. Built without the
    dataclass's per-field checks, since a ``group:`` target may hold 100,000 of them."""
    kind, _, value = key.partition(":")
    entry: DirectoryDevice = object.__new__(DirectoryDevice)
    entry.__dict__.update(
        key=key,
        ids={kind: value},
        state=state,
        plan=plan,
        label=label,
        groups=[],
        custom={},
        last_connection=None,
        resume_date=resume_date,
        synced_at=None,
    )
    return entry


def group_member_rows(db: Database, name: str) -> list[tuple[str, str, str, str | None, str]]:
    """``(key, label, state, resume_date, plan)`` of each line in group *name*, by key: what
    resolving a ``group:`` target needs, read from the membership index alone."""
    rows: list[tuple[str, str, str, str | None, str]] = db.execute(
        "SELECT key, label, state, resume_date, plan FROM device_groups WHERE name = ? ORDER BY key",
        [name.lower()],
    ).fetchall()
    return rows


def groups(db: Database) -> list[tuple[str, int]]:
    """Every group and its size (reads the whole membership index: not for the ack path)."""
    rows = db.execute("SELECT name, count(*) FROM device_groups GROUP BY name ORDER BY name").fetchall()
    return [(r[0], int(r[1])) for r in rows]


def group_names(db: Database, *, limit: int = 1000) -> list[str]:
    """The first *limit* group names in order, one index seek each (a loose index scan), so the
    cost follows the number of groups, not of lines."""
    rows = db.execute(
        """
        WITH RECURSIVE named(name) AS (
            SELECT min(name) FROM device_groups
            UNION ALL
            SELECT (SELECT min(name) FROM device_groups WHERE name > named.name) FROM named
            WHERE named.name IS NOT NULL
        )
        SELECT name FROM named WHERE name IS NOT NULL LIMIT ?
        """,
        [limit],
    ).fetchall()
    return [str(r[0]) for r in rows]


def set_state(db: Database, key: str, state: str, *, resume_date: str | None = None) -> None:
    for table in ("devices", "device_groups"):
        if resume_date is None:
            db.execute(f"UPDATE {table} SET state = ? WHERE key = ?", [state, key])
        else:
            db.execute(
                f"UPDATE {table} SET state = ?, resume_date = ? WHERE key = ?", [state, resume_date, key]
            )


def count(db: Database) -> int:
    """How many lines the directory holds, counted (reads an index end to end: not for the ack path)."""
    return int(db.execute("SELECT count(*) FROM devices").fetchone()[0])


def size(db: Database) -> int:
    """How many lines the directory holds, from one index seek: lines are never deleted (one that
    left the account is marked :data:`GONE`) and an upsert keeps its rowid, so the largest rowid
    is the count."""
    return int(db.execute("SELECT coalesce(max(rowid), 0) FROM devices").fetchone()[0])


#: the state of a line the last complete sync did not list: it left the account
GONE = "gone"


def mark_missing(db: Database, *, synced_before: float) -> int:
    """Lines a complete sync did not list (not refreshed since *synced_before*): state ``gone``
    and in no group any more, so ``group:NAME`` stops resolving them (nor ``find`` by a group
    name). Returns how many; reads them :data:`_BACKFILL_BATCH` at a time."""
    n_kinds = len(ID_KINDS)
    total = 0
    while True:
        rows = db.execute(
            f"SELECT rowid, key, {', '.join(ID_KINDS)}, label, custom_json FROM devices "
            "WHERE synced_at < ? AND state != ? LIMIT ?",
            [synced_before, GONE, _BACKFILL_BATCH],
        ).fetchall()
        if not rows:
            return total
        db.conn.executemany("DELETE FROM device_groups WHERE key = ?", [(r[1],) for r in rows])
        db.conn.executemany(
            "UPDATE devices SET state = ?, groups_json = '[]', search = ? WHERE rowid = ?",
            [
                (
                    GONE,
                    search_text(
                        [v for v in r[2 : 2 + n_kinds] if v],
                        r[2 + n_kinds],
                        json.loads(r[3 + n_kinds]).values(),
                        [],
                    ),
                    r[0],
                )
                for r in rows
            ],
        )
        total += len(rows)
