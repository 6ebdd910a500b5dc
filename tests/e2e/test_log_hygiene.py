"""Logs and metrics after a scripted session through every path, errors included.

The whole bot runs (sandbox, Slack stand-in, callbacks); every log record goes through the
production filter and formatter. No secret, no ThingSpace token and no full phone number, ICCID or
IMEI may appear; every line is JSON; and /metrics shows the counts of what happened.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from bot.core.logs import capture_logs
from bot.local_stack import CALLBACK_PASSWORD, SIGNING_SECRET, LocalStack
from storage import directory

TRACKER = "89148000000800139708"


def test_a_session_through_every_path_leaks_nothing(tmp_path: Path) -> None:
    """Happy paths, bad input, forged requests, ThingSpace faults and callbacks: nothing secret is logged."""
    with capture_logs("DEBUG") as captured, LocalStack(tmp_path, devices=60, scheduler=False) as stack:
        assert stack.runtime is not None and stack.driver is not None
        db = stack.runtime.pool.get()
        healthy = directory.find(db, "demo-healthy", limit=1)[0][0]
        stack.command("find 9708")
        stack.command(f"status iccid:{TRACKER}")
        stack.command(f"suspend iccid:{TRACKER} --reason stolen")
        stack.click("Confirm")
        stack.command(f'sms {healthy.key} "REBOOT"', user="U0OPS1")
        stack.command("suspend 12345")  # bad id
        stack.command(f"suspend iccid:{TRACKER}", user="U0NOC1", channel="C0NOC")  # denied
        stack.sandbox.inject_fault("/m2m/v1/devices/extendeddiagnostics/actions/list", status=500, count=10)
        stack.command(f"diag iccid:{TRACKER}")  # a ThingSpace failure inside a job
        body = b"command=/ts&text=help"
        headers = stack.driver.sign(body)
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
        assert stack.driver.post_raw(body, headers).status_code == 401  # forged Slack request
        forged = {
            "username": "tsbot-callbacks",
            "password": "wrong",
            "requestId": "x",
            "deviceIds": [{"id": TRACKER, "kind": "iccid"}],
            "status": "Success",
        }
        assert httpx.post(stack.bot_url + "/thingspace/callbacks", json=forged).status_code == 401
        stranger = {
            **forged,
            "password": CALLBACK_PASSWORD,
            "requestId": "11111111-2222-3333-4444-555555555555",
            "deviceResponse": {"stateChange": {"state": "suspend"}},
            "callbackCount": 1,
        }
        assert httpx.post(stack.bot_url + "/thingspace/callbacks", json=stranger).status_code == 200
        assert stack.settle(60)
        metrics = httpx.get(stack.bot_url + "/metrics").text
        auth = stack.sandbox.auth  # type: ignore[attr-defined]
        tokens = [*auth._valid_tokens, *auth._sessions]
        device = stack.sandbox.device(TRACKER)
    text = captured.text
    assert text.strip(), "the session logged nothing at DEBUG"
    records = [json.loads(line) for line in text.strip().splitlines()]  # every line is structured
    assert all(r["request_id"] for r in records), "a log line without a request id"
    assert any(str(r["request_id"]).startswith("job-") for r in records)  # the worker's lines name their job
    secrets = [
        SIGNING_SECRET,
        CALLBACK_PASSWORD,
        "sandbox-secret",
        "sandbox-pass",
        "xoxb-tsbot-demo",
        *tokens,
    ]
    for secret in secrets:
        assert secret not in text, f"a secret leaked into the logs: {secret[:6]}…"
    identifiers = [
        TRACKER,
        healthy.ids["iccid"],
        *[v for k, v in device["ids"].items() if k in ("mdn", "imei", "msisdn")],
    ]
    for value in identifiers:
        assert value not in text, f"a full identifier leaked into the logs: …{value[-4:]}"
    assert re.search(r'tsbot_commands_total\{outcome="ok",verb="suspend"\} 1\.0', metrics)
    assert re.search(r'tsbot_commands_total\{outcome="denied",verb="suspend"\} 1\.0', metrics)
    assert re.search(r'tsbot_commands_total\{outcome="invalid",verb="suspend"\} 1\.0', metrics)
    assert re.search(r'tsbot_callbacks_total\{result="rejected"\} 1\.0', metrics)
    accepted = re.search(r'tsbot_callbacks_total\{result="accepted"\} (\d+)', metrics)
    assert accepted and int(accepted.group(1)) >= 3  # suspend result, SMS sent, SMS delivered, the stranger
    assert "tsbot_ack_seconds_count" in metrics
    assert re.search(r'tsbot_thingspace_errors_total\{[^}]*operation="extended_diagnostics"', metrics)
