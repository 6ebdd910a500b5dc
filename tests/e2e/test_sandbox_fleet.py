"""The seeded fleet and the read endpoints: determinism, groups, paging, filters, diagnostics."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.sandbox import EXAMPLE_ICCID, ManualClock, create_sandbox
from bot.sandbox.conditions import OVERDUE_FOR
from bot.sandbox.fleet import build_fleet
from tests.helpers.sandbox import ACCOUNT, START, Api, running_sandbox

LIST = "/m2m/v1/devices/actions/list"


def _all_ids(device: Any) -> list[str]:
    return list(device.ids().values())


def test_the_fleet_is_deterministic_for_a_seed() -> None:
    """The same (devices, seed) gives the same lines; another seed gives other ids but the same device #0."""
    one = build_fleet(300, 7, START)
    two = build_fleet(300, 7, START + timedelta(hours=5))
    other = build_fleet(300, 8, START)
    assert [_all_ids(d) for d in one] == [_all_ids(d) for d in two]
    assert [(d.custom, d.groups, d.created, d.base_condition) for d in one] == [
        (d.custom, d.groups, d.created, d.base_condition) for d in two
    ]
    assert [d.iccid for d in one] != [d.iccid for d in other]
    assert one[0].iccid == other[0].iccid == EXAMPLE_ICCID


def test_identifiers_are_unique_valid_and_only_device_zero_contains_9708() -> None:
    """Every id is unique per kind, has its kind's shape, and '9708' appears only in device #0's ICCID."""
    fleet = build_fleet(5000, 3, START)
    for kind, length in (("iccid", 20), ("mdn", 10), ("imsi", 15), ("imei", 15)):
        values = [getattr(d, kind) for d in fleet]
        assert len(set(values)) == len(values), kind
        assert all(len(v) == length and v.isdigit() for v in values), kind
    holders = [d.index for d in fleet if any("9708" in v for v in _all_ids(d))]
    assert holders == [0]
    assert {len(d.eid) for d in fleet if d.eid} == {32}
    assert {len(d.meid) for d in fleet if d.meid} == {14}


def test_groups_types_and_demo_devices() -> None:
    """plant-7 holds about 40 % of the fleet; meters are sleepy NB-IoT; the 15 demo devices are labelled."""
    fleet = build_fleet(4000, 1, START)
    plant = [d for d in fleet if "plant-7" in d.groups]
    assert 0.35 < len(plant) / len(fleet) < 0.45
    meters = [d for d in fleet if "meters" in d.groups]
    assert meters and all(d.type.sleepy and d.type.rat == "NB-IoT" for d in meters)
    assert any("trackers" in d.groups for d in fleet)
    assert fleet[0].label == "demo-usage-spike" and "trackers" in fleet[0].groups
    assert [d.label for d in fleet[:15]] == [
        "demo-usage-spike",
        "demo-healthy",
        "demo-suspended",
        "demo-pending",
        "demo-action-limit",
        "demo-hung",
        "demo-reconnect-loop",
        "demo-no-traffic",
        "demo-imei-mismatch",
        "demo-asleep",
        "demo-down",
        "demo-over-plan",
        "demo-wake-overdue",
        "demo-imei-changed",
        "demo-diag-unavailable",
    ]
    assert {d.site for d in fleet[11:15]} <= {"depot-1", "depot-2"}  # plant-7's count is not theirs
    assert 1 <= sum(d.flaky for d in plant) <= len(plant) // 100  # lines that fail their first action once
    assert not any(d.base_condition == "suspended" for d in plant)


def _page(api: Api, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.post(LIST, {"accountName": ACCOUNT, **body})
    return response.status_code, response.json()


def _device_id(record: dict[str, Any]) -> int:
    return int(next(a["value"] for a in record["extendedAttributes"] if a["key"] == "DeviceId"))


def test_paging_by_largest_device_id_seen() -> None:
    """2,500 lines come as 2,000 (202, hasMoreData) then 500 (200), sorted by DeviceId, none twice."""
    with running_sandbox(devices=2500) as (_, url, _clock), Api(url) as api:
        status, first = _page(api, {"largestDeviceIdSeen": 0})
        assert (status, first["hasMoreData"], len(first["devices"])) == (202, True, 2000)
        ids = [_device_id(d) for d in first["devices"]]
        assert ids == sorted(ids)
        status, second = _page(api, {"largestDeviceIdSeen": ids[-1]})
        assert (status, second["hasMoreData"], len(second["devices"])) == (200, False, 500)
        iccids = {
            next(i["id"] for i in d["deviceIds"] if i["kind"] == "iccid")
            for d in first["devices"] + second["devices"]
        }
        assert len(iccids) == 2500


def test_paging_by_date_added() -> None:
    """Without a cursor the list is sorted by createdAt; moving earliest to the last one pages on."""
    with running_sandbox(devices=250) as (_, url, _clock), Api(url) as api:
        seen: list[str] = []
        body: dict[str, Any] = {"maxNumberOfDevices": 100}
        while True:
            status, page = _page(api, body)
            created = [d["createdAt"] for d in page["devices"]]
            assert created == sorted(created)
            seen += created
            if not page["hasMoreData"]:
                assert status == 200
                break
            assert status == 202
            body["earliest"] = created[-1]
        assert len(seen) == len(set(seen)) == 250


def test_list_filters_and_single_lookup() -> None:
    """Group, state, custom-field and identifier filters narrow the list; deviceId returns one line."""
    with running_sandbox(devices=300) as (sandbox, url, _clock), Api(url) as api:
        _, meters = _page(api, {"groupName": "meters"})
        assert meters["devices"] and all("meters" in d["groupNames"] for d in meters["devices"])
        _, suspended = _page(api, {"currentState": "suspend"})
        assert suspended["devices"]
        assert all(d["carrierInformations"][0]["state"] == "suspend" for d in suspended["devices"])
        _, labelled = _page(api, {"customFields": [{"key": "CustomField1", "value": "demo-hung"}]})
        assert [c["value"] for c in labelled["devices"][0]["customFields"] if c["key"] == "CustomField1"] == [
            "demo-hung"
        ]
        _, found = _page(
            api, {"filter": {"deviceIdentifierFilters": [{"kind": "ICCID", "contains": "9708"}]}}
        )
        assert [i["id"] for d in found["devices"] for i in d["deviceIds"] if i["kind"] == "iccid"] == [
            EXAMPLE_ICCID
        ]
        _, single = _page(api, {"deviceId": {"id": EXAMPLE_ICCID, "kind": "Iccid"}})
        assert len(single["devices"]) == 1 and single["hasMoreData"] is False
        suspended_iccid = sandbox.demo_devices()["suspended"]["iccid"]
        _, lookup = _page(api, {"deviceId": {"id": suspended_iccid, "kind": "iccid"}})
        extended = {a["key"] for a in lookup["devices"][0]["extendedAttributes"]}
        assert extended == {"DeviceId", "LastDateSuspended", "ResumeDate"}
        _, none = _page(api, {"deviceId": {"id": "89148000000000000001", "kind": "iccid"}})
        assert none["devices"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"maxNumberOfDevices": 2001}, "INPUT_INVALID.MaxNumberOfDevices.Invalid"),
        ({"maxNumberOfDevices": 0}, "INPUT_INVALID.MaxNumberOfDevices.Invalid"),
        ({"accountName": "0000999999-00001"}, "REQUEST_FAILED.AccountNotFound"),
        ({"accountName": "123"}, "INPUT_INVALID.AccountName.Invalid"),
        ({"deviceId": {"id": "8914", "kind": "iccid"}}, "INPUT_INVALID.Device.Identifier.Invalid"),
        (
            {"deviceId": {"id": 89148000000800139708, "kind": "iccid"}},
            "INPUT_INVALID.Device.Identifier.Invalid",
        ),
        ({"deviceId": {"id": "1234", "kind": "serial"}}, "INPUT_INVALID.Device.Kind.Invalid"),
        ({"earliest": "yesterday"}, "INPUT_INVALID.Earliest.Invalid"),
        ({"customFields": [{"key": "Color", "value": "red"}]}, "INPUT_INVALID.CustomField.InvalidName"),
    ],
)
def test_list_rejects_bad_input(body: dict[str, Any], code: str) -> None:
    """Each malformed list request gets a 400 with its specific, service-prefixed errorCode."""
    with running_sandbox(devices=20) as (_, url, _clock), Api(url) as api:
        response = api.post(LIST, {"accountName": ACCOUNT, **body})
        assert response.status_code == 400
        assert response.json()["errorCode"] == f"UnifiedWebService.{code}"
        assert response.json()["errorMessage"]


def _expect(diag: dict[str, dict[str, str]], **wanted: str) -> None:
    flat = {key: value for category in diag.values() for key, value in category.items()}
    for key, value in wanted.items():
        assert flat[key] == value, (key, flat[key])


def test_extended_diagnostics_show_each_condition() -> None:
    """Every demo device's diagnostics and device record carry the signs of its condition: state and
    ``Connected`` (the network sees it) in the diagnostics, ``connected`` and ``lastConnectionDate``
    in the device list; no proposed Connectivity key is sent."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api:
        demo = sandbox.demo_devices()
        now = clock()

        def diag(condition: str) -> dict[str, dict[str, str]]:
            return api.diagnostics(demo[condition]["iccid"])

        def record(condition: str) -> dict[str, Any]:
            body = {"accountName": ACCOUNT, "deviceId": {"id": demo[condition]["iccid"], "kind": "iccid"}}
            [device] = api.post(LIST, body).json()["devices"]
            return dict(device)

        def last_seen(condition: str) -> timedelta:
            return now - datetime.fromisoformat(record(condition)["lastConnectionDate"])

        healthy = diag("healthy")
        assert set(healthy) == {"DeviceIdentifier", "Provisioning", "Connectivity", "Account"}
        assert set(healthy["Connectivity"]) == {"Connected"}
        _expect(healthy, DeviceState="active", Connected="true")
        assert record("healthy")["connected"] is True
        assert last_seen("healthy") < timedelta(hours=1)
        suspended = diag("suspended")
        _expect(suspended, DeviceState="suspend", Connected="false")
        resume = datetime.fromisoformat(suspended["Provisioning"]["ResumeDate"])
        assert resume - now == timedelta(days=70)
        _expect(diag("action-limit"), DeviceState="active")
        _expect(diag("hung"), Connected="true")
        assert record("hung")["connected"] is True
        assert last_seen("hung") == timedelta(hours=26)
        _expect(diag("no-traffic"), Connected="true")
        assert last_seen("no-traffic") == timedelta(days=4) - timedelta(seconds=1)
        _expect(diag("asleep"), Connected="true")
        assert timedelta(hours=6) < last_seen("asleep") < timedelta(hours=7)
        _expect(diag("down"), Connected="false")
        assert record("down")["connected"] is False
        assert last_seen("down") >= timedelta(days=3)
        swapped = diag("imei-mismatch")
        assert swapped["DeviceIdentifier"]["IMEI"] == sandbox.device("demo-imei-mismatch")["ids"]["imei"]


def test_extended_diagnostics_input_rules() -> None:
    """Only ICCID/IMEI/MDN/MEID/MSISDN are accepted, one device at a time, and unknown lines are named."""
    with running_sandbox(devices=20) as (sandbox, url, _clock), Api(url) as api:
        path = "/m2m/v1/devices/extendeddiagnostics/actions/list"
        imsi = sandbox.device("demo-healthy")["ids"]["imsi"]
        by_imsi = api.post(path, {"accountName": ACCOUNT, "deviceList": [{"id": imsi, "kind": "imsi"}]})
        assert by_imsi.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.Device.Kind.Invalid"
        two = api.post(
            path, {"accountName": ACCOUNT, "deviceList": [{"id": EXAMPLE_ICCID, "kind": "iccid"}] * 2}
        )
        assert two.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.NumberofDevices"
        unknown = api.post(
            path, {"accountName": ACCOUNT, "deviceList": [{"id": "5550000000", "kind": "mdn"}]}
        )
        assert unknown.status_code == 400
        assert unknown.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.DeviceNotFound"
        no_account = api.post(path, {"deviceList": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]})
        assert no_account.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.AccountName.Null"
        by_mdn = api.diagnostics(sandbox.device("demo-healthy")["ids"]["mdn"], kind="MDN")
        assert by_mdn["DeviceIdentifier"]["ICCID"] == sandbox.demo_devices()["healthy"]["iccid"]


def _events(api: Api, iccid: str, earliest: datetime, latest: datetime) -> list[tuple[datetime, str, int]]:
    response = api.post(
        "/m2m/v1/devices/connections/actions/listHistory",
        {
            "deviceId": {"id": iccid, "kind": "iccid"},
            "earliest": earliest.isoformat(),
            "latest": latest.isoformat(),
        },
    )
    assert response.status_code in (200, 202), response.text
    found = []
    for record in response.json()["connectionHistory"]:
        attrs = {a["key"]: a["value"] for a in record["connectionEventAttributes"]}
        # Verizon's key attributes: Event, Msisdn, FramedIpAddress in both; BytesUsed in Stop only
        assert {"Event", "Msisdn", "FramedIpAddress"} <= set(attrs)
        assert ("BytesUsed" in attrs) == (attrs["Event"] == "Stop"), attrs
        found.append(
            (datetime.fromisoformat(record["occurredAt"]), attrs["Event"], int(attrs.get("BytesUsed", 0)))
        )
    return found


def test_connection_history_matches_each_condition() -> None:
    """Start/Stop events: a 40 MB hour for the spike, nothing for 26 h when hung, ~30 sessions in a loop."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api:
        demo = sandbox.demo_devices()
        now = clock()
        spike = _events(api, demo["usage-spike"]["iccid"], now - timedelta(hours=6), now)
        stops = [(t, b) for t, e, b in spike if e == "Stop"]
        last_hour = sum(b for t, b in stops if t > now - timedelta(minutes=61))
        earlier = [b for t, b in stops if t < now - timedelta(hours=2)]
        assert last_hour > 20_000_000
        assert earlier and max(earlier) < 2_000_000
        hung = _events(api, demo["hung"]["iccid"], now - timedelta(hours=48), now)
        assert hung and hung[-1][1] == "Stop"
        assert hung[-1][0] == now - timedelta(hours=26)
        loop = _events(api, demo["reconnect-loop"]["iccid"], now - timedelta(hours=1), now)
        assert 25 <= sum(1 for _, e, _ in loop if e == "Start") <= 31
        healthy = _events(api, demo["healthy"]["iccid"], now - timedelta(hours=5), now)
        assert [e for _, e, _ in healthy][:2] in (["Start", "Stop"], ["Stop", "Start"])
        assert all(b == 0 for _, e, b in healthy if e == "Start")


def test_connection_history_pages_at_500_records() -> None:
    """A month of hourly sessions comes 500 records at a time with 202 until the last page."""
    with running_sandbox(devices=20) as (sandbox, url, clock), Api(url) as api:
        iccid = sandbox.demo_devices()["healthy"]["iccid"]
        now = clock()
        body = {
            "deviceId": {"id": iccid, "kind": "iccid"},
            "earliest": (now - timedelta(days=30)).isoformat(),
            "latest": now.isoformat(),
        }
        path = "/m2m/v1/devices/connections/actions/listHistory"
        first = api.post(path, body)
        assert first.status_code == 202
        assert len(first.json()["connectionHistory"]) == 500 and first.json()["hasMoreData"] is True
        body["earliest"] = first.json()["connectionHistory"][-1]["occurredAt"]
        second = api.post(path, body)
        assert (
            second.json()["connectionHistory"][0] == first.json()["connectionHistory"][-1]
        )  # earliest is inclusive


def _usage(api: Api, iccid: str, days: int, now: datetime) -> list[dict[str, Any]]:
    response = api.post(
        "/m2m/v1/devices/usage/actions/list",
        {
            "deviceId": {"id": iccid, "kind": "iccid"},
            "earliest": (now - timedelta(days=days)).isoformat(),
            "latest": now.isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    return list(response.json()["usageHistory"])


def test_usage_history_has_daily_records_consistent_with_conditions() -> None:
    """At least 14 daily records; the idle session moved nothing for days; a tracker uses about 24 MB a day."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api:
        demo = sandbox.demo_devices()
        now = clock()
        healthy = _usage(api, demo["healthy"]["iccid"], 20, now)
        assert len(healthy) >= 14
        assert [r["source"] for r in healthy] == ["Raw Usage"] * len(healthy)
        full_days = [r["bytesUsed"] for r in healthy[1:-1]]
        assert all(15_000_000 < b < 35_000_000 for b in full_days)
        assert healthy[0]["servicePlan"] == "M2M-LTEM-1GB"
        idle = _usage(api, demo["no-traffic"]["iccid"], 14, now)
        assert [r["bytesUsed"] for r in idle[-4:]] == [0, 0, 0, 0]
        assert idle[0]["bytesUsed"] > 0
        down = _usage(api, demo["down"]["iccid"], 14, now)
        assert down[-1]["bytesUsed"] == 0 and down[0]["bytesUsed"] > 0


def test_mismatch_list_and_account_info() -> None:
    """The IMEI change shows in the mismatch report; account info lists the plans with their sizes."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api:
        swapped = sandbox.device("demo-imei-mismatch")
        path = "/m2m/v1/devices/actions/list/imeiiccidmismatch"
        refused = api.post(path, {"accountName": ACCOUNT})  # the SDK makes filter required
        assert refused.status_code == 400 and "filter" in refused.json()["errorMessage"]
        window = {"earliest": "2020-01-01T00:00:00Z", "latest": "2030-01-01T00:00:00Z"}
        report = api.post(path, {"accountName": ACCOUNT, "filter": window}).json()
        row = next(r for r in report["devices"] if r["iccid"] == swapped["ids"]["iccid"])
        assert row["postImei"] == swapped["ids"]["imei"] and row["preImei"] != row["postImei"]
        assert set(row) == {
            "accountName",
            "mdn",
            "activationDate",
            "iccid",
            "preImei",
            "postImei",
            "simOtaDate",
        }
        account = api.get(f"/m2m/v1/accounts/{ACCOUNT}").json()
        assert account["accountName"] == ACCOUNT
        assert {p["code"] for p in account["servicePlans"]} >= {"M2M-LTEM-1GB", "M2M-NBIOT-10MB"}
        assert api.get("/m2m/v1/accounts/0000999999-00001").status_code == 400


def test_conditions_can_be_set_on_any_device() -> None:
    """set_condition turns an ordinary line hung, and back to healthy, as diagnostics show."""
    clock = ManualClock(START)
    sandbox = create_sandbox(devices=40, clock=clock)
    try:
        # an always-on line: a healthy sleepy meter is connected only while it is awake
        label = next(d.label for d in sandbox.state.devices if d.index >= 20 and not d.type.sleepy)
        sandbox.set_condition(label, "hung")
        assert sandbox.device(label)["profile"] == "hung"
        clock.advance(hours=2)
        assert sandbox.device(label)["connected"] is False
        sandbox.set_condition(label, "healthy")
        assert sandbox.device(label)["connected"] is True
        with pytest.raises(ValueError, match="unknown condition"):
            sandbox.set_condition(label, "haunted")
        with pytest.raises(LookupError):
            sandbox.set_condition("iccid:89148000000000000001", "hung")
    finally:
        sandbox.close()


def test_over_plan_line_is_over_an_allowance_only_the_plan_list_tells() -> None:
    """The over-plan line is on m2m4G (no size in the code); its cycle usage passes the plan's sizeKb."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api:
        line = sandbox.device("demo-over-plan")
        assert line["servicePlan"] == "m2m4G" and line["condition"] == "over-plan"
        plans = api.get(f"/m2m/v1/accounts/{ACCOUNT}").json()["servicePlans"]
        [plan] = [p for p in plans if p["code"] == "m2m4G"]
        allowance = int(plan["sizeKb"]) * 1024
        now = clock()
        cycle_start = now.replace(day=9, hour=0, minute=0, second=0)  # START is 2026-03-10 15:30
        records = _usage(api, line["ids"]["iccid"], 32, now)
        in_cycle = [r for r in records if datetime.fromisoformat(r["timestamp"]) >= cycle_start]
        used = sum(r["bytesUsed"] for r in in_cycle)
        assert allowance < used < 2 * allowance
        assert {r["servicePlan"] for r in records} == {"m2m4G"}
        days = [r["bytesUsed"] for r in records[1:-1]]
        assert max(days) < 1.5 * min(days)  # steady: over its plan, not a spike


def test_wake_overdue_line_was_last_seen_twenty_hours_ago() -> None:
    """The overdue meter woke every 12 h until 19.5 h ago and is not attached now."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api:
        iccid = sandbox.demo_devices()["wake-overdue"]["iccid"]
        _expect(api.diagnostics(iccid), Connected="false")
        body = {"accountName": ACCOUNT, "deviceId": {"id": iccid, "kind": "iccid"}}
        [device] = api.post(LIST, body).json()["devices"]
        assert device["connected"] is False
        last = datetime.fromisoformat(device["lastConnectionDate"])
        assert clock() - last == OVERDUE_FOR - timedelta(seconds=120)
        starts = [t for t, e, _ in _events(api, iccid, clock() - timedelta(days=3), clock()) if e == "Start"]
        assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(hours=12)] * 4


def test_imei_changed_line_takes_its_new_imei_once_listed_and_is_not_reported() -> None:
    """The seeded imei-changed line shows its old IMEI to the first device list, its new one after;
    ThingSpace's mismatch report never lists it."""
    with running_sandbox() as (sandbox, _url, _clock), Api(_url) as api:
        line = sandbox.state.by_label["demo-imei-changed"]
        old, new = line.original_imei, line.spare_imei
        assert sandbox.device("demo-imei-changed")["imeiChangePending"] is True
        _, page = _page(api, {"customFields": [{"key": "CustomField1", "value": "demo-imei-changed"}]})
        [listed] = page["devices"]
        assert {"id": old, "kind": "imei"} in listed["deviceIds"]
        assert sandbox.device("demo-imei-changed")["ids"]["imei"] == new
        _, again = _page(api, {"deviceId": {"id": line.iccid, "kind": "iccid"}})
        assert {"id": new, "kind": "imei"} in again["devices"][0]["deviceIds"]
        _, by_new = _page(api, {"deviceId": {"id": new, "kind": "imei"}})
        assert by_new["devices"] and not _page(api, {"deviceId": {"id": old, "kind": "imei"}})[1]["devices"]
        path = "/m2m/v1/devices/actions/list/imeiiccidmismatch"
        refused = api.post(path, {"accountName": ACCOUNT})  # the SDK makes filter required
        assert refused.status_code == 400 and "filter" in refused.json()["errorMessage"]
        window = {"earliest": "2020-01-01T00:00:00Z", "latest": "2030-01-01T00:00:00Z"}
        report = api.post(path, {"accountName": ACCOUNT, "filter": window}).json()
        assert line.iccid not in {r["iccid"] for r in report["devices"]}


def test_diag_unavailable_line_answers_500_to_its_per_line_reads() -> None:
    """Lookup, diagnostics and histories of the diag-unavailable line fail with HTTP 500; the device
    list and the mismatch report still answer, and other lines are not affected."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api:
        iccid = sandbox.demo_devices()["diag-unavailable"]["iccid"]
        device = {"id": iccid, "kind": "iccid"}
        window = {"earliest": (clock() - timedelta(days=1)).isoformat(), "latest": clock().isoformat()}
        for path, body in (
            (LIST, {"accountName": ACCOUNT, "deviceId": device}),
            (
                "/m2m/v1/devices/extendeddiagnostics/actions/list",
                {"accountName": ACCOUNT, "deviceList": [device]},
            ),
            ("/m2m/v1/devices/connections/actions/listHistory", {"deviceId": device, **window}),
            ("/m2m/v1/devices/usage/actions/list", {"deviceId": device, **window}),
        ):
            answer = api.post(path, body)
            assert answer.status_code == 500, path
            assert answer.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.UnexpectedError"
        status, page = _page(
            api, {"customFields": [{"key": "CustomField1", "value": "demo-diag-unavailable"}]}
        )
        assert status == 200 and len(page["devices"]) == 1
        mismatches = api.post(
            "/m2m/v1/devices/actions/list/imeiiccidmismatch",
            {
                "accountName": ACCOUNT,
                "devices": [{"deviceIds": [device]}],
                "filter": {"earliest": "2020-01-01T00:00:00Z", "latest": "2030-01-01T00:00:00Z"},
            },
        )
        assert mismatches.status_code == 200
        assert api.diagnostics(sandbox.demo_devices()["healthy"]["iccid"])
