"""Targets as typed: check digits, bare numbers that name one line, request ids (commands.targets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.render.blocks import from_slack
from bot.thingspace.ids import DeviceId, check_digit_problem, luhn_digit
from commands.grammar import TargetToken, UsageError
from commands.targets import resolve
from storage import directory
from storage.db import write
from storage.schema import open_database

GOOD_ICCID = "89148000003339904729"  # the sandbox's demo-pending line (valid check digit)
GOOD_IMEI = "354208118789560"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "t.db", synchronous="NORMAL")
    rows = [
        {
            "ids": {"iccid": GOOD_ICCID, "mdn": "9735845279", "min": "9735845279"},
            "state": "active",
            "label": "one",
        },
        {"ids": {"iccid": "89148000000800139708", "mdn": "2015550100"}, "state": "active", "label": "stolen"},
        {"ids": {"iccid": "89148000003339904711", "min": "2015550100"}, "state": "active", "label": "other"},
    ]
    with write(database):
        directory.upsert_devices(database, rows)
    yield database
    database.close()


def _resolve(db: Database, text: str) -> list[str]:
    return [d.key for d in resolve(db, [TargetToken(text)], verb="status", max_targets=10)]


def test_luhn_check_digits() -> None:
    assert luhn_digit(GOOD_ICCID[:-1]) == int(GOOD_ICCID[-1])
    assert luhn_digit(GOOD_IMEI[:-1]) == int(GOOD_IMEI[-1])
    assert check_digit_problem(DeviceId("imei", GOOD_IMEI)) is None
    problem = check_digit_problem(DeviceId("imei", GOOD_IMEI[:-1] + "1"))
    assert problem is not None and "would be 0, not 1" in problem
    assert check_digit_problem(DeviceId("mdn", "9735845279")) is None


def test_a_wrong_check_digit_is_refused_before_thingspace_unless_the_account_lists_the_line(
    db: Database,
) -> None:
    with pytest.raises(UsageError, match="fails its check digit"):
        _resolve(db, GOOD_ICCID[:-1] + "0")
    with pytest.raises(UsageError, match="IMEI ends in a Luhn check digit"):
        _resolve(db, "imei:" + GOOD_IMEI[:-1] + "1")
    # the design's example ICCID has no valid check digit, but the account lists it: it is taken
    assert _resolve(db, "89148000000800139708") == ["iccid:89148000000800139708"]


def test_a_bare_number_that_names_one_line_is_taken(db: Database) -> None:
    assert _resolve(db, "9735845279") == [f"iccid:{GOOD_ICCID}"]  # its MDN and its MIN: one line
    with pytest.raises(UsageError, match="names more than one line"):
        _resolve(db, "2015550100")  # the MDN of one line, the MIN of another
    with pytest.raises(UsageError, match="could be"):
        _resolve(db, "5550001111")  # no line at all: the prefix is still needed


def test_a_link_keeps_its_address_as_text() -> None:
    assert (
        from_slack("see <https://wiki.example/runbook|runbook>")
        == "see runbook (https://wiki.example/runbook)"
    )
    assert from_slack("at <http://x.example|x.example>") == "at x.example"
    assert from_slack("<https://x.example>") == "https://x.example"
