"""Suspend, restore, SMS and cancel location: rules, limits, and one callback per device."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.sandbox import EXAMPLE_ICCID
from tests.helpers.sandbox import ACCOUNT, Api, CallbackListener, of_request, running_sandbox, wait_until

SERVICES = (
    "CarrierService",
    "EnhancedConnectivityService",
    "SMSDeliveryConfirmation",
    "ExternalProvisioningChanges",
    "ResumeTrackingNotification",
)


def _listen(api: Api, listener: CallbackListener) -> None:
    for service in SERVICES:
        api.register(service, listener.url)


def _fault(body: dict[str, Any]) -> str:
    return str(body["faultResponse"]["faultcode"])


def test_suspend_calls_back_per_device_with_the_auto_resume_date() -> None:
    """A suspend of two lines gives two CarrierService callbacks, each with stateChange and resumeDate."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        healthy = sandbox.demo_devices()["healthy"]
        rid = api.action("suspend", ("iccid", EXAMPLE_ICCID), ("mdn", healthy["mdn"]))
        bodies = listener.wait_for(2, of_request(rid))
        assert {b["deviceIds"][0]["id"] for b in bodies} == {EXAMPLE_ICCID, healthy["mdn"]}
        for body in bodies:
            assert body["status"] == "Success"
            assert (body["username"], body["password"]) == ("cb-user", "cb-pass")
            assert (body["callbackCount"], body["maxCallbackThreshold"]) == (1, 4)
            change = body["deviceResponse"]["stateChange"]
            assert change["state"] == "suspend"
            assert datetime.fromisoformat(change["resumeDate"]) == clock() + timedelta(days=90)
            assert {i["kind"] for i in change["deviceIds"]} == {"iccid", "mdn"}
        assert sandbox.device(EXAMPLE_ICCID)["state"] == "suspend"
        status = api.get(f"/m2m/v2/accounts/{ACCOUNT}/requests/{rid}/status").json()
        assert status["status"] == "Success"
        assert [s["status"] for s in status["subrequests"]] == ["Success", "Success"]


def test_state_machine_and_daily_action_limit() -> None:
    """Restore needs a suspended line, suspend an active one; the sixth action of a day fails."""
    with running_sandbox() as (_sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        line = ("iccid", EXAMPLE_ICCID)
        wrong = api.action("restore", line)
        assert _fault(listener.wait_for(1, of_request(wrong))[0]).endswith(
            "INPUT_INVALID.DeviceState.Invalid"
        )
        for operation in ("suspend", "restore", "suspend", "restore", "suspend"):
            rid = api.action(operation, line)
            assert listener.wait_for(1, of_request(rid))[0]["status"] == "Success"
        again = api.action("suspend", line)
        assert _fault(listener.wait_for(1, of_request(again))[0]).endswith(
            "INPUT_INVALID.DeviceState.Invalid"
        )
        sixth = api.action("restore", line)
        failed = listener.wait_for(1, of_request(sixth))[0]
        assert failed["status"] == "Failed"
        assert _fault(failed) == "UnifiedWebService.REQUEST_FAILED.DailyProvisioningLimit"
        assert "5 provisioning actions" in failed["faultResponse"]["faultstring"]


def test_action_limit_device_and_v1_request_status() -> None:
    """The demo line that used its five actions fails; v1 status reports it, and refuses multi-device requests."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        limited = sandbox.demo_devices()["action-limit"]["iccid"]
        rid = api.action("suspend", ("iccid", limited))
        assert _fault(listener.wait_for(1, of_request(rid))[0]).endswith("DailyProvisioningLimit")
        v1 = api.get(f"/m2m/v1/accounts/{ACCOUNT}/requests/{rid}/status")
        assert v1.json() == {"requestId": rid, "status": "Failed"}
        both = api.action("suspend", ("iccid", EXAMPLE_ICCID), ("iccid", limited))
        refused = api.get(f"/m2m/v1/accounts/{ACCOUNT}/requests/{both}/status")
        assert refused.status_code == 400
        assert refused.json()["errorCode"].endswith("REQUEST_FAILED.RequestNotFound")
        assert api.get(f"/m2m/v1/accounts/{ACCOUNT}/requests/not-a-guid/status").status_code == 400


def test_unknown_devices_and_transient_failures_fail_in_their_callbacks() -> None:
    """An unknown line fails with DeviceNotFound; a flaky plant-7 line fails once, then succeeds."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        flaky = next(d for d in sandbox.state.devices if d.flaky)
        rid = api.action("suspend", ("iccid", "89148000000000000001"), ("iccid", flaky.iccid))
        bodies = {b["deviceIds"][0]["id"]: b for b in listener.wait_for(2, of_request(rid))}
        assert _fault(bodies["89148000000000000001"]).endswith("REQUEST_FAILED.DeviceNotFound")
        assert _fault(bodies[flaky.iccid]).endswith("REQUEST_FAILED.UnexpectedError")
        retry = api.action("suspend", ("iccid", flaky.iccid))
        assert listener.wait_for(1, of_request(retry))[0]["status"] == "Success"


def test_group_suspend_targets_every_member() -> None:
    """groupName selects the whole group: one callback per member, the action-limited one failing."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        members = [d for d in sandbox.state.devices if "plant-7" in d.groups]
        flaky = sum(1 for d in members if d.flaky)
        response = api.post(
            "/m2m/v1/devices/actions/suspend", {"accountName": ACCOUNT, "groupName": "plant-7"}
        )
        rid = response.json()["requestId"]
        bodies = listener.wait_for(len(members), of_request(rid))
        assert len(bodies) == len(members)
        reasons = sorted(_fault(b).split(".", 1)[1] for b in bodies if b["status"] == "Failed")
        assert (
            reasons == ["REQUEST_FAILED.DailyProvisioningLimit"] + ["REQUEST_FAILED.UnexpectedError"] * flaky
        )
        assert flaky >= 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "INPUT_INVALID.RequestUndefined"),
        (
            {"devices": [{"deviceIds": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]}], "groupName": "meters"},
            "INPUT_INVALID.RequestUndefined",
        ),
        ({"devices": [{"deviceIds": []}]}, "INPUT_INVALID.Devices[0].deviceIds.Null"),
        (
            {"devices": [{"deviceIds": [{"id": "123", "kind": "iccid"}]}]},
            "INPUT_INVALID.Device.Identifier.Invalid",
        ),
        (
            {"devices": [{"deviceIds": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]}] * 10_001},
            "INPUT_INVALID.MaxRequestsExceeded",
        ),
        ({"groupName": "no-such-group"}, "REQUEST_FAILED.GroupNotFound"),
        ({"accountName": "0000000001-00001", "groupName": "meters"}, "REQUEST_FAILED.AccountNotFound"),
    ],
)
def test_bad_provisioning_requests_change_nothing(body: dict[str, Any], code: str) -> None:
    """A malformed suspend is a 400 with its specific code, and no line changes state."""
    with running_sandbox(devices=40) as (sandbox, url, _clock), Api(url) as api:
        before = [d.state for d in sandbox.state.devices]
        response = api.post("/m2m/v1/devices/actions/suspend", body)
        assert response.status_code == 400
        assert response.json()["errorCode"] == f"UnifiedWebService.{code}"
        assert [d.state for d in sandbox.state.devices] == before
        assert sandbox.pending_callbacks() == 0


def test_auto_resume_notice_and_suspend_day_limits() -> None:
    """Seven days before the 90-day cap a ResumeTrackingNotification; at it the line resumes by itself;
    a line with 180 days in the last year cannot be suspended again."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        line = ("iccid", EXAMPLE_ICCID)
        api.action("suspend", line)
        clock.advance(days=83, minutes=1)
        sandbox.tick()
        notice = listener.wait_for(1, lambda b: "resumeTrackingNotification" in b.get("deviceResponse", {}))[
            0
        ]
        resume = datetime.fromisoformat(notice["deviceResponse"]["resumeTrackingNotification"]["resumeDate"])
        assert resume - clock() < timedelta(days=7)
        clock.advance(days=7)
        sandbox.tick()
        change = listener.wait_for(1, lambda b: "externalProvisioningChange" in b.get("deviceResponse", {}))[
            0
        ]
        assert change["deviceResponse"]["externalProvisioningChange"]["changeType"] == "Resume"
        assert sandbox.device(EXAMPLE_ICCID)["state"] == "active"
        api.relogin()
        second = api.action("suspend", line)
        granted = listener.wait_for(1, of_request(second))[0]["deviceResponse"]["stateChange"]["resumeDate"]
        assert datetime.fromisoformat(granted) - clock() == timedelta(days=90)
        clock.advance(days=91)
        sandbox.tick()
        api.relogin()
        third = api.action("suspend", line)
        assert _fault(listener.wait_for(1, of_request(third))[0]).endswith("REQUEST_FAILED.SuspendDaysLimit")


def test_pending_device_holds_its_requests_until_its_condition_changes() -> None:
    """A suspend of the 'pending' line stays Pending with no callback; it completes when the condition clears."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        pending = sandbox.demo_devices()["pending"]["iccid"]
        rid = api.action("suspend", ("iccid", pending))
        assert api.get(f"/m2m/v1/accounts/{ACCOUNT}/requests/{rid}/status").json()["status"] == "Pending"
        assert sandbox.wait_for_callbacks(5)
        assert listener.bodies(of_request(rid)) == []
        sandbox.set_condition(pending, "healthy")
        assert listener.wait_for(1, of_request(rid))[0]["status"] == "Success"
        assert api.get(f"/m2m/v1/accounts/{ACCOUNT}/requests/{rid}/status").json()["status"] == "Success"


def _sms(api: Api, iccid: str, text: str = "reboot", **extra: Any) -> Any:
    body = {
        "accountName": ACCOUNT,
        "smsMessage": text,
        "deviceIds": [{"id": iccid, "kind": "iccid"}],
        **extra,
    }
    return api.post("/m2m/v1/sms", body)


def test_sms_is_sent_then_delivered_or_expired_depending_on_the_device() -> None:
    """Reachable: Sent then Delivered; asleep: Delivered at its next wake; down: Expired after 5 days."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        demo = sandbox.demo_devices()

        def states(rid: str, count: int) -> list[tuple[str, str]]:
            found = []
            for body in listener.wait_for(count, of_request(rid)):
                ((key, value),) = body["deviceResponse"].items()
                found.append((key, value["status"]))
            return found

        awake = _sms(api, demo["healthy"]["iccid"]).json()["requestId"]
        assert states(awake, 2) == [("smsResponse", "Sent"), ("smsDeliveryConfirmation", "Delivered")]
        asleep = _sms(api, demo["asleep"]["iccid"]).json()["requestId"]
        down = _sms(api, demo["down"]["iccid"]).json()["requestId"]
        assert states(asleep, 1) == [("smsResponse", "Sent")]
        clock.advance(hours=5, minutes=1)
        sandbox.tick()
        assert states(asleep, 2)[1] == ("smsDeliveryConfirmation", "Delivered")
        assert len(listener.bodies(of_request(down))) == 1
        clock.advance(days=5)
        sandbox.tick()
        assert states(down, 2)[1] == ("smsDeliveryConfirmation", "Expired")
        api.relogin()
        v2 = api.get(f"/m2m/v2/accounts/{ACCOUNT}/requests/{down}/status")
        assert v2.json()["status"] == "Failed"


def test_sms_reboots_a_hung_device() -> None:
    """A delivered SMS to the hung line brings its data session back (the bot's reboot remedy)."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        _listen(api, listener)
        hung = sandbox.demo_devices()["hung"]["iccid"]
        assert sandbox.device(hung)["connected"] is False
        rid = _sms(api, hung, "AT+CFUN=1,1").json()["requestId"]
        listener.wait_for(2, of_request(rid))
        assert sandbox.device(hung)["connected"] is True


@pytest.mark.parametrize(
    ("text", "extra", "code"),
    [
        ("", {}, "INPUT_INVALID.SmsMessage.Null"),
        ("x" * 161, {}, "INPUT_INVALID.SmsMessage.TooLong"),
        ("{" * 81, {}, "INPUT_INVALID.SmsMessage.TooLong"),
        ("ü" * 71, {"dataEncoding": "8-bit-UTF-8"}, "INPUT_INVALID.SmsMessage.TooLong"),
        ("x" * 141, {"dataEncoding": "8-bit-ASCII"}, "INPUT_INVALID.SmsMessage.TooLong"),
        ("reboot ☃", {}, "INPUT_INVALID.Request.InvalidCharacter"),
        ("reboot", {"dataEncoding": "base64"}, "INPUT_INVALID.DataEncoding.Invalid"),
        ("reboot", {"accountName": None}, "INPUT_INVALID.AccountName.Null"),
    ],
)
def test_sms_validation(text: str, extra: dict[str, Any], code: str) -> None:
    """Length per encoding (160 GSM 7-bit septets, 140 bytes 8-bit), alphabet and required fields."""
    with running_sandbox(devices=20) as (sandbox, url, _clock), Api(url) as api:
        response = _sms(api, EXAMPLE_ICCID, text, **extra)
        assert response.status_code == 400
        assert response.json()["errorCode"] == f"UnifiedWebService.{code}"
        assert sandbox.pending_callbacks() == 0


def test_sms_limits_accept_the_maximum() -> None:
    """Exactly 160 GSM characters and 140 UTF-8 bytes are accepted."""
    with running_sandbox(devices=20) as (_sandbox, url, _clock), Api(url) as api:
        assert _sms(api, EXAMPLE_ICCID, "x" * 160).status_code == 200
        assert _sms(api, EXAMPLE_ICCID, "ü" * 70, dataEncoding="8-bit-UTF-8").status_code == 200


def _cancel(api: Api, *ids: tuple[str, str]) -> Any:
    body = {"accountName": ACCOUNT, "devices": [{"deviceIds": [{"id": i, "kind": k}]} for k, i in ids]}
    return api.post("/m2m/v1/devices/actions/cancellocation", body)


def test_cancel_location_is_one_device_queued_under_an_hourly_cap() -> None:
    """Two devices in one call are refused; beyond the cap a request waits for the next hour."""
    with (
        running_sandbox(cancel_location_per_hour=2) as (sandbox, url, clock),
        Api(url) as api,
        CallbackListener() as listener,
    ):
        _listen(api, listener)
        demo = sandbox.demo_devices()
        two = _cancel(api, ("iccid", EXAMPLE_ICCID), ("iccid", demo["healthy"]["iccid"]))
        assert two.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.NumberofDevices"
        first = _cancel(api, ("iccid", demo["hung"]["iccid"])).json()["requestId"]
        second = _cancel(api, ("mdn", demo["healthy"]["mdn"])).json()["requestId"]
        third = _cancel(api, ("imsi", sandbox.device("demo-down")["ids"]["imsi"])).json()["requestId"]
        for rid in (first, second):
            result = listener.wait_for(1, of_request(rid))[0]["deviceResponse"]["cancelLocationResponse"]
            assert result["status"] == "Completed"
        assert sandbox.device("demo-hung")["connected"] is True  # re-attached: the hung modem recovered
        assert sandbox.wait_for_callbacks(5)
        assert listener.bodies(of_request(third)) == []
        clock.advance(hours=1)
        sandbox.tick()
        assert listener.wait_for(1, of_request(third))[0]["status"] == "Success"
        api.relogin()
        unknown = _cancel(api, ("iccid", "89148000000000000001"))
        assert unknown.json()["errorCode"].endswith("REQUEST_FAILED.DeviceNotFound")
        bad_kind = _cancel(api, ("meid", "A1000012345678"))
        assert bad_kind.json()["errorCode"].endswith("INPUT_INVALID.Device.Kind.Invalid")


def test_v2_status_lists_per_device_sub_requests() -> None:
    """Each asynchronous request is listed by v2 with its per-device sub-requests."""
    with running_sandbox(devices=20) as (_sandbox, url, _clock), Api(url) as api:
        rid = api.action("suspend", ("iccid", EXAMPLE_ICCID))
        found = wait_until(lambda: api.get(f"/m2m/v2/accounts/{ACCOUNT}/requests/{rid}/status").json())
        assert found["subrequests"] == [
            {"ids": [{"id": EXAMPLE_ICCID, "kind": "iccid"}], "status": "Success"}
        ]
