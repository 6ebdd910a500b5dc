"""Reachability monitors and status queries: DiagnosticsService callbacks that follow the devices."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.sandbox import EXAMPLE_ICCID
from tests.helpers.sandbox import ACCOUNT, Api, CallbackListener, of_request, running_sandbox

MONITOR = "/m2m/v1/diagnostics/basic/devicereachability"


def _start(api: Api, iccid: str, kind: str, clock_now: datetime) -> str:
    body = {
        "accountName": ACCOUNT,
        "requestType": kind,
        "devices": [{"deviceIds": [{"id": iccid, "kind": "iccid"}]}],
        "monitorExpirationTime": (clock_now + timedelta(days=30)).isoformat(),
    }
    response = api.post(MONITOR, body)
    assert response.status_code == 200, response.text
    return str(response.json()["requestId"])


def _diag(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body["diagnosticsResponse"])


def test_monitor_reports_both_directions_for_data_and_loss() -> None:
    """Registration says REACHABLE; flipping the device down and up calls back UNREACHABLE then REACHABLE."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        api.register("DiagnosticsService", listener.url)
        rid = _start(api, EXAMPLE_ICCID, "REACHABLE_FOR_DATA_AND_LOSS", clock())
        registration = _diag(listener.wait_for(1, of_request(rid))[0])
        assert registration["reachabilityStatus"] == "REACHABLE"
        assert registration["monitorType"] == "REACHABLE_FOR_DATA_AND_LOSS"
        assert "maxUEAvailabilityTime" in registration
        monitor_id = registration["monitorId"]
        sandbox.set_reachability(EXAMPLE_ICCID, False)
        sandbox.set_reachability(EXAMPLE_ICCID, True)
        events = [_diag(b) for b in listener.wait_for(3, of_request(rid))]
        assert [e["reachabilityStatus"] for e in events[1:]] == ["UNREACHABLE", "REACHABLE"]
        assert {e["monitorId"] for e in events} == {monitor_id}


def test_reachable_only_monitor_ignores_loss_and_suspension_is_a_loss() -> None:
    """REACHABLE_FOR_DATA reports coming back only; LOSS_OF_CONNECTIVITY reports a suspended line going away."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        api.register("DiagnosticsService", listener.url)
        api.register("CarrierService", listener.url)
        data = _start(api, EXAMPLE_ICCID, "REACHABLE_FOR_DATA", clock())
        loss = _start(api, EXAMPLE_ICCID, "LOSS_OF_CONNECTIVITY", clock())
        assert _diag(listener.wait_for(1, of_request(loss))[0])["reachabilityStatus"] == "REACHABLE"
        api.action("suspend", ("iccid", EXAMPLE_ICCID))
        lost = listener.wait_for(2, of_request(loss))[1]
        assert _diag(lost)["reachabilityStatus"] == "UNREACHABLE"
        assert sandbox.wait_for_callbacks(5)
        assert len(listener.bodies(of_request(data))) == 1
        api.action("restore", ("iccid", EXAMPLE_ICCID))
        back = listener.wait_for(2, of_request(data))[1]
        assert _diag(back)["reachabilityStatus"] == "REACHABLE"


def test_a_sleepy_meter_is_reported_at_each_wake_and_sleep() -> None:
    """The asleep meter registers without a status, becomes REACHABLE at its wake and UNREACHABLE after."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        api.register("DiagnosticsService", listener.url)
        meter = sandbox.demo_devices()["asleep"]["iccid"]
        rid = _start(api, meter, "REACHABLE_FOR_DATA_AND_LOSS", clock())
        assert "reachabilityStatus" not in _diag(listener.wait_for(1, of_request(rid))[0])
        clock.advance(hours=5, minutes=1)
        sandbox.tick()
        woke = _diag(listener.wait_for(2, of_request(rid))[1])
        assert woke["reachabilityStatus"] == "REACHABLE"
        available = datetime.fromisoformat(woke["maxUEAvailabilityTime"])
        assert timedelta(0) < available - datetime.fromisoformat(woke["eventTime"]) <= timedelta(minutes=2)
        clock.advance(minutes=5)
        sandbox.tick()
        slept = _diag(listener.wait_for(3, of_request(rid))[2])
        assert slept["reachabilityStatus"] == "UNREACHABLE"
        clock.advance(hours=24)
        sandbox.tick()
        statuses = [_diag(b)["reachabilityStatus"] for b in listener.wait_for(7, of_request(rid))[1:]]
        assert statuses == ["REACHABLE", "UNREACHABLE"] * 3


def test_status_query_answers_now_or_later() -> None:
    """Reachable: one REACHABLE callback; asleep: a registration, then REACHABLE at wake; down: UNREACHABLE at expiry."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        api.register("DiagnosticsService", listener.url)
        demo = sandbox.demo_devices()

        def query(iccid: str) -> str:
            body = {
                "accountName": ACCOUNT,
                "device": {"id": iccid, "kind": "iccid"},
                "requestType": "REACHABLE_FOR_DATA",
            }
            response = api.post(MONITOR + "/status", body)
            assert response.status_code == 200, response.text
            return str(response.json()["requestId"])

        awake = query(demo["healthy"]["iccid"])
        assert _diag(listener.wait_for(1, of_request(awake))[0])["reachabilityStatus"] == "REACHABLE"
        asleep = query(demo["asleep"]["iccid"])
        down = query(demo["down"]["iccid"])
        assert "reachabilityStatus" not in _diag(listener.wait_for(1, of_request(asleep))[0])
        clock.advance(minutes=61)
        sandbox.tick()
        assert _diag(listener.wait_for(2, of_request(down))[1])["reachabilityStatus"] == "UNREACHABLE"
        assert len(listener.bodies(of_request(asleep))) == 2  # its one-hour window passed asleep too
        api.relogin()
        later = query(demo["asleep"]["iccid"])
        clock.advance(hours=4)
        sandbox.tick()
        assert _diag(listener.wait_for(2, of_request(later))[1])["reachabilityStatus"] == "UNREACHABLE"


def test_list_and_stop_monitors() -> None:
    """The list calls back once per monitor; stopped monitors call back no more."""
    with running_sandbox() as (sandbox, url, clock), Api(url) as api, CallbackListener() as listener:
        api.register("DiagnosticsService", listener.url)
        rid = _start(api, EXAMPLE_ICCID, "REACHABLE_FOR_DATA_AND_LOSS", clock())
        monitor_id = _diag(listener.wait_for(1, of_request(rid))[0])["monitorId"]
        listing = api.post(
            MONITOR + "/monitors",
            {"accountName": ACCOUNT, "devices": [{"deviceIds": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]}]},
        )
        listed = _diag(listener.wait_for(1, of_request(listing.json()["requestId"]))[0])
        assert listed["monitorId"] == monitor_id
        stopped = api.delete(MONITOR, {"accountName": ACCOUNT, "monitorIds": [monitor_id]})
        assert stopped.status_code == 200 and stopped.json()["requestId"]
        sandbox.set_reachability(EXAMPLE_ICCID, False)
        assert sandbox.wait_for_callbacks(5)
        assert len(listener.bodies(of_request(rid))) == 1
        again = api.delete(MONITOR, {"accountName": ACCOUNT, "monitorIds": [monitor_id]})
        assert again.json() == {
            "errorCode": "400",
            "errorMessage": "None of these monitorIds is an active monitor.",
        }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"requestType": "REACHABLE_SOMETIMES"}, "requestType must be one of"),
        ({"monitorExpirationTime": "2099-01-01T00:00:00Z"}, "at most 10 years"),
        ({"monitorExpirationTime": "soon"}, "is not an RFC 3339 date-time"),
        ({"devices": []}, "devices is required"),
        (
            {
                "devices": [
                    {"deviceIds": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]},
                    {"deviceIds": [{"id": "5551234567", "kind": "mdn"}]},
                ]
            },
            "one kind of identifier",
        ),
        ({"devices": [{"deviceIds": [{"id": "311480000000001", "kind": "imsi"}]}]}, "is not accepted here"),
        ({"accountName": None}, "accountName is required"),
    ],
)
def test_monitor_validation_uses_the_numeric_error_code(change: dict[str, Any], message: str) -> None:
    """This API family answers 400 {"errorCode": "400", "errorMessage": ...} and starts nothing."""
    with running_sandbox(devices=20) as (sandbox, url, clock), Api(url) as api:
        body = {
            "accountName": ACCOUNT,
            "requestType": "REACHABLE_FOR_DATA",
            "devices": [{"deviceIds": [{"id": EXAMPLE_ICCID, "kind": "iccid"}]}],
            "monitorExpirationTime": (clock() + timedelta(days=1)).isoformat(),
            **change,
        }
        response = api.post(MONITOR, body)
        assert response.status_code == 400
        assert response.json()["errorCode"] == "400"
        assert message in response.json()["errorMessage"]
        assert sandbox.state.monitors == {}
