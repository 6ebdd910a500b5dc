"""The ThingSpace client: wire JSON -> models, error answers -> the error tree, and every operation
against the sandbox over loopback HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from bot.thingspace import errors, models
from bot.thingspace.ids import DeviceId

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
                        {"key": "ProvisioningActionsToday", "value": "5"},
                        {"key": "SuspendedDaysLast12Months", "value": "40"},
                    ],
                },
                {"categoryName": "Identifiers", "extendedAttributes": [{"key": "ICCID", "value": "8914"}]},
            ]
        }
    )
    assert diag.connected is False and diag.attached is True
    assert diag.last_connection == datetime(2026, 1, 10, 9, tzinfo=UTC)
    assert diag.state == "suspend"
    assert diag.resume_date == datetime(2026, 3, 15, tzinfo=UTC)
    assert diag.actions_today == 5 and diag.suspended_days_year == 40
    assert diag.suspended_days_continuous is None
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
