"""The ThingSpace client: wire JSON -> models, error answers -> the error tree, and every operation
against the sandbox over loopback HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bot.sandbox.rules import add_past_suspension
from bot.serving import ServerThread
from bot.thingspace import (
    CallbackKind,
    DeviceNotFound,
    InvalidInput,
    InvalidRequest,
    RequestAccepted,
    ServerError,
    ThingSpaceConnectError,
    ThingSpaceTimeout,
    UnexpectedResponse,
    errors,
    models,
    parse_callback,
    parse_device_id,
    shapes,
)
from bot.thingspace.ids import DeviceId
from tests.helpers.thingspace import (
    ACCOUNT,
    LOGIN_PATH,
    START,
    TOKEN_PATH,
    Listener,
    Running,
    callback_listener,
    client_for,
    running_sandbox,
)

DOC_DEVICE = {
    "accountName": "0000123456-00001",
    "billingCycleEndDate": "2020-05-09T20:00:00-04:00",
    "carrierInformations": [
        {"carrierName": "Verizon Wireless", "servicePlan": "m2m4G", "state": "Suspended"}
    ],
    "connected": False,
    "createdAt": "2019-08-07T10:42:15-04:00",
    "customFields": [
        {"key": "CustomField1", "value": "tracker-0042"},
        {"key": "CustomField2", "value": "East"},
    ],
    "deviceIds": [
        {"id": "5551234567", "kind": "MDN"},
        {"id": "990013907835573", "kind": "imei"},
        {"id": "89148000000800139708", "kind": "ICCID"},
    ],
    "extendedAttributes": [{"key": "PrimaryPlaceOfUseCity", "value": "Austin"}],
    "groupNames": ["southwest", "trackers"],
    "ipAddress": "10.1.2.3",
    "lastActivationBy": "Joe Q Public",
    "lastActivationDate": "2019-08-07T10:42:34-04:00",
    "lastConnectionDate": "2020-03-12T04:23:37-04:00",
    "somethingNew": {"ignored": True},
}


def test_device_from_the_documented_example() -> None:
    """The documented device-list entry parses into every Device field, kinds lower-cased."""
    device = models.Device.from_wire(DOC_DEVICE)
    assert device.ids == {"mdn": "5551234567", "imei": "990013907835573", "iccid": "89148000000800139708"}
    assert (device.iccid, device.mdn, device.imei, device.msisdn) == (
        "89148000000800139708",
        "5551234567",
        "990013907835573",
        None,
    )
    assert device.state == "suspend"
    assert (device.service_plan, device.carrier, device.account) == (
        "m2m4G",
        "Verizon Wireless",
        "0000123456-00001",
    )
    assert device.groups == ("southwest", "trackers")
    assert device.custom_fields["CustomField2"] == "East"
    assert device.label == "tracker-0042"
    assert device.connected is False
    assert device.created_at == datetime(2019, 8, 7, 10, 42, 15, tzinfo=timezone(timedelta(hours=-4)))
    assert device.last_connection is not None and device.last_connection.tzinfo is not None
    assert device.billing_cycle_end is not None
    assert device.ip_address == "10.1.2.3"
    assert device.extended_attributes == {"PrimaryPlaceOfUseCity": "Austin"}
    assert device.device_id == DeviceId("iccid", "89148000000800139708")


def test_device_tolerates_missing_and_odd_values() -> None:
    """A sparse device with bad dates and an unknown state still parses."""
    device = models.Device.from_wire({"deviceIds": [{"id": "1234", "kind": "esn"}], "createdAt": "yesterday"})
    assert device.ids == {"esn": "1234"}
    assert (device.state, device.created_at, device.connected, device.groups) == ("", None, None, ())
    assert device.device_id == DeviceId.from_wire({"kind": "esn", "id": "1234"})


@pytest.mark.parametrize(
    ("wire", "state"),
    [
        ("active", "active"),
        ("Activate", "active"),
        ("SUSPEND", "suspend"),
        ("Deactive", "deactive"),
        ("Pre-active", "pre-active"),
        ("PRE_ACTIVE", "pre-active"),
        ("pending activation", "pending activation"),
        ("PENDING_ACTIVATION", "pending activation"),
        ("Something New", "something new"),
    ],
)
def test_state_normalisation(wire: str, state: str) -> None:
    """Device states are normalised to lower-case names, unknown ones kept lower-cased."""
    assert models.normalise_state(wire) == state


def test_device_page() -> None:
    """A device-list answer becomes a page with has_more from hasMoreData."""
    page = models.DevicePage.from_wire({"hasMoreData": True, "devices": [DOC_DEVICE, "junk"]})
    assert page.has_more and len(page.devices) == 1
    assert models.DevicePage.from_wire({}).devices == ()
    with pytest.raises(TypeError):
        models.DevicePage.from_wire([])


def test_diagnostics_helpers() -> None:
    """Diagnostics exposes categories and typed helpers; key lookups ignore case."""
    diag = models.Diagnostics.from_wire(
        {
            "categories": [
                {
                    "categoryName": "Connectivity",
                    "extendedAttributes": [
                        {"key": "Connected", "value": "false"},
                        {"key": "Attached", "value": "true"},
                        {"key": "LastConnectionDate", "value": "2026-01-10T09:00:00Z"},
                    ],
                },
                {
                    "categoryName": "Provisioning",
                    "extendedAttributes": [
                        {"key": "DeviceState", "value": "Suspend"},
                        {"key": "ResumeDate", "value": "2026-03-15T00:00:00Z"},
                    ],
                },
                {
                    "categoryName": "DeviceIdentifier",
                    "extendedAttributes": [{"key": "ICCID", "value": "8914"}],
                },
            ]
        }
    )
    assert diag.connected is False
    # proposed keys are no typed fields: read generically, only when present
    assert not hasattr(diag, "attached") and not hasattr(diag, "last_connection")
    assert diag.flag("Attached") is True and diag.flag("RatType") is None
    assert diag.moment("LastConnectionDate") == datetime(2026, 1, 10, 9, tzinfo=UTC)
    assert diag.state == "suspend"
    assert diag.resume_date == datetime(2026, 3, 15, tzinfo=UTC)
    assert diag.get("connected") == "false"
    assert diag.get("Connected", category="Provisioning") is None
    assert diag.identifiers == {"iccid": "8914"}
    assert diag.category("connectivity")["Attached"] == "true"


def test_connection_event_and_usage_record() -> None:
    """History records parse their attributes into typed fields."""
    event = models.ConnectionEvent.from_wire(
        {
            "connectionEventAttributes": [
                {"key": "Event", "value": "Stop"},
                {"key": "BytesUsed", "value": "4096"},
                {"key": "Msisdn", "value": "15551234567"},
            ],
            "extendedAttributes": [],
            "occurredAt": "2015-12-17T14:12:36-05:00",
        }
    )
    assert (event.event, event.bytes_used) == ("Stop", 4096)
    assert event.occurred_at == datetime(2015, 12, 17, 19, 12, 36, tzinfo=UTC)
    usage = models.UsageRecord.from_wire(
        {
            "bytesUsed": 4096,
            "extendedAttributes": [{"key": "MoSms", "value": "2"}, {"key": "MtSms", "value": "1"}],
            "servicePlan": "m2m4G",
            "smsUsed": 3,
            "source": "Raw Usage",
            "timestamp": "2020-12-01T00:00:00Z",
        }
    )
    assert (usage.bytes_used, usage.sms_used, usage.mo_sms, usage.mt_sms) == (4096, 3, 2, 1)


def test_request_models() -> None:
    """requestId answers and request statuses, including the SDK's Failure spelling and v2 sub-requests."""
    assert models.RequestAccepted.from_wire({"requestId": " abc "}).request_id == "abc"
    with pytest.raises(ValueError, match="requestId"):
        models.RequestAccepted.from_wire({})
    status = models.RequestStatus.from_wire(
        {
            "requestId": "r1",
            "status": "Failure",
            "subRequests": [
                {"ids": [{"id": "89148000000800139708", "kind": "ICCID"}], "status": "Success"},
                {"ids": {"id": "990013907835573", "kind": "imei"}, "status": "pending"},
            ],
        }
    )
    assert status.failed and not status.succeeded and not status.pending
    assert [s.status for s in status.sub_requests] == ["Success", "Pending"]
    assert status.sub_requests[1].device_ids == (DeviceId("imei", "990013907835573"),)
    # the SDK's StatusResponse spells the list ``subrequests``
    sdk = models.RequestStatus.from_wire(
        {"requestId": "r2", "status": "Pending", "subrequests": [{"ids": [], "status": "Success"}]}
    )
    assert [s.status for s in sdk.sub_requests] == ["Success"]


def test_listener_account_and_mismatch() -> None:
    """Callback listeners hide their password; account and mismatch answers parse tolerant of shape."""
    listener = models.CallbackListener.from_wire(
        {
            "accountName": "a",
            "serviceName": "CarrierService",
            "url": "http://x",
            "username": "u",
            "password": "pw",
        }
    )
    assert listener.password == "pw" and "pw" not in repr(listener)
    account = models.Account.from_wire(
        {
            "accountName": "0000123456-00001",
            "isProvisioningAllowed": True,
            "carriers": [{"carriers": "Verizon Wireless"}],
            "features": ["SMS", {"features": "NB-IoT"}],
            "servicePlans": [{"name": "m2m4G", "code": "M2M4G"}],
        }
    )
    assert account.carriers == ("Verizon Wireless",)
    assert account.features == ("SMS", "NB-IoT")
    assert account.service_plans == ("m2m4G",)
    assert account.provisioning_allowed is True
    mismatch = models.ImeiIccidMismatch.from_wire(
        {
            "accountName": "0212398765-00001",
            "mdn": "5096300587",
            "activationDate": "2011-01-21T10:55:27-08:00",
            "iccid": "89148000000800784259",
            "preImei": "990003420535573",
            "postImei": "987603420573553",
            "simOtaDate": "2017-12-01T16:00:00-08:00",
        }
    )
    assert (mismatch.pre_imei, mismatch.post_imei) == ("990003420535573", "987603420573553")
    assert mismatch.sim_ota_date is not None


def test_datetimes() -> None:
    """Dates parse with Z, offsets, the SDK's '-08:00Z' oddity, and naive means UTC both ways."""
    assert models.parse_datetime("2019-12-02T15:00:00-08:00Z") == datetime(2019, 12, 2, 23, tzinfo=UTC)
    assert models.parse_datetime("2020-01-01T00:00:00") == datetime(2020, 1, 1, tzinfo=UTC)
    assert models.parse_datetime("not a date") is None
    assert models.parse_datetime(17) is None
    assert models.to_wire_datetime(datetime(2026, 1, 1)) == "2026-01-01T00:00:00+00:00"


def _response(
    status: int, body: object = None, *, content: bytes | None = None, **headers: str
) -> httpx.Response:
    request = httpx.Request("POST", "http://ts.test/m2m/v1/devices/actions/suspend")
    if content is not None:
        return httpx.Response(status, content=content, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, {"errorCode": "UnifiedWebService.REQUEST_FAILED.DeviceNotFound", "errorMessage": "no"}, errors.DeviceNotFound, "REQUEST_FAILED.DeviceNotFound"),
        (400, {"errorCode": "REQUEST_FAILED.SessionToken.Expired", "errorMessage": "x"}, errors.SessionExpired, "REQUEST_FAILED.SessionToken.Expired"),
        (400, {"errorCode": "DeviceService.INPUT_INVALID.CustomField.InvalidName", "errorMessage": "x"}, errors.InvalidInput, "INPUT_INVALID.CustomField.InvalidName"),
        (401, {"fault": {"code": "900901", "message": "Invalid Credentials", "description": "..."}}, errors.ThingSpaceAuthError, "900901"),
        (400, {"fault": {"code": "900906", "message": "No matching resource"}}, errors.ThingSpaceAuthError, "900906"),
        (429, {"errorCode": "x", "errorMessage": "slow down"}, errors.RateLimited, "x"),
        (503, None, errors.ServerError, ""),
        (400, {"errorCode": "400", "errorMessage": "bad reachability"}, errors.InvalidInput, "400"),
    ],
)  # fmt: skip
def test_error_classification(
    status: int, body: object, cls: type[errors.ThingSpaceResponseError], code: str
) -> None:
    """Each error body maps to its class, with the errorCode after the service prefix."""
    error = errors.error_from_response(_response(status, body))
    assert type(error) is cls
    assert error.status == status
    assert error.error_code == code
    assert error.path == "/m2m/v1/devices/actions/suspend"
    assert error.user_message


def test_login_errors() -> None:
    """On login, a 4xx is LoginFailed, a lock message is LoginLockedOut, an OAuth error body is read."""
    failed = errors.error_from_response(
        _response(400, {"errorCode": "REQUEST_FAILED.Login.Failed", "errorMessage": "bad"}), login=True
    )
    assert type(failed) is errors.LoginFailed
    locked = errors.error_from_response(
        _response(400, {"errorCode": "REQUEST_FAILED.UserLocked", "errorMessage": "locked"}), login=True
    )
    assert type(locked) is errors.LoginLockedOut
    oauth = errors.error_from_response(
        _response(401, {"error": "invalid_client", "error_description": "Client Authentication failed."}),
        login=True,
    )
    assert type(oauth) is errors.LoginFailed and oauth.error_code == "invalid_client"
    assert type(errors.error_from_response(_response(502, None), login=True)) is errors.ServerError


def test_retry_after_and_masked_messages() -> None:
    """429 carries Retry-After; messages never contain a full identifier."""
    limited = errors.error_from_response(_response(429, {"errorMessage": "wait"}, **{"Retry-After": "7"}))
    assert isinstance(limited, errors.RateLimited) and limited.retry_after == 7.0
    error = errors.error_from_response(
        _response(
            400,
            {
                "errorCode": "INPUT_INVALID.Device.Identifier.Invalid",
                "errorMessage": "89148000000800139708 bad",
            },
        )
    )
    assert "89148000000800139708" not in str(error) and "…9708" in str(error)


def test_unreadable_error_bodies() -> None:
    """A non-JSON or empty error body still yields a typed error with the reason phrase."""
    error = errors.error_from_response(_response(400, content=b"<html>oops</html>"))
    assert isinstance(error, errors.InvalidInput) and error.message == "Bad Request"


def test_cooling_down_message() -> None:
    """LoginCoolingDown says how long logins stay closed and keeps the cause."""
    cause = errors.LoginFailed(
        "bad password", status=400, error_code="REQUEST_FAILED.Login", path="/m2m/v1/session/login"
    )
    error = errors.LoginCoolingDown(cause, 125.0)
    assert error.cause is cause and error.seconds_left == 125.0
    assert "2 min 5 s" in error.user_message and "paused" in str(error)
    assert isinstance(error, errors.ThingSpaceAuthError)


def test_split_error_code() -> None:
    """The service prefix is dropped; other codes are kept."""
    assert (
        errors.split_error_code("UnifiedWebService.REQUEST_FAILED.AccountNotFound")
        == "REQUEST_FAILED.AccountNotFound"
    )
    assert errors.split_error_code("INPUT_INVALID.SmsMessage.TooLong") == "INPUT_INVALID.SmsMessage.TooLong"
    assert errors.split_error_code("900901") == "900901"


# -- every operation against the sandbox, over loopback HTTP -------------------------------------

EXAMPLE = parse_device_id("89148000000800139708")
LIST_PATH = "/m2m/v1/devices/actions/list"
DIAG_PATH = "/m2m/v1/devices/extendeddiagnostics/actions/list"
SUSPEND_PATH = "/m2m/v1/devices/actions/suspend"


@pytest.fixture(scope="module")
def shared() -> Iterator[Running]:
    """One sandbox for the read-only tests of this module."""
    with running_sandbox(devices=200) as running:
        yield running


@pytest.fixture
def fresh() -> Iterator[Running]:
    """A sandbox of its own, for tests that change lines or inject faults."""
    with running_sandbox(devices=40) as running:
        yield running


def demo(running: Running, condition: str) -> DeviceId:
    """The ICCID of the sandbox's demo device for ``condition``."""
    return DeviceId("iccid", running.sandbox.demo_devices()[condition]["iccid"])


def test_get_device_by_any_kind(shared: Running) -> None:
    """get_device finds device #0 by ICCID and by MDN, with its extended attributes."""
    with client_for(shared.url) as client:
        device = client.get_device(EXAMPLE)
        assert device.iccid == EXAMPLE.id
        assert device.state == "active"
        assert "trackers" in device.groups
        assert device.label == "demo-usage-spike"
        assert device.mdn is not None
        by_mdn = client.get_device(DeviceId("mdn", device.mdn))
    assert by_mdn.iccid == EXAMPLE.id
    assert device.extended_attributes[shapes.DEVICE_NUMBER_KEY].isdigit()


def test_get_unknown_device_raises_device_not_found(shared: Running) -> None:
    """An ICCID the account does not hold is DeviceNotFound, with a masked message."""
    with client_for(shared.url) as client, pytest.raises(DeviceNotFound) as info:
        client.get_device(DeviceId("iccid", "89148000000000000000"))
    assert "89148000000000000000" not in str(info.value)


@pytest.mark.parametrize("by_number", [False, True], ids=["earliest", "largestDeviceIdSeen"])
def test_list_devices_pages_through_the_whole_fleet(shared: Running, by_number: bool) -> None:
    """Both paging styles return all 200 devices exactly once over several 202 pages."""
    before = shared.count(LIST_PATH)
    with client_for(shared.url) as client:
        pages = list(client.device_pages(page_size=37, by_device_number=by_number))
    devices = [d for page in pages for d in page.devices]
    assert len(devices) == 200
    assert len({d.iccid for d in devices}) == 200
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    assert len(pages) == 6
    statuses = [e["status"] for e in shared.requests(LIST_PATH)[before:]]
    assert statuses == [202] * 5 + [200]


def test_list_devices_filters(shared: Running) -> None:
    """Group, state and identifier filters reach ThingSpace and narrow the list."""
    with client_for(shared.url) as client:
        everything = list(client.list_devices())
        plant = list(client.list_devices(group="plant-7"))
        suspended = list(client.list_devices(state="suspend"))
        found = list(client.list_devices(contains=("iccid", "139708")))
    assert len(everything) == 200
    assert plant and all("plant-7" in d.groups for d in plant)
    assert len(plant) == sum("plant-7" in d.groups for d in everything)
    assert suspended and all(d.state == "suspend" for d in suspended)
    assert [d.iccid for d in found] == [EXAMPLE.id]


def test_extended_diagnostics_reflect_the_demo_conditions(shared: Running) -> None:
    """Diagnostics of the demo devices carry the state and ``Connected``; the device list and the
    connection history the last connection and the data sessions; the provisioning history the
    day's actions. No proposed Connectivity key is sent."""
    with client_for(shared.url) as client:
        healthy = client.extended_diagnostics(demo(shared, "healthy"))
        suspended = client.extended_diagnostics(demo(shared, "suspended"))
        limit = list(
            client.provisioning_history(demo(shared, "action-limit"), START - timedelta(days=1), START)
        )
        hung = client.extended_diagnostics(demo(shared, "hung"))
        hung_line = client.get_device(demo(shared, "hung"))
        hung_events = list(client.connection_history(demo(shared, "hung"), START - timedelta(days=2), START))
        down = client.extended_diagnostics(demo(shared, "down"))
    assert (healthy.state, healthy.connected) == ("active", True)
    assert suspended.state == "suspend" and suspended.resume_date is not None
    assert sum(1 for e in limit if e.occurred_at and e.occurred_at.date() == START.date()) == 5
    # hung: the network sees it (connected), but its last data session closed a day ago
    assert hung.connected is True and hung_line.connected is True
    assert hung_line.last_connection is not None and START - hung_line.last_connection >= timedelta(hours=25)
    assert hung_events and not hung_events[-1].is_start and hung_events[-1].bytes_used is not None
    assert hung_events[-1].occurred_at == hung_line.last_connection
    assert down.connected is False
    for diag in (healthy, hung, down):
        assert not any(diag.get(key) for key in shapes.PROPOSED_DIAG_KEYS)
    assert healthy.identifiers["iccid"] == demo(shared, "healthy").id


def test_extended_diagnostics_refuses_kinds_thingspace_does_not_take(shared: Running) -> None:
    """An EID is refused locally (InvalidRequest) and nothing is sent."""
    before = shared.count(DIAG_PATH)
    with (
        client_for(shared.url) as client,
        pytest.raises(InvalidRequest, match="iccid, imei, mdn, meid, msisdn"),
    ):
        client.extended_diagnostics(DeviceId("eid", "89049032000001000000012345678901"))
    assert shared.count(DIAG_PATH) == before


def test_connection_history_pages_without_repeats(shared: Running) -> None:
    """A month of a busy tracker spans several 500-record pages; events come once, oldest first."""
    path = "/m2m/v1/devices/connections/actions/listHistory"
    before = shared.count(path)
    with client_for(shared.url) as client:
        events = list(client.connection_history(EXAMPLE, START - timedelta(days=30), START))
    assert len(events) > 1000
    assert shared.count(path) - before >= 3
    times = [e.occurred_at for e in events]
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    keys = [(e.occurred_at, e.event, e.bytes_used) for e in events]
    assert len(keys) == len(set(keys))
    assert {e.event for e in events} == {"Start", "Stop"}


def test_usage_history_has_one_record_per_day(shared: Running) -> None:
    """Two weeks of usage: one record per UTC day, with the usage spike visible on the last day."""
    with client_for(shared.url) as client:
        records = list(client.usage_history(EXAMPLE, START - timedelta(days=14), START))
    days = [r.timestamp.date() for r in records if r.timestamp is not None]
    assert len(days) == len(set(days)) >= 14
    assert all(r.bytes_used >= 0 for r in records)
    assert records[-1].bytes_used > 0


def test_history_window_is_checked_locally(shared: Running) -> None:
    """earliest after latest is refused before sending."""
    with client_for(shared.url) as client, pytest.raises(InvalidRequest, match="earliest is after latest"):
        list(client.usage_history(EXAMPLE, START, START - timedelta(days=1)))


def test_account_info_and_mismatch_list(shared: Running) -> None:
    """Account details parse, and the IMEI-ICCID mismatch list holds the demo mismatch device."""
    with client_for(shared.url) as client:
        account = client.account_info()
        mismatches = client.imei_iccid_mismatches()
        filtered = client.imei_iccid_mismatches(devices=[demo(shared, "imei-mismatch")])
    assert account.name == ACCOUNT and account.service_plans
    wanted = demo(shared, "imei-mismatch").id
    assert wanted in {m.iccid for m in mismatches}
    assert [m.iccid for m in filtered] == [wanted]
    assert filtered[0].pre_imei != filtered[0].post_imei


def test_callback_listeners_register_list_deregister(fresh: Running) -> None:
    """Listeners can be registered, listed (empty body = none) and removed."""
    with client_for(fresh.url) as client:
        assert client.list_callbacks() == []
        registered = client.register_callback(shapes.CARRIER_SERVICE, "http://127.0.0.1:9/cb", "u", "p")
        assert (registered.account, registered.service) == (ACCOUNT, shapes.CARRIER_SERVICE)
        listed = client.list_callbacks()
        assert [(x.service, x.url, x.username, x.password) for x in listed] == [
            (shapes.CARRIER_SERVICE, "http://127.0.0.1:9/cb", "u", "p")
        ]
        client.deregister_callback(shapes.CARRIER_SERVICE)
        assert client.list_callbacks() == []
        with pytest.raises(InvalidInput) as info:
            client.deregister_callback(shapes.CARRIER_SERVICE)
    assert info.value.error_code == "REQUEST_FAILED.CallbackNotRegistered"


def register_all(running: Running, listener: Listener) -> None:
    with client_for(running.url) as client:
        for service in shapes.CONSUMED_SERVICES:
            client.register_callback(service, listener.url, "cb-user", "cb-pass")


def test_suspend_and_restore_end_in_parsed_callbacks(fresh: Running) -> None:
    """Suspend then restore: requestIds, request status, and CarrierService callbacks that parse."""
    device = demo(fresh, "healthy")
    with callback_listener() as listener, client_for(fresh.url) as client:
        register_all(fresh, listener)
        suspended = client.suspend([device])
        assert isinstance(suspended, RequestAccepted)
        bodies = listener.wait_for(1, requestId=suspended.request_id)
        event = parse_callback(bodies[0])
        assert event.kind is CallbackKind.SUSPENDED and event.device == device
        assert event.resume_date is not None and event.resume_date > START
        assert (event.username, event.password) == ("cb-user", "cb-pass")
        assert client.request_status(suspended.request_id).succeeded
        assert client.get_device(device).state == "suspend"
        restored = client.restore([device])
        event = parse_callback(listener.wait_for(1, requestId=restored.request_id)[0])
        assert event.kind is CallbackKind.RESTORED
        detailed = client.request_status(restored.request_id, detailed=True)
        assert detailed.succeeded and [s.status for s in detailed.sub_requests] == ["Success"]
        assert detailed.sub_requests[0].device_ids[0].id == device.id


def test_failed_provisioning_callback(fresh: Running) -> None:
    """Restoring an active line fails in its callback, which parses as ACTION_FAILED with a code."""
    device = demo(fresh, "healthy")
    with callback_listener() as listener, client_for(fresh.url) as client:
        register_all(fresh, listener)
        accepted = client.restore([device])
        event = parse_callback(listener.wait_for(1, requestId=accepted.request_id)[0])
        assert client.request_status(accepted.request_id).failed
    assert event.kind is CallbackKind.ACTION_FAILED and not event.succeeded
    assert event.fault_code == "INPUT_INVALID.DeviceState.Invalid"


def test_bulk_suspend_one_callback_per_device(fresh: Running) -> None:
    """A multi-device suspend gets one requestId and one callback per device; repeats are dropped."""
    with client_for(fresh.url) as client:
        devices = [d.device_id for d in client.list_devices(state="active")][:6]
    with callback_listener() as listener, client_for(fresh.url) as client:
        register_all(fresh, listener)
        accepted = client.suspend([*devices, devices[0]])
        bodies = listener.wait_for(6, requestId=accepted.request_id)
        status = client.request_status(accepted.request_id, detailed=True)
    events = [parse_callback(b) for b in bodies]
    assert {e.device for e in events} == set(devices)
    assert len({e.outcome_key for e in events}) == 6
    assert len(status.sub_requests) == 6


def test_sms_sent_and_delivered(fresh: Running) -> None:
    """An SMS to a reachable line: a sent notice, then a delivery confirmation."""
    device = demo(fresh, "healthy")
    with callback_listener() as listener, client_for(fresh.url) as client:
        register_all(fresh, listener)
        accepted = client.send_sms([device], "PING")
        bodies = listener.wait_for(2, requestId=accepted.request_id)
    kinds = {parse_callback(b).kind for b in bodies}
    assert kinds == {CallbackKind.SMS_SENT, CallbackKind.SMS_DELIVERED}


@pytest.mark.parametrize(
    ("text", "encoding", "reason"),
    [
        ("", None, "empty"),
        ("x" * 161, None, "at most 160"),
        ("x" * 141, "8-bit-ASCII", "at most 140"),
        ("hi", "9-bit", "unknown SMS encoding"),
        ("€" * 81, None, "162 characters long in 7-bit"),
        ("Grüße 😀", None, "not in the GSM 7-bit alphabet"),
        ("é" * 71, "8-bit-UTF-8", "142 bytes long"),
        ("naïve", "8-bit-ASCII", "ASCII characters only"),
    ],
)
def test_sms_is_checked_before_sending(shared: Running, text: str, encoding: str | None, reason: str) -> None:
    """Empty, too long or badly encoded SMS are refused locally; nothing reaches ThingSpace."""
    before = shared.count("/m2m/v1/sms")
    with client_for(shared.url) as client, pytest.raises(InvalidRequest, match=reason):
        client.send_sms([EXAMPLE], text, encoding=encoding)
    assert shared.count("/m2m/v1/sms") == before


def test_sms_longest_allowed_message_is_accepted(fresh: Running) -> None:
    """Messages at the limit of each encoding are accepted by the client and the sandbox."""
    with client_for(fresh.url) as client:
        assert client.send_sms([EXAMPLE], "x" * 160).request_id
        assert client.send_sms([EXAMPLE], "y" * 140, encoding="8-bit-ASCII").request_id
        assert client.send_sms([EXAMPLE], "€" * 80).request_id
        assert client.send_sms([EXAMPLE], "Grüße 😀" * 10, encoding="8-bit-UTF-8").request_id


def test_cancel_location(fresh: Running) -> None:
    """Cancel location of one line is accepted and confirmed by a CarrierService callback."""
    device = demo(fresh, "hung")
    with callback_listener() as listener, client_for(fresh.url) as client:
        register_all(fresh, listener)
        accepted = client.cancel_location(device)
        event = parse_callback(listener.wait_for(1, requestId=accepted.request_id)[0])
    assert event.kind is CallbackKind.LOCATION_CANCELLED and event.device == device


def test_reachability_monitor_lifecycle(fresh: Running) -> None:
    """Start a data+loss monitor, see its callbacks, list it, query status, lose the device, stop it."""
    device = demo(fresh, "healthy")
    with callback_listener() as listener, client_for(fresh.url) as client:
        register_all(fresh, listener)
        started = client.start_reachability_monitor(
            [device], "REACHABLE_FOR_DATA_AND_LOSS", START + timedelta(days=365)
        )
        first = parse_callback(listener.wait_for(1, requestId=started.request_id)[0])
        assert first.service == shapes.DIAGNOSTICS_SERVICE and first.monitor_id
        listed = client.list_reachability_monitors([device])
        assert (
            parse_callback(listener.wait_for(1, requestId=listed.request_id)[0]).monitor_id
            == first.monitor_id
        )
        status = client.reachability_status(device, "REACHABLE_FOR_DATA")
        answer = parse_callback(listener.wait_for(1, requestId=status.request_id)[0])
        assert answer.kind is CallbackKind.REACHABLE
        fresh.sandbox.set_reachability(str(device), False)
        change = listener.wait_for(2, requestId=started.request_id)
        assert CallbackKind.UNREACHABLE in {parse_callback(b).kind for b in change}
        stopped = client.stop_reachability_monitors([first.monitor_id])
        assert stopped.request_id
        with pytest.raises(InvalidInput) as info:
            client.stop_reachability_monitors([first.monitor_id])
    assert info.value.error_code == "400"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda c: c.start_reachability_monitor([EXAMPLE], "SOMETIMES", START), "unknown reachability type"),
        (lambda c: c.reachability_status(EXAMPLE, "REACHABLE_FOR_DATA_SMS"), "unknown reachability type"),
        (
            lambda c: c.start_reachability_monitor(
                [EXAMPLE, DeviceId("mdn", "5551234567")], "REACHABLE_FOR_DATA", START
            ),
            "one kind",
        ),
        (lambda c: c.list_reachability_monitors([DeviceId("meid", "A100008385E561")]), "accepts only"),
        (lambda c: c.stop_reachability_monitors([]), "at least one monitor"),
        (lambda c: c.suspend([]), "at least one device"),
        (lambda c: c.cancel_location(DeviceId("meid", "A100008385E561")), "accepts only"),
        (lambda c: c.request_status("../../x"), "request id"),
        (lambda c: c.register_callback("", "http://x"), "service name and a URL"),
    ],
)
def test_bad_arguments_are_refused_before_sending(shared: Running, call: object, reason: str) -> None:
    """Arguments ThingSpace would reject are refused locally with a specific message."""
    before = len(shared.requests("/m2m/*"))
    with client_for(shared.url) as client, pytest.raises(InvalidRequest, match=reason):
        call(client)  # type: ignore[operator]
    assert len(shared.requests("/m2m/*")) == before


def test_too_many_devices_are_refused_before_sending(shared: Running) -> None:
    """More than 10,000 devices in one request is refused locally."""
    many = [DeviceId("mdn", f"{5550000000 + i}") for i in range(10_001)]
    with client_for(shared.url) as client, pytest.raises(InvalidRequest, match="at most 10,000"):
        client.suspend(many)


def test_thingspace_validation_errors_are_typed(shared: Running) -> None:
    """A request status for an unknown request comes back as a typed 400 with its code."""
    with client_for(shared.url) as client, pytest.raises(InvalidInput) as info:
        client.request_status("00000000-0000-4000-8000-000000000000")
    assert info.value.status == 400
    assert info.value.error_code == "REQUEST_FAILED.RequestNotFound"
    assert info.value.path.endswith("/status")


# -- retries, timeouts and deadlines ---------------------------------------------------------------


def test_a_503_on_a_read_is_retried(fresh: Running) -> None:
    """Two 503s then success: a read is retried with backoff and succeeds on the third try."""
    fresh.fault(path=DIAG_PATH, status=503, count=2)
    with client_for(fresh.url) as client:
        assert client.extended_diagnostics(EXAMPLE).state == "active"
    assert [e["status"] for e in fresh.requests(DIAG_PATH)] == [503, 503, 200]


def test_a_read_gives_up_after_its_retries(fresh: Running) -> None:
    """With retries=2, three 503s end in ServerError after exactly three attempts."""
    fresh.fault(path=DIAG_PATH, status=503, count=5)
    with client_for(fresh.url, retries=2) as client, pytest.raises(ServerError) as info:
        client.extended_diagnostics(EXAMPLE)
    assert info.value.status == 503
    assert fresh.count(DIAG_PATH) == 3


def test_a_503_on_a_suspend_is_not_retried(fresh: Running) -> None:
    """A change is sent once: a 503 on suspend is raised, never resent."""
    fresh.fault(path=SUSPEND_PATH, status=503, count=1)
    with client_for(fresh.url) as client, pytest.raises(ServerError):
        client.suspend([demo(fresh, "healthy")])
    assert fresh.count(SUSPEND_PATH) == 1


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/m2m/v1/devices/actions/restore", lambda c, d: c.restore([d])),
        ("/m2m/v1/sms", lambda c, d: c.send_sms([d], "hi")),
        ("/m2m/v1/devices/actions/cancellocation", lambda c, d: c.cancel_location(d)),
        ("/m2m/v1/diagnostics/basic/devicereachability", lambda c, d: c.start_reachability_monitor([d], "REACHABLE_FOR_DATA", START)),
    ],
)  # fmt: skip
def test_no_change_is_ever_retried(fresh: Running, path: str, call: object) -> None:
    """Restore, SMS, cancel location and monitor starts are sent once even on a 502."""
    fresh.fault(path=path, method="POST", status=502, count=1)
    with client_for(fresh.url) as client, pytest.raises(ServerError):
        call(client, demo(fresh, "healthy"))  # type: ignore[operator]
    assert fresh.count(path, "POST") == 1


def test_a_4xx_and_a_429_are_not_retried(fresh: Running) -> None:
    """Client errors and rate limits are raised at once."""
    fresh.fault(path=DIAG_PATH, status=429, count=1, body={"errorCode": "x", "errorMessage": "slow"})
    with client_for(fresh.url) as client, pytest.raises(errors.RateLimited):
        client.extended_diagnostics(EXAMPLE)
    assert fresh.count(DIAG_PATH) == 1


def test_read_timeout_is_a_typed_timeout(fresh: Running) -> None:
    """An answer slower than the read timeout is ThingSpaceTimeout (and a read timeout is not retried)."""
    with client_for(fresh.url, timeout=httpx.Timeout(5.0, read=0.2)) as client:
        client.extended_diagnostics(EXAMPLE)
        fresh.fault(path=DIAG_PATH, latency=1.0, count=1)
        with pytest.raises(ThingSpaceTimeout) as info:
            client.extended_diagnostics(EXAMPLE)
    assert info.value.path == DIAG_PATH
    # The sandbox logs the slow request when it gives up on it; a retry would be logged too.
    deadline = time.monotonic() + 10
    while all(e["status"] == 200 for e in fresh.requests(DIAG_PATH)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["status"] == 200 for e in fresh.requests(DIAG_PATH)] == [True, False]


def counting_transport(fail_on: str, calls: list[str]) -> httpx.MockTransport:
    """Answers token and login like ThingSpace; raises ConnectError for ``fail_on`` (a path)."""

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.url.path == LOGIN_PATH:
            return httpx.Response(200, json={"sessionToken": "00000000-0000-4000-8000-000000000001"})
        if request.url.path == fail_on:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"categories": []})

    return httpx.MockTransport(handler)


def test_connect_errors_are_retried_for_reads_only() -> None:
    """A connect error is retried on a read (1 + retries attempts) but not on a suspend."""
    calls: list[str] = []
    with client_for("http://ts.invalid", transport=counting_transport(DIAG_PATH, calls), retries=3) as client:
        with pytest.raises(ThingSpaceConnectError):
            client.extended_diagnostics(EXAMPLE)
        assert calls.count(DIAG_PATH) == 4
    calls.clear()
    with client_for("http://ts.invalid", transport=counting_transport(SUSPEND_PATH, calls)) as client:
        with pytest.raises(ThingSpaceConnectError) as info:
            client.suspend([EXAMPLE])
        assert calls.count(SUSPEND_PATH) == 1
    assert "try again" in info.value.user_message


def test_nothing_listening_is_a_connect_error() -> None:
    """A closed port gives ThingSpaceConnectError, not an httpx exception."""
    with client_for("http://127.0.0.1:9", retries=1) as client, pytest.raises(ThingSpaceConnectError):
        client.extended_diagnostics(EXAMPLE)


def trickling_app() -> Starlette:
    """A ThingSpace stand-in whose diagnostics answer drips one byte every 50 ms."""

    async def token(request: Request) -> Response:
        return JSONResponse({"access_token": "t", "expires_in": 3600})

    async def login(request: Request) -> Response:
        return JSONResponse({"sessionToken": "00000000-0000-4000-8000-000000000001"})

    async def slow(request: Request) -> Response:
        import asyncio

        async def drip() -> object:
            for _ in range(1000):
                await asyncio.sleep(0.05)
                yield b" "

        return StreamingResponse(drip(), media_type="application/json")

    return Starlette(
        routes=[
            Route(TOKEN_PATH, token, methods=["POST"]),
            Route(LOGIN_PATH, login, methods=["POST"]),
            Route(DIAG_PATH, slow, methods=["POST"]),
        ]
    )


def test_a_trickling_answer_is_cut_at_the_deadline() -> None:
    """Bytes arriving just inside the read timeout cannot hold a call past its overall deadline."""
    with (
        ServerThread(trickling_app()) as server,
        client_for(server.url, deadline=0.5) as client,
        pytest.raises(ThingSpaceTimeout, match="no complete answer within"),
    ):
        client.extended_diagnostics(EXAMPLE)


def test_non_json_success_is_unexpected_response() -> None:
    """A 200 whose body is not JSON raises UnexpectedResponse."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.url.path == LOGIN_PATH:
            return httpx.Response(200, json={"sessionToken": "00000000-0000-4000-8000-000000000001"})
        if request.url.path == SUSPEND_PATH:
            return httpx.Response(200, json={"no": "request id"})
        return httpx.Response(200, content=b"<html>maintenance</html>")

    with client_for("http://ts.invalid", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(UnexpectedResponse, match="not JSON"):
            client.extended_diagnostics(EXAMPLE)
        with pytest.raises(UnexpectedResponse, match="no requestId"):
            client.suspend([EXAMPLE])


def test_get_device_never_returns_another_line() -> None:
    """Several lines listed and none carries the asked id: an error, not the first line of the page."""
    listed = [
        {"deviceIds": [{"id": f"8914800000080013970{n}", "kind": "iccid"}], "state": "active"} for n in (1, 2)
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.url.path == LOGIN_PATH:
            return httpx.Response(200, json={"sessionToken": "00000000-0000-4000-8000-000000000001"})
        return httpx.Response(200, json={"devices": listed, "hasMoreData": False})

    with (
        client_for("http://ts.invalid", transport=httpx.MockTransport(handler)) as client,
        pytest.raises(UnexpectedResponse, match="listed 2 lines"),
    ):
        client.get_device(EXAMPLE)


# -- observability ---------------------------------------------------------------------------------


def test_observer_sees_every_operation(fresh: Running) -> None:
    """The observer hook gets the operation name, duration and error class of every call."""
    seen: list[tuple[str, float, str | None]] = []
    fresh.fault(path=SUSPEND_PATH, status=503, count=1)
    with client_for(fresh.url, observer=lambda *a: seen.append(a)) as client:
        client.extended_diagnostics(EXAMPLE)
        with pytest.raises(ServerError):
            client.suspend([EXAMPLE])
    assert [(op, err) for op, _, err in seen] == [("extended_diagnostics", None), ("suspend", "ServerError")]
    assert all(seconds >= 0 for _, seconds, _ in seen)


def test_logs_mask_identifiers(fresh: Running, caplog: pytest.LogCaptureFixture) -> None:
    """No log record of a suspend, an SMS or a failure carries a full ICCID or MDN."""
    caplog.set_level(logging.DEBUG)
    device = demo(fresh, "healthy")
    with client_for(fresh.url) as client:
        info = client.get_device(device)
        client.suspend([device])
        client.send_sms([DeviceId("mdn", info.mdn or "")], "hello")
        fresh.fault(
            path=DIAG_PATH, status=400, count=1, body={"errorCode": "x", "errorMessage": f"bad {device.id}"}
        )
        with pytest.raises(InvalidInput) as error:
            client.extended_diagnostics(device)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert device.id not in text and (info.mdn or "-") not in text
    assert device.id not in str(error.value)
    assert "…" in text


def test_client_is_safe_to_share_between_threads(fresh: Running) -> None:
    """Many threads mixing reads on one client all succeed with one login."""
    from concurrent.futures import ThreadPoolExecutor

    with client_for(fresh.url) as client:
        # every line but the demo line whose diagnostics answer 500 on purpose
        ids = [d.device_id for d in client.list_devices() if d.label != "demo-diag-unavailable"]
        assert len(ids) > 10

        def work(i: int) -> str:
            return client.extended_diagnostics(ids[i % len(ids)]).state

        with ThreadPoolExecutor(max_workers=16) as pool:
            states = list(pool.map(work, range(200)))
    assert len(states) == 200 and all(states)
    assert fresh.count(LOGIN_PATH) == 1


def test_production_base_url_keeps_its_api_prefix() -> None:
    """With THINGSPACE_BASE_URL's default (…/api), token, login and calls all go under /api."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/oauth2/token"):
            assert request.headers["Authorization"].startswith("Basic ")
            assert request.content == b"grant_type=client_credentials"
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.url.path.endswith("/session/login"):
            return httpx.Response(200, json={"sessionToken": "00000000-0000-4000-8000-000000000001"})
        assert request.headers["VZ-M2M-Token"] == "00000000-0000-4000-8000-000000000001"
        assert request.headers["Authorization"] == "Bearer t"
        return httpx.Response(200, json={"categories": []})

    with client_for("https://thingspace.verizon.com/api", transport=httpx.MockTransport(handler)) as client:
        client.extended_diagnostics(EXAMPLE)
    assert seen == [
        "https://thingspace.verizon.com/api/ts/v1/oauth2/token",
        "https://thingspace.verizon.com/api/m2m/v1/session/login",
        "https://thingspace.verizon.com/api/m2m/v1/devices/extendeddiagnostics/actions/list",
    ]


HISTORY_PATH = "/m2m/v1/devices/history/actions/list"


def test_provisioning_history_reads_every_page_oldest_first(fresh: Running) -> None:
    """A line with 300 past suspensions has 601 events: two pages (202 + hasMoreData, then 200),
    every event once, oldest first, with the SDK's fields."""
    device_id = demo(fresh, "healthy")
    sandbox = fresh.sandbox
    with sandbox.state.lock:
        line = sandbox.state.resolve_text(f"iccid:{device_id.id}")
        start = line.activated + timedelta(days=1)
        for i in range(300):
            begin = start + timedelta(hours=2 * i)
            add_past_suspension(line, begin, begin + timedelta(hours=1))
    before = fresh.count(HISTORY_PATH)
    now = datetime.now(UTC) + timedelta(days=3650)
    with client_for(fresh.url) as client:
        events = list(client.provisioning_history(device_id, line.activated - timedelta(days=1), now))
    assert fresh.count(HISTORY_PATH) - before == 2
    assert len(events) == 601
    assert events[0].action == "activate" and events[0].event_by == line.activated_by
    assert [e.action for e in events[1:5]] == ["suspend", "restore", "suspend", "restore"]
    times = [e.occurred_at for e in events]
    assert times == sorted(times)  # type: ignore[type-var]
    assert all(e.status == "Success" and not e.failed and e.mdn == line.mdn for e in events)


def test_provisioning_history_records_what_the_api_did(fresh: Running) -> None:
    """A suspend through the API and an external restore show as events with who did them."""
    device_id = demo(fresh, "healthy")
    with client_for(fresh.url) as client:
        client.suspend([device_id])
        fresh.sandbox.wait_for_callbacks(5)
        fresh.sandbox.notify(
            shapes.EXTERNAL_PROVISIONING_CHANGES, f"iccid:{device_id.id}", change="Resume", by="ops@portal"
        )
        now = fresh.sandbox.clock()
        events = list(
            client.provisioning_history(device_id, now - timedelta(hours=1), now + timedelta(minutes=1))
        )
    assert [(e.action, e.event_by) for e in events] == [
        ("suspend", "sandbox-user"),
        ("restore", "ops@portal"),
    ]


def test_provisioning_history_includes_an_event_of_the_last_second(fresh: Running) -> None:
    """The wire carries whole seconds: a window ending a fraction of a second after an event
    still returns it (``latest`` is rounded up, not down)."""
    device_id = demo(fresh, "healthy")
    fresh.sandbox.advance_clock(0.5)  # half a second past a whole one
    fresh.sandbox.notify(
        shapes.EXTERNAL_PROVISIONING_CHANGES, f"iccid:{device_id.id}", change="Suspend", by="ops@portal"
    )
    at = fresh.sandbox.clock()
    assert at.microsecond == 500_000
    with client_for(fresh.url) as client:
        events = list(client.provisioning_history(device_id, at - timedelta(hours=1), at))
    assert [(e.action, e.event_by) for e in events][-1:] == [("suspend", "ops@portal")]


def test_every_external_change_is_in_the_provisioning_history(fresh: Running) -> None:
    """Each change ``/_sandbox/notify`` makes is recorded under who made it, the MDN change too."""
    device_id = demo(fresh, "healthy")
    ref = f"iccid:{device_id.id}"
    for change in ("Suspend", "Resume", "ChangeMdn", "Deactivate", "Activate"):
        fresh.sandbox.advance_clock(1)
        fresh.sandbox.notify(shapes.EXTERNAL_PROVISIONING_CHANGES, ref, change=change, by="ops@portal")
    now = fresh.sandbox.clock()
    with client_for(fresh.url) as client:
        events = list(client.provisioning_history(device_id, now - timedelta(minutes=1), now))
    assert [(e.event_type, e.event_by) for e in events] == [
        ("Suspend", "ops@portal"),
        ("Restore", "ops@portal"),
        ("ChangeMdn", "ops@portal"),
        ("Deactivate", "ops@portal"),
        ("Activate", "ops@portal"),
    ]


def test_provisioning_event_model_is_tolerant() -> None:
    """Event types in other spellings, failed statuses and missing fields parse."""
    move = models.ProvisioningEvent.from_wire({"eventType": "Device Move", "status": "Failed"})
    assert (move.action, move.failed, move.occurred_at) == ("move", True, None)
    odd = models.ProvisioningEvent.from_wire({"eventType": "ChangeMdn", "status": "Success"})
    assert (odd.action, odd.failed) == ("changemdn", False)


def test_mo_sms_inbox_pages_and_acknowledges(fresh: Running) -> None:
    """250 queued device SMS come in blocks of 100, 100 and 50; a block is gone from ThingSpace
    only once the next one is asked for with its token, so a reader that stops early gets the
    same block again."""
    ref = f"iccid:{demo(fresh, 'healthy').id}"
    for i in range(250):
        assert fresh.sandbox.device_sms(ref, f"reading {i}") == "queued"
    with client_for(fresh.url) as client:
        first = next(iter(client.mo_sms_pages()))
        again = next(iter(client.mo_sms_pages()))
        assert [m.text for m in first] == [m.text for m in again] == [f"reading {i}" for i in range(100)]
        pages = list(client.mo_sms_pages())
        assert [len(p) for p in pages] == [100, 100, 50]
        assert list(client.mo_sms()) == []
    texts = [m.text for page in pages for m in page]
    assert texts == [f"reading {i}" for i in range(250)]
    message = pages[0][0]
    assert message.device_ids[0] == DeviceId("iccid", ref.split(":")[1])
    assert message.timestamp is not None and message.wire["message"] == "reading 0"


def test_mo_sms_goes_to_the_listener_when_one_is_registered(fresh: Running) -> None:
    """With an EnhancedConnectivityService listener the device's SMS is called back, not queued;
    what was queued before stays queued (ThingSpace never sends it on its own)."""
    ref = f"iccid:{demo(fresh, 'healthy').id}"
    assert fresh.sandbox.device_sms(ref, "queued first") == "queued"
    with client_for(fresh.url) as client:
        client.register_callback(shapes.ENHANCED_CONNECTIVITY_SERVICE, "http://127.0.0.1:9/cb")
        assert fresh.sandbox.device_sms(ref, "pushed") == "callback"
        assert [m.text for m in client.mo_sms()] == ["queued first"]
