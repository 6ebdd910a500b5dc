"""The /_sandbox/ control routes over HTTP, and ``tsbot sandbox`` as a process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from bot.sandbox import EXAMPLE_ICCID, create_sandbox
from tests.helpers.sandbox import ACCOUNT, Api, CallbackListener, of_request, running_sandbox

ROOT = Path(__file__).resolve().parents[2]
DIAG = "/m2m/v1/devices/extendeddiagnostics/actions/list"


def _diag_body(iccid: str = EXAMPLE_ICCID) -> dict[str, object]:
    return {"accountName": ACCOUNT, "deviceList": [{"id": iccid, "kind": "iccid"}]}


def test_summary_conditions_and_device_views() -> None:
    """GET /_sandbox/ shows credentials and demo lines; a device is found by kind:id, bare id or label."""
    with running_sandbox() as (_sandbox, url, _clock), httpx.Client(base_url=url) as http:
        summary = http.get("/_sandbox/").json()
        assert (summary["account"], summary["clientId"], summary["username"]) == (
            ACCOUNT,
            "sandbox-client",
            "sandbox-user",
        )
        assert summary["demoDevices"]["usage-spike"]["iccid"] == EXAMPLE_ICCID
        conditions = http.get("/_sandbox/conditions").json()
        assert set(conditions["conditions"]) == set(conditions["demoDevices"])
        for ref in (f"iccid:{EXAMPLE_ICCID}", EXAMPLE_ICCID, "demo-usage-spike", "DEMO-USAGE-SPIKE"):
            assert http.get(f"/_sandbox/devices/{ref}").json()["index"] == 0
        missing = http.get("/_sandbox/devices/iccid:89148000000000000001")
        assert missing.status_code == 404 and "no device" in missing.json()["error"]
        assert http.get("/_sandbox/nothing-here").status_code == 404


def test_reachability_and_condition_routes() -> None:
    """Flipping reachability and setting a condition over HTTP change what ThingSpace reports."""
    with running_sandbox() as (_sandbox, url, _clock), Api(url) as api:
        down = api.http.post("/_sandbox/devices/demo-healthy/reachability", json={"reachable": False})
        assert down.json()["reachable"] is False and down.json()["attached"] is False
        iccid = down.json()["ids"]["iccid"]
        assert api.diagnostics(iccid)["Connectivity"]["Connected"] == "false"
        up = api.http.post("/_sandbox/devices/demo-healthy/reachability", json={"reachable": True})
        assert up.json()["reachable"] is True
        hung = api.http.post(f"/_sandbox/devices/iccid:{iccid}/condition", json={"condition": "hung"})
        assert hung.json()["condition"] == "hung"
        bad = api.http.post("/_sandbox/devices/demo-healthy/reachability", json={"reachable": "yes"})
        assert bad.status_code == 400 and "reachable" in bad.json()["error"]
        unknown = api.http.post("/_sandbox/devices/demo-healthy/condition", json={"condition": "cursed"})
        assert unknown.status_code == 400 and "unknown condition" in unknown.json()["error"]
        broken = api.http.post("/_sandbox/devices/demo-healthy/condition", content=b"{oops")
        assert broken.status_code == 400


def test_request_log_filters_by_path_method_and_seq() -> None:
    """The request log lists method, path, time and status, and filters exactly or by glob."""
    with running_sandbox(devices=20) as (_sandbox, url, _clock), Api(url) as api:
        api.post(DIAG, _diag_body())
        api.post(DIAG, _diag_body("89148000000000000001"))
        logins = api.http.get("/_sandbox/requests", params={"path": "/m2m/v1/session/login"}).json()
        assert [(e["method"], e["status"]) for e in logins] == [("POST", 200)]
        diags = api.http.get("/_sandbox/requests", params={"path": "/m2m/v1/devices/*"}).json()
        assert [e["status"] for e in diags] == [200, 400]
        assert diags[1]["errorCode"].endswith("DeviceNotFound")
        assert diags[0]["time"] == "2026-03-10T15:30:00+00:00"
        after = api.http.get("/_sandbox/requests", params={"after": diags[0]["seq"]}).json()
        assert [e["seq"] for e in after] == [diags[1]["seq"]]
        assert api.http.get("/_sandbox/requests", params={"after": "x"}).status_code == 400


def test_injected_faults_latency_and_reset() -> None:
    """A fault answers the next N matching calls, then the real answer returns; reset clears everything."""
    with running_sandbox(devices=20) as (sandbox, url, _clock), Api(url) as api:
        rule = {
            "path": DIAG,
            "count": 2,
            "status": 503,
            "body": {"errorCode": "Gateway.Busy", "errorMessage": "busy"},
        }
        assert api.http.post("/_sandbox/faults", json=rule).status_code == 200
        assert [api.post(DIAG, _diag_body()).status_code for _ in range(3)] == [503, 503, 200]
        assert (
            api.http.post(
                "/_sandbox/faults", json={"path": DIAG, "latency": 0.05, "method": "post"}
            ).status_code
            == 200
        )
        assert api.http.get("/_sandbox/faults").json()[0]["latency"] == 0.05
        assert api.post(DIAG, _diag_body()).status_code == 200
        assert api.http.get("/_sandbox/faults").json() == []
        assert api.http.post("/_sandbox/faults", json={"path": "no-slash", "status": 500}).status_code == 400
        assert api.http.post("/_sandbox/faults", json={"path": DIAG}).status_code == 400
        assert api.http.post("/_sandbox/latency", json={"seconds": 0.01}).json() == {"seconds": 0.01}
        assert api.http.post("/_sandbox/latency", json={"seconds": -1}).status_code == 400
        sandbox.set_condition("demo-healthy", "down")
        summary = api.http.post("/_sandbox/reset", json={}).json()
        assert summary["latency"] == 0.0
        assert sandbox.device("demo-healthy")["condition"] == "healthy"
        assert sandbox.requests_received() == []
        assert api.post(DIAG, _diag_body()).status_code == 200  # tokens and sessions survive a plain reset
        api.http.post("/_sandbox/reset", json={"everything": True})
        assert api.post(DIAG, _diag_body()).status_code == 401


def test_notify_routes_send_external_change_and_resume_tracking() -> None:
    """notify applies a portal suspend and calls back; resume tracking needs a suspended line."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        api.register("ExternalProvisioningChanges", listener.url)
        api.register("ResumeTrackingNotification", listener.url)
        changed = api.http.post(
            "/_sandbox/notify",
            json={
                "service": "ExternalProvisioningChanges",
                "device": "demo-healthy",
                "change": "Suspend",
                "by": "portal:jane",
            },
        )
        body = listener.wait_for(1, of_request(changed.json()["requestId"]))[0]
        change = body["deviceResponse"]["externalProvisioningChange"]
        assert (change["changeType"], change["state"], change["changedBy"]) == (
            "Suspend",
            "suspend",
            "portal:jane",
        )
        assert sandbox.device("demo-healthy")["state"] == "suspend"
        notice = api.http.post(
            "/_sandbox/notify", json={"service": "ResumeTrackingNotification", "device": "demo-healthy"}
        )
        tracked = listener.wait_for(1, of_request(notice.json()["requestId"]))[0]
        assert (
            "Device will be auto resumed on"
            in tracked["deviceResponse"]["resumeTrackingNotification"]["comment"]
        )
        refused = api.http.post(
            "/_sandbox/notify", json={"service": "ResumeTrackingNotification", "device": "demo-usage-spike"}
        )
        assert refused.status_code == 400 and "not suspended" in refused.json()["error"]
        wrong = api.http.post(
            "/_sandbox/notify",
            json={"service": "ExternalProvisioningChanges", "device": "demo-down", "change": "Explode"},
        )
        assert wrong.status_code == 400


def test_clock_and_tick_routes() -> None:
    """With a ManualClock the clock route moves time and runs what became due; the wall clock refuses."""
    with running_sandbox(devices=20) as (_sandbox, url, _clock), httpx.Client(base_url=url) as http:
        moved = http.post("/_sandbox/clock", json={"advance": 3600}).json()
        assert moved["now"] == "2026-03-10T16:30:00+00:00"
        assert "ran" in http.post("/_sandbox/tick").json()
    wall = create_sandbox(devices=20)
    try:
        try:
            wall.advance_clock(10)
        except ValueError as exc:
            assert "wall clock" in str(exc)
        else:
            raise AssertionError("a wall-clock sandbox must refuse to move time")
    finally:
        wall.close()


def test_tsbot_sandbox_starts_prints_its_url_and_answers() -> None:
    """`tsbot sandbox --port 0` prints the base URL and credentials, issues tokens, and stops on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--port", "0", "--devices", "30", "--seed", "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("ThingSpace sandbox at http://127.0.0.1:"), first
        base = first.split()[3]
        lines = [process.stdout.readline() for _ in range(5)]
        assert "sandbox-client / sandbox-secret" in lines[0]
        assert "sandbox-user / sandbox-pass" in lines[1]
        with Api(base) as api:
            assert api.get(f"/m2m/v1/accounts/{ACCOUNT}").json()["accountName"] == ACCOUNT
            assert api.diagnostics(EXAMPLE_ICCID)["DeviceIdentifier"]["ICCID"] == EXAMPLE_ICCID
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == 0


def test_tsbot_sandbox_refuses_bad_options() -> None:
    """An impossible account is refused with a clear message and exit status 2."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--account", "12345"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "account must look like 0000123456-00001" in done.stderr


def test_condition_route_reaches_the_new_diagnostic_conditions() -> None:
    """over-plan, wake-overdue, imei-changed and diag-unavailable can be set on any line over HTTP;
    imei-changed moves the SIM at once, diag-unavailable fails its diagnostics until the line changes again."""
    with running_sandbox(devices=40) as (sandbox, url, _clock), Api(url) as api:
        conditions = api.http.get("/_sandbox/conditions").json()
        for name in ("over-plan", "wake-overdue", "imei-changed", "diag-unavailable"):
            assert name in conditions["conditions"]
            assert conditions["demoDevices"][name]["label"] == f"demo-{name}"
        line = sandbox.state.devices[30]
        ref = f"/_sandbox/devices/iccid:{line.iccid}/condition"
        over = api.http.post(ref, json={"condition": "over-plan"}).json()
        assert over["condition"] == "over-plan" and over["servicePlan"] == "m2m4G"
        overdue = api.http.post(ref, json={"condition": "wake-overdue"}).json()
        assert overdue["attached"] is False and overdue["profile"] == "down"
        before = line.original_imei
        changed = api.http.post(ref, json={"condition": "imei-changed"}).json()
        assert changed["ids"]["imei"] == line.spare_imei != before
        assert changed["imeiChangePending"] is False
        assert api.diagnostics(line.iccid)["DeviceIdentifier"]["IMEI"] == line.spare_imei
        broken = api.http.post(ref, json={"condition": "diag-unavailable"}).json()
        assert broken["diagnosticsUnavailable"] is True
        failing = api.post(DIAG, _diag_body(line.iccid))
        assert failing.status_code == 500
        assert failing.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.UnexpectedError"
        healthy = api.http.post(ref, json={"condition": "healthy"}).json()
        assert healthy["diagnosticsUnavailable"] is False and healthy["ids"]["imei"] == before
        assert api.post(DIAG, _diag_body(line.iccid)).status_code == 200
