"""Verizon's own Python SDK (``sdksio-verizon-apis-sdk``, PyPI) reads ``tsbot sandbox``.

The sandbox speaks the wire shapes the bot relies on; the strongest check that they are Verizon's
is Verizon's generated client, unmodified, parsing them into its own models. The SDK has no
"custom base URL" setting: its ``Configuration.get_base_uri(server)`` maps each ``Server`` of an
``Environment`` to a URL (``Server.THINGSPACE`` → ``https://thingspace.verizon.com/api``,
``Server.OAUTH_SERVER`` → ``…/api/ts/v1``), so :class:`_SandboxConfiguration` overrides exactly
that method and the sandbox on loopback answers as ``/api`` would. Everything else — OAuth client
credentials, the ``VZ-M2M-Token`` session, request serialisation, response models — is the SDK's.

Read through the SDK:

* provisioning history (``DeviceManagementController.list_devices_provisioning_history``,
  ``DeviceProvisioningHistoryListRequest`` → ``DeviceProvisioningHistoryListResult``), including a
  change made outside the bot through ``/_sandbox/notify``;
* the device-SMS inbox (``DeviceSMSMessagingController.get_sms_messages``, ``GET
  /m2m/v1/sms/{account}/history`` → ``SmsMessagesResponse`` of ``GIOSmsMessage``, whose
  ``timestamp`` the SDK parses as RFC 3339), paged by the ``Location`` header's ``next`` token;
* SMS event history (``list_sms_message_history``, ``SMSEventHistoryRequest`` →
  ``GIORequestResponse``); its events arrive by a DeviceService callback to a listener registered
  through the SDK (``ConnectivityCallbacksController.register_callback``), and the request's
  status is read through the SDK (``AccountRequestsController``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from verizon.configuration import Configuration, Server
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.models.device_id import DeviceId
from verizon.models.device_provisioning_history_list_request import DeviceProvisioningHistoryListRequest
from verizon.models.log_in_request import LogInRequest
from verizon.models.register_callback_request import RegisterCallbackRequest
from verizon.models.sms_event_history_request import SMSEventHistoryRequest
from verizon.verizon_client import VerizonClient

from bot.sandbox import Sandbox
from bot.thingspace import shapes
from tests.helpers.thingspace import Running, callback_listener, running_sandbox

ACCOUNT = "0000123456-00001"


class _SandboxConfiguration(Configuration):
    """The SDK's configuration with every server at the sandbox (see the module docstring)."""

    def __init__(self, sandbox_url: str, **options: Any) -> None:
        self.sandbox_url = sandbox_url
        super().__init__(**options)

    def get_base_uri(self, server: Server = Server.THINGSPACE) -> str:
        return self.sandbox_url + ("/ts/v1" if server == Server.OAUTH_SERVER else "")


def _configuration(url: str, **credentials: Any) -> Configuration:
    oauth = ThingspaceOauthCredentials(oauth_client_id="sandbox-client", oauth_client_secret="sandbox-secret")
    return _SandboxConfiguration(url, thingspace_oauth_credentials=oauth, timeout=10, **credentials)


@pytest.fixture
def running() -> Iterator[Running]:
    with running_sandbox(devices=40) as running:
        yield running


@pytest.fixture
def sdk(running: Running) -> VerizonClient:
    """The SDK's client, logged in as the SDK does it: OAuth client credentials, then a session."""
    login = VerizonClient(config=_configuration(running.url)).session_management
    answer = login.start_connectivity_management_session(
        LogInRequest(username="sandbox-user", password="sandbox-pass")
    )
    assert answer.status_code == 200
    token = answer.body.session_token
    assert token
    return VerizonClient(
        config=_configuration(running.url, vz_m2m_token_credentials=VZM2mTokenCredentials(vz_m2m_token=token))
    )


def _iccid(sandbox: Sandbox, label: str) -> str:
    return str(sandbox.device(label)["ids"]["iccid"])


def test_the_sdk_reads_provisioning_history(running: Running, sdk: VerizonClient) -> None:
    iccid = _iccid(running.sandbox, "demo-healthy")
    running.clock.advance(minutes=5)
    running.sandbox.notify(
        shapes.EXTERNAL_PROVISIONING_CHANGES, f"iccid:{iccid}", change="Suspend", by="jdoe@fleetops.example"
    )
    running.clock.advance(minutes=5)
    running.sandbox.notify(shapes.EXTERNAL_PROVISIONING_CHANGES, f"iccid:{iccid}", change="Resume")
    now = running.clock()
    request = DeviceProvisioningHistoryListRequest(
        device_id=DeviceId(id=iccid, kind="iccid"),
        earliest=(now - timedelta(days=365 * 3)).isoformat(),
        latest=now.isoformat(),
    )
    answer = sdk.device_management.list_devices_provisioning_history(request)
    assert answer.status_code == 200
    result = answer.body  # DeviceProvisioningHistoryListResult
    assert result.has_more_data is False
    events = result.provisioning_history  # list of the SDK's ProvisioningHistory
    assert events[0].event_type == "Activate"
    assert [(e.event_type, e.event_by, e.status) for e in events[-2:]] == [
        ("Suspend", "jdoe@fleetops.example", "Success"),
        ("Restore", "portal", "Success"),
    ]
    line = running.sandbox.device("demo-healthy")
    assert {(e.mdn, e.msisdn, e.service_plan) for e in events} == {
        (line["ids"]["mdn"], line["ids"]["msisdn"], line["servicePlan"])
    }
    assert events[-1].occurred_at.startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))


def test_the_sdk_reads_the_device_sms_inbox_page_by_page(running: Running, sdk: VerizonClient) -> None:
    iccid = _iccid(running.sandbox, "demo-nbiot")
    for i in range(101):  # one more than a block
        assert running.sandbox.device_sms(f"iccid:{iccid}", f"METER {i}") == "queued"
    first = sdk.device_sms_messaging.get_sms_messages(ACCOUNT)
    assert first.status_code == 202  # more follow, at the Location header's next token
    assert first.body.has_more_data is True
    assert len(first.body.messages) == 100
    message = first.body.messages[0]  # the SDK's GIOSmsMessage
    assert message.message == "METER 0"
    assert [(d.kind, d.id) for d in message.device_ids if d.kind == "iccid"] == [("iccid", iccid)]
    assert message.timestamp.datetime == running.clock()  # the SDK parsed it: an RFC3339DateTime
    [token] = parse_qs(urlsplit(first.headers["Location"]).query)["next"]
    second = sdk.device_sms_messaging.get_sms_messages(ACCOUNT, next=token)
    assert second.status_code == 200
    assert second.body.has_more_data is False
    assert [m.message for m in second.body.messages] == ["METER 100"]
    empty = sdk.device_sms_messaging.get_sms_messages(ACCOUNT)
    assert empty.status_code == 200 and not getattr(empty.body, "messages", None)


def test_the_sdk_asks_for_sms_event_history_and_the_events_are_called_back(
    running: Running, sdk: VerizonClient
) -> None:
    iccid = _iccid(running.sandbox, "demo-healthy")
    running.sandbox.device_sms(f"iccid:{iccid}", "HELLO")  # an MO message in its SMS log
    with callback_listener() as listener:
        registered = sdk.connectivity_callbacks.register_callback(
            ACCOUNT, RegisterCallbackRequest(name=shapes.DEVICE_SERVICE, url=listener.url)
        )
        assert registered.status_code == 200
        assert (registered.body.account_name, registered.body.service_name) == (
            ACCOUNT,
            shapes.DEVICE_SERVICE,
        )
        now = running.clock()
        asked = sdk.device_sms_messaging.list_sms_message_history(
            SMSEventHistoryRequest(
                device_id=DeviceId(id=iccid, kind="iccid"),
                earliest=(now - timedelta(days=1)).isoformat(),
                latest=now.isoformat(),
            )
        )
        assert asked.status_code == 200
        request_id = asked.body.request_id  # GIORequestResponse
        assert request_id
        [callback] = listener.wait_for(1, requestId=request_id)
    assert callback["status"] == "Success"
    assert {"id": iccid, "kind": "iccid"} in callback["deviceIds"]
    events = callback["deviceResponse"][shapes.SMS_EVENT_HISTORY][shapes.SMS_EVENTS]
    assert events and all(e["timestamp"] and e["smsType"] for e in events)
    status = sdk.device_actions.get_asynchronous_request_status(ACCOUNT, request_id)  # v2
    assert status.status_code == 200
    assert (status.body.request_id, status.body.status) == (request_id, "Success")
    [sub] = status.body.subrequests  # the SDK's Subrequest
    assert sub.status == "Success"
