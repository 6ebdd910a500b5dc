"""Callback parsing: every consumed service, failures, tolerance, and the retry-stable outcome key."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.thingspace import shapes
from bot.thingspace.events import (
    MAX_CALLBACK_COUNT,
    CallbackKind,
    InvalidCallback,
    parse_callback,
    parse_resume_comment,
)
from bot.thingspace.ids import DeviceId

ICCID = "89148000000800139708"
REQUEST = "595f5c44-c31c-4552-8670-020a1545a84d"


def envelope(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "username": "cb-user",
        "password": "cb-secret",
        "requestId": REQUEST,
        "deviceIds": [{"id": ICCID, "kind": "iccid"}, {"id": "5551234567", "kind": "mdn"}],
        "status": "Success",
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
    }
    body.update(extra)
    return body


def suspended() -> dict[str, Any]:
    return envelope(
        deviceResponse={
            shapes.STATE_CHANGE: {
                "state": "suspend",
                "resumeDate": "2026-03-15T00:00:00Z",
                "deviceIds": [{"id": ICCID, "kind": "iccid"}],
            }
        }
    )


def test_suspend_result() -> None:
    """A CarrierService stateChange to suspend is a SUSPENDED event with the auto-resume date."""
    event = parse_callback(suspended())
    assert event.service == shapes.CARRIER_SERVICE
    assert event.kind is CallbackKind.SUSPENDED
    assert event.request_id == REQUEST
    assert event.device == DeviceId("iccid", ICCID)
    assert event.device_ids == (DeviceId("iccid", ICCID), DeviceId("mdn", "5551234567"))
    assert event.succeeded
    assert event.state == "suspend"
    assert event.resume_date == datetime(2026, 3, 15, tzinfo=UTC)
    assert event.callback_count == 1
    assert event.max_callback_threshold == 4


def test_restore_result_and_other_states() -> None:
    """stateChange to Active is RESTORED; another state is STATE_CHANGED, normalised."""
    restored = parse_callback(envelope(deviceResponse={shapes.STATE_CHANGE: {"state": "ACTIVE"}}))
    assert restored.kind is CallbackKind.RESTORED
    assert restored.state == "active"
    other = parse_callback(envelope(deviceResponse={shapes.STATE_CHANGE: {"state": "Deactivated"}}))
    assert other.kind is CallbackKind.STATE_CHANGED
    assert other.state == "deactive"


def test_cancel_location_result() -> None:
    """cancelLocationResponse is LOCATION_CANCELLED with its completion time."""
    event = parse_callback(
        envelope(
            deviceResponse={
                shapes.CANCEL_LOCATION: {"status": "Completed", "completedAt": "2026-01-10T12:00:00Z"}
            }
        )
    )
    assert (event.service, event.kind) == (shapes.CARRIER_SERVICE, CallbackKind.LOCATION_CANCELLED)
    assert event.event_time == datetime(2026, 1, 10, 12, tzinfo=UTC)


def test_carrier_failure_with_fault_response() -> None:
    """A Failed callback with faultResponse is ACTION_FAILED with the code after the service prefix."""
    body = envelope(
        status="Failed",
        faultResponse={
            "faultcode": "UnifiedWebService.REQUEST_FAILED.DeviceNotFound",
            "faultstring": "Device not found",
        },
    )
    event = parse_callback(body)
    assert event.service == shapes.CARRIER_SERVICE
    assert event.kind is CallbackKind.ACTION_FAILED
    assert not event.succeeded
    assert event.fault_code == "REQUEST_FAILED.DeviceNotFound"
    assert event.fault_message == "Device not found"


def test_failure_keeps_the_service_its_content_names() -> None:
    """A failure that still carries a suspend stateChange stays CarrierService, kind ACTION_FAILED."""
    body = suspended()
    body["status"] = "Failed"
    body["faultResponse"] = {"faultcode": "x.REQUEST_FAILED.ProvisioningLimit", "faultstring": "limit"}
    event = parse_callback(body)
    assert (event.service, event.kind, event.succeeded) == (
        shapes.CARRIER_SERVICE,
        CallbackKind.ACTION_FAILED,
        False,
    )


def test_failure_without_content_uses_the_service_hint() -> None:
    """A bare failure is attributed to the hinted service (e.g. from the listener URL)."""
    body = envelope(status="Failed", faultResponse={"faultcode": "F", "faultstring": "no"})
    event = parse_callback(body, service=shapes.SMS_DELIVERY_CONFIRMATION)
    assert (event.service, event.kind) == (shapes.SMS_DELIVERY_CONFIRMATION, CallbackKind.SMS_FAILED)


def test_sms_sent_notice() -> None:
    """EnhancedConnectivityService smsResponse is SMS_SENT."""
    event = parse_callback(envelope(deviceResponse={shapes.SMS_SENT: {"status": "Sent"}}))
    assert (event.service, event.kind, event.sms_status) == (
        shapes.ENHANCED_CONNECTIVITY_SERVICE,
        CallbackKind.SMS_SENT,
        "Sent",
    )
    assert event.succeeded


@pytest.mark.parametrize(
    ("status", "kind", "succeeded"),
    [("Delivered", CallbackKind.SMS_DELIVERED, True), ("Expired", CallbackKind.SMS_EXPIRED, False)],
)
def test_sms_delivery_confirmation(status: str, kind: CallbackKind, succeeded: bool) -> None:
    """SMSDeliveryConfirmation is SMS_DELIVERED or SMS_EXPIRED; an expired SMS did not succeed."""
    event = parse_callback(envelope(deviceResponse={shapes.SMS_DELIVERY: {"status": status}}))
    assert (event.service, event.kind, event.succeeded) == (shapes.SMS_DELIVERY_CONFIRMATION, kind, succeeded)


def test_device_originated_sms() -> None:
    """A top-level smsMessage is SMS_RECEIVED with its text and time."""
    body = envelope(smsMessage={"message": "TEMP=21", "timestamp": "2026-01-10T11:00:00-05:00"})
    del body["status"]
    event = parse_callback(body)
    assert (event.service, event.kind) == (shapes.ENHANCED_CONNECTIVITY_SERVICE, CallbackKind.SMS_RECEIVED)
    assert event.sms_text == "TEMP=21"
    assert event.event_time == datetime(2026, 1, 10, 16, tzinfo=UTC)


def reachability(status: str | None, event_time: str = "2026-01-10T11:59:30Z") -> dict[str, Any]:
    inner: dict[str, Any] = {
        "monitorId": "35596ca6-bab4-4333-a914-42b4fc2da54c",
        "monitorType": "REACHABLE_FOR_DATA",
        "maxUEAvailabilityTime": "2026-01-10T12:00:00Z",
        "monitorExpirationTime": "2036-01-01T00:00:00Z",
        "eventTime": event_time,
    }
    if status is not None:
        inner["reachabilityStatus"] = status
    return envelope(**{shapes.DIAGNOSTICS: inner})


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("REACHABLE", CallbackKind.REACHABLE),
        ("unreachable", CallbackKind.UNREACHABLE),
        (None, CallbackKind.MONITOR_UPDATE),
    ],
)
def test_reachability(status: str | None, kind: CallbackKind) -> None:
    """DiagnosticsService maps reachabilityStatus to REACHABLE/UNREACHABLE, absent to MONITOR_UPDATE."""
    event = parse_callback(reachability(status))
    assert (event.service, event.kind) == (shapes.DIAGNOSTICS_SERVICE, kind)
    assert event.monitor_id == "35596ca6-bab4-4333-a914-42b4fc2da54c"
    assert event.monitor_type == "REACHABLE_FOR_DATA"
    assert event.reachable_until == datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert event.monitor_expires_at == datetime(2036, 1, 1, tzinfo=UTC)
    assert event.event_time == datetime(2026, 1, 10, 11, 59, 30, tzinfo=UTC)


def test_reachability_failure() -> None:
    """A failed DiagnosticsService callback is MONITOR_FAILED."""
    body = reachability(None)
    body["status"] = "Failed"
    assert parse_callback(body).kind is CallbackKind.MONITOR_FAILED


def test_external_provisioning_change() -> None:
    """ExternalProvisioningChanges (in deviceResponse or at the top level) is EXTERNAL_CHANGE."""
    inner = {
        "changeType": "Suspend",
        "state": "suspend",
        "changedAt": "2026-01-09T08:00:00Z",
        "changedBy": "portal",
    }
    for body in (
        envelope(deviceResponse={shapes.EXTERNAL_CHANGE: inner}),
        envelope(**{shapes.EXTERNAL_CHANGE: inner}),
    ):
        event = parse_callback(body)
        assert (event.service, event.kind) == (
            shapes.EXTERNAL_PROVISIONING_CHANGES,
            CallbackKind.EXTERNAL_CHANGE,
        )
        assert (event.change_type, event.state, event.changed_by) == ("Suspend", "suspend", "portal")
        assert event.event_time == datetime(2026, 1, 9, 8, tzinfo=UTC)


def test_resume_tracking_notification() -> None:
    """ResumeTrackingNotification is RESUME_WARNING with the auto-resume date and comment."""
    inner = {"resumeDate": "2026-03-15T00:00:00Z", "comment": "Device will be auto resumed on 3/15/2026"}
    event = parse_callback(envelope(deviceResponse={shapes.RESUME_TRACKING: inner}))
    assert (event.service, event.kind) == (shapes.RESUME_TRACKING_NOTIFICATION, CallbackKind.RESUME_WARNING)
    assert event.resume_date == datetime(2026, 3, 15, tzinfo=UTC)
    assert "auto resumed" in event.comment


def test_unknown_response_type_is_read_status_first() -> None:
    """A Success whose inner key we never proposed (the documented changeIdentifierResponse) is
    SUCCEEDED: the envelope's status says what happened, the inner key only adds detail."""
    event = parse_callback(
        envelope(deviceResponse={"changeIdentifierResponse": {"servicePlan": "M2M_4G"}}),
        service="CarrierService",
    )
    assert (event.kind, event.service, event.succeeded) == (CallbackKind.SUCCEEDED, "CarrierService", True)
    assert event.raw["deviceResponse"] == {"changeIdentifierResponse": {"servicePlan": "M2M_4G"}}
    failed = parse_callback(
        envelope(status="Failed", deviceResponse={"somethingNew": {}}, faultResponse={"faultcode": "X.Y"})
    )
    assert (failed.kind, failed.succeeded, failed.fault_code) == (CallbackKind.ACTION_FAILED, False, "X.Y")
    neither = parse_callback(envelope(status="Queued", deviceResponse={"somethingNew": {}}))
    assert (neither.kind, neither.succeeded) == (CallbackKind.UNKNOWN, False)


def test_device_originated_sms_in_the_older_and_the_flat_form() -> None:
    """The older documented form (no requestId, smsMessage as text) and the SDK's flat SMSMessage
    (message + timestamp) are both SMS_RECEIVED; without requestId the request id is empty."""
    older = {
        "username": "u",
        "password": "p",
        "deviceIds": [{"id": "7022895555", "kind": "mdn"}],
        "smsMessage": "status IP 10.226.22.2 RSSI -67",
    }
    event = parse_callback(older)
    assert (event.kind, event.request_id, event.sms_text) == (
        CallbackKind.SMS_RECEIVED,
        "",
        "status IP 10.226.22.2 RSSI -67",
    )
    assert event.device == DeviceId("mdn", "7022895555")
    flat = {
        "deviceIds": [{"id": "09623489171", "kind": "esn"}],
        "message": "testmessage1",
        "timestamp": "2016-01-01T12:29:49-08:00",
    }
    event = parse_callback(flat)
    assert (event.kind, event.sms_text) == (CallbackKind.SMS_RECEIVED, "testmessage1")
    assert event.event_time == datetime(2016, 1, 1, 20, 29, 49, tzinfo=UTC)
    with_id = parse_callback({**flat, "requestId": REQUEST})
    assert with_id.request_id == REQUEST and with_id.kind is CallbackKind.SMS_RECEIVED
    with pytest.raises(InvalidCallback, match="deviceIds"):
        parse_callback({"smsMessage": "hello"})


def test_resume_comment_in_the_documented_us_form() -> None:
    """ "Device will be auto resumed on - 3/15/2017 12:00:00 AM" gives the resume date when the
    payload has no resumeDate."""
    inner = {"comment": "Device will be auto resumed on - 3/15/2017 12:00:00 AM"}
    event = parse_callback(envelope(deviceResponse={shapes.RESUME_TRACKING: inner}))
    assert event.resume_date == datetime(2017, 3, 15, tzinfo=UTC)
    assert parse_resume_comment("Device will be auto resumed on - 3/15/2017 1:30:00 PM") == datetime(
        2017, 3, 15, 13, 30, tzinfo=UTC
    )
    assert parse_resume_comment("no date here") is None


def test_absurd_callback_counts_are_kept_bounded() -> None:
    """callbackCount 10^30 is a callback, not an error: the count is kept as the bound."""
    event = parse_callback(envelope(callbackCount=10**30, maxCallbackThreshold=10**30))
    assert event.callback_count == MAX_CALLBACK_COUNT
    assert event.max_callback_threshold == MAX_CALLBACK_COUNT


def test_unknown_keys_and_mixed_case_kinds_are_tolerated() -> None:
    """Extra keys anywhere are ignored; deviceIds kinds in any case are lower-cased."""
    body = suspended()
    body["deviceIds"] = [{"id": ICCID, "kind": "ICCID", "extra": 1}, {"id": "5551234567", "kind": "Mdn"}]
    body["newTopLevelThing"] = {"x": [1, 2]}
    body["deviceResponse"][shapes.STATE_CHANGE]["surprise"] = True
    event = parse_callback(body)
    assert event.kind is CallbackKind.SUSPENDED
    assert [d.kind for d in event.device_ids] == ["iccid", "mdn"]
    assert event.raw["newTopLevelThing"] == {"x": [1, 2]}


def test_raw_has_no_credentials_and_repr_hides_them() -> None:
    """raw drops username/password; the event keeps them apart and never shows them in repr."""
    event = parse_callback(suspended())
    assert "username" not in event.raw and "password" not in event.raw
    assert (event.username, event.password) == ("cb-user", "cb-secret")
    assert "cb-secret" not in repr(event)
    assert event.raw["requestId"] == REQUEST


def test_credentials_are_not_stripped() -> None:
    """Echoed credentials are kept exactly, so a constant-time compare sees what was sent."""
    event = parse_callback(
        envelope(password=" spaced ", deviceResponse={shapes.SMS_SENT: {"status": "Sent"}})
    )
    assert event.password == " spaced "


def test_outcome_key_ignores_retry_count_and_credentials() -> None:
    """A retry (callbackCount 2..4, other credentials) has the same outcome_key as the first attempt."""
    first = parse_callback(suspended())
    retry_body = suspended()
    retry_body.update(callbackCount=3, maxCallbackThreshold=5, username="", password="rotated")
    retry = parse_callback(retry_body)
    assert retry.callback_count == 3
    assert retry.outcome_key == first.outcome_key


def test_outcome_key_separates_different_outcomes() -> None:
    """Different devices, outcomes or reachability changes get different keys."""
    keys = {
        parse_callback(suspended()).outcome_key,
        parse_callback(envelope(deviceResponse={shapes.STATE_CHANGE: {"state": "active"}})).outcome_key,
        parse_callback(envelope(deviceResponse={shapes.SMS_SENT: {"status": "Sent"}})).outcome_key,
        parse_callback(envelope(deviceResponse={shapes.SMS_DELIVERY: {"status": "Delivered"}})).outcome_key,
        parse_callback(reachability("REACHABLE")).outcome_key,
        parse_callback(reachability("UNREACHABLE", "2026-01-10T12:30:00Z")).outcome_key,
        parse_callback(reachability("REACHABLE", "2026-01-10T13:00:00Z")).outcome_key,
        parse_callback(
            envelope(status="Failed", faultResponse={"faultcode": "A", "faultstring": "a"})
        ).outcome_key,
    }
    other_device = suspended()
    other_device["deviceIds"] = [{"id": "89148000000800139716", "kind": "iccid"}]
    keys.add(parse_callback(other_device).outcome_key)
    assert len(keys) == 9


def test_outcome_key_contains_no_identifier() -> None:
    """The key is a kind plus a hash: no ICCID or MDN in it."""
    key = parse_callback(suspended()).outcome_key
    assert key.startswith("suspended:")
    assert ICCID not in key and "5551234567" not in key


@given(
    st.integers(1, 4),
    st.text(max_size=20),
    st.text(max_size=20),
    st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=3),
)
def test_outcome_key_is_stable_for_any_retry(
    count: int, user: str, password: str, junk: dict[str, int]
) -> None:
    """Whatever callbackCount and credentials a retry carries, the outcome key does not move."""
    base = parse_callback(reachability("REACHABLE")).outcome_key
    body = reachability("REACHABLE")
    body.update(callbackCount=count, username=user, password=password)
    body[shapes.DIAGNOSTICS] = {**body[shapes.DIAGNOSTICS], **{f"x-{k}": v for k, v in junk.items()}}
    assert parse_callback(body).outcome_key == base


def test_parsing_does_not_modify_the_payload() -> None:
    """parse_callback leaves the caller's dict untouched."""
    body = suspended()
    before = copy.deepcopy(body)
    parse_callback(body)
    assert body == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "must be a JSON object"),
        ("text", "must be a JSON object"),
        ({}, "no requestId"),
        ({"requestId": "", "status": "Success"}, "no requestId"),
        ({"requestId": 42, "status": "Success"}, "requestId must be text"),
        ({"requestId": REQUEST}, "nothing says what happened"),
        ({"requestId": REQUEST, "status": "Success", "deviceIds": "iccid"}, "deviceIds must be a list"),
        ({"requestId": REQUEST, "status": "Success", "deviceIds": [{"kind": "iccid"}]}, r"deviceIds\[0\]"),
        ({"requestId": REQUEST, "deviceResponse": "done"}, "deviceResponse must be a JSON object"),
        ({"requestId": REQUEST, "status": "Failed", "faultResponse": "x"}, "faultResponse must be"),
        (
            {"requestId": REQUEST, "status": "Success", "callbackCount": "two"},
            "callbackCount must be a number",
        ),
        ({"requestId": REQUEST, "deviceResponse": {shapes.STATE_CHANGE: "suspend"}}, "stateChange must be"),
    ],
)
def test_not_a_callback(body: Any, reason: str) -> None:
    """Bodies that are not callbacks raise InvalidCallback with a specific reason."""
    with pytest.raises(InvalidCallback, match=reason):
        parse_callback(body)


def test_invalid_callback_message_has_no_identifier() -> None:
    """InvalidCallback reasons are safe to log: they never quote ids from the body."""
    with pytest.raises(InvalidCallback) as info:
        parse_callback({"requestId": REQUEST, "status": "Success", "deviceIds": [{"kind": ICCID}]})
    assert ICCID not in str(info.value)


def test_single_device_object_and_missing_device_ids() -> None:
    """deviceIds as a single object is accepted; without deviceIds, device is None."""
    one = parse_callback(
        {"requestId": REQUEST, "status": "Success", "deviceIds": {"id": ICCID, "kind": "ICCID"}}
    )
    assert one.device == DeviceId("iccid", ICCID)
    none = parse_callback({"requestId": REQUEST, "status": "Success"})
    assert none.device is None and none.device_ids == ()
