"""``group:NAME`` targets resolved through the membership index on the ack path (real SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlite_utils import Database

from commands import guards
from commands.grammar import TargetToken, UsageError
from commands.targets import audit_targets, resolve
from storage import directory, requests
from storage.db import write
from storage.schema import open_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "bot.db")
    rows = [
        {
            "ids": {"iccid": f"8914800000{n:09d}1", "mdn": f"908{n:07d}"},
            "state": "suspend" if n % 10 == 0 else "active",
            "label": f"pump-{n:03d}",
            "plan": "M2M-NBIOT-10MB",
            "groups": ["Plant-7"] if n < 60 else ["depot"],
            "resume_date": "2027-02-23T00:00:00Z" if n % 10 == 0 else None,
        }
        for n in range(80)
    ]
    with write(database):
        directory.upsert_devices(database, rows)
    try:
        yield database
    finally:
        database.conn.close()


def tokens(*texts: str) -> list[TargetToken]:
    return [TargetToken(t) for t in texts]


def test_a_group_resolves_to_its_lines_with_their_state_and_labels(db: Database) -> None:
    devices = resolve(db, tokens("group:plant-7"), verb="suspend", max_targets=100)

    assert len(devices) == 60
    first = devices[0]
    assert first.from_group and first.in_directory
    assert first.label == "pump-000 (iccid …0001)"
    assert first.device_id.kind == "iccid" and first.device_id.id == first.key.split(":")[1]
    assert first.entry is not None and first.entry.state == "suspend"
    assert first.entry.plan == "M2M-NBIOT-10MB"  # what NIDD's guard reads
    checked = guards.check("suspend", devices, bot_actions_today={})
    assert len(checked.skipped) == 6 and len(checked.ok) == 54 and not checked.unknown
    assert "auto-resume 2027-02-23" in checked.skipped[0][1]


def test_a_group_over_the_limit_is_refused_by_its_count(db: Database) -> None:
    with pytest.raises(UsageError, match=r"group:plant-7 has 60 devices; one command may name at most 50"):
        resolve(db, tokens("group:plant-7"), verb="suspend", max_targets=50)
    with pytest.raises(UsageError, match=r"There is no device group `nowhere`. Groups: depot, "):
        resolve(db, tokens("group:nowhere"), verb="suspend", max_targets=50)
    with pytest.raises(UsageError, match=r"no device group `plant7`. Did you mean `group:plant-7`\?"):
        resolve(db, tokens("group:plant7"), verb="suspend", max_targets=50)


def test_audit_entries_on_the_ack_path_name_the_group_as_typed(db: Database) -> None:
    named = "iccid:89148000000000000701"
    typed = tokens("group:Plant-7", named)
    devices = resolve(db, typed, verb="suspend", max_targets=100)

    assert audit_targets(typed, devices) == ["group:plant-7", named]
    single = tokens(named)
    assert audit_targets(single, resolve(db, single, verb="suspend", max_targets=100)) == [named]


def test_todays_actions_for_a_long_list_come_from_one_read(db: Database) -> None:
    keys = [d.key for d in resolve(db, tokens("group:plant-7"), verb="suspend", max_targets=100)]
    with write(db):
        requests.add_request(
            db,
            request_id="req-1",
            verb="suspend",
            actor="U1",
            channel="C1",
            devices=keys[:3],
            thread_key=None,
        )
    many = [*keys, *(f"iccid:{n}" for n in range(3000))]  # past the IN-list size

    assert requests.actions_today(db, many, day_start=0) == dict.fromkeys(keys[:3], 1)
    assert requests.actions_today(db, keys[:5], day_start=0) == dict.fromkeys(keys[:3], 1)


def test_todays_actions_and_a_batchs_parts_are_read_through_indexes(db: Database) -> None:
    """A year of requests holds millions of request lines: today's actions start from today's
    requests (by time), and the parts of a bulk action from their thread."""
    with write(db):
        requests.add_request(
            db,
            request_id="req-1",
            verb="suspend",
            actor="U1",
            channel="C1",
            devices=["iccid:1"],
            thread_key="t",
        )
    tracked = requests.get_request(db, "req-1")
    assert tracked is not None
    ran: list[str] = []
    db.conn.set_trace_callback(ran.append)
    try:
        requests.actions_today(db, [f"iccid:{n}" for n in range(3000)], day_start=0)
        today = ran[-1]
        requests.batch(db, replace(tracked, detail={"batch": "b"}))
        batch = ran[-1]
    finally:
        db.conn.set_trace_callback(None)

    def plan(sql: str) -> str:
        return " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql))

    assert plan(today).startswith("SEARCH r USING INDEX ts_requests_created") and "SCAN" not in plan(today)
    assert "SEARCH ts_requests USING INDEX ts_requests_thread" in plan(batch)


def test_the_membership_index_follows_label_state_and_resume_date(db: Database) -> None:
    key = "iccid:89148000000000000011"

    def row() -> tuple[str, str, str, str | None]:
        return next(r[:4] for r in directory.group_member_rows(db, "plant-7") if r[0] == key)

    assert row() == (key, "pump-001", "active", None)
    with write(db):
        directory.set_state(db, key, "suspend", resume_date="2027-03-01T00:00:00Z")
    assert row() == (key, "pump-001", "suspend", "2027-03-01T00:00:00Z")
    line = {
        "ids": {"iccid": key.split(":")[1]},
        "state": "active",
        "label": "pump-one",
        "groups": ["Plant-7"],
    }
    with write(db):  # same groups, new label and state; no date listed: the stored one is kept
        directory.upsert_devices(db, [line])
    assert row() == (key, "pump-one", "active", "2027-03-01T00:00:00Z")
    with write(db):
        directory.upsert_devices(db, [{**line, "groups": ["plant-7", "north"], "state": "suspend"}])
    assert row()[2] == "suspend"
    assert [r[0] for r in directory.group_member_rows(db, "north")] == [key]
