"""The sandbox's fleet is made on demand from each line's index: identifiers map back to it,
creation order pages from a cursor, and a million lines cost their seed bytes, not a build."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.sandbox.fleet import EXAMPLE_ICCID, MAX_DEVICES, Fleet, build_fleet

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("count", [1, 5, 17, 18, 40, 300])
def test_every_identifier_and_label_maps_back_to_its_line(count: int) -> None:
    fleet = Fleet(count, 3, START)
    for index in range(count):
        line = fleet.static(index)
        for kind, value in line.ids().items():
            assert fleet.lookup(kind, value) == index, (kind, value)
        assert fleet.lookup("imei", line.spare_imei) == index
        assert fleet.label_index(line.label.upper()) == index
    assert fleet.lookup("iccid", EXAMPLE_ICCID) == 0
    assert fleet.lookup("iccid", "89148000000000000001") is None
    assert fleet.lookup("mdn", "12") is None and fleet.label_index("tracker-99999999") is None


@pytest.mark.parametrize("count", [1, 17, 18, 200, 3000])
def test_creation_order_is_complete_sorted_and_starts_after_a_cursor(count: int) -> None:
    fleet = Fleet(count, 2, START)
    order = list(fleet.created_order())
    assert sorted(order) == list(range(count))
    dates = [fleet.created(i) for i in order]
    assert dates == sorted(dates) and len(set(dates)) == count
    for cursor in (dates[0] - timedelta(days=1), dates[len(dates) // 2], dates[-1]):
        assert list(fleet.created_order(cursor)) == [i for i in order if fleet.created(i) > cursor]
    if count >= 40:  # ages are spread over the fleet, not in index order
        assert order[17:40] != sorted(order[17:40])


def test_lines_are_the_same_whatever_the_fleet_size_and_kept_lines_stay_changed() -> None:
    small, large = build_fleet(60, 1, START), Fleet(5000, 1, START)
    assert [(d.iccid, d.site, d.type.name, d.base_condition) for d in small] == [
        (d.iccid, d.site, d.type.name, d.base_condition) for d in map(large.static, range(60))
    ]
    kept = large[42]
    kept.state = "suspend"
    assert large.peek(42) is kept and large[42].state == "suspend"
    assert large.peek(43) is not large.peek(43)  # not kept: made afresh


def test_a_million_lines_start_in_well_under_a_second_and_are_found_by_id() -> None:
    began = time.perf_counter()
    fleet = Fleet(MAX_DEVICES, 1, START)
    assert time.perf_counter() - began < 2.0
    last = fleet.static(MAX_DEVICES - 1)
    imeis = {fleet.static(i).imei for i in range(0, MAX_DEVICES, 997)}
    assert len(imeis) == len(range(0, MAX_DEVICES, 997))  # a TAC block per million serials: no repeats
    assert fleet.lookup("imei", last.imei) == MAX_DEVICES - 1
    assert fleet.lookup("mdn", last.mdn) == MAX_DEVICES - 1
    assert not fleet.live
    with pytest.raises(ValueError, match="between 1 and 1000000"):
        Fleet(MAX_DEVICES + 1, 1, START)
