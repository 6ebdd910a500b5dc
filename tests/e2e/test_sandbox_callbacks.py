"""Callback delivery: listeners, retries with a rising callbackCount, drops, and the HTTP it speaks."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bot.sandbox import EXAMPLE_ICCID
from bot.serving import ServerThread
from tests.helpers.sandbox import ACCOUNT, Api, CallbackListener, of_request, running_sandbox, wait_until

LINE = ("iccid", EXAMPLE_ICCID)


def test_a_listener_answering_500_then_200_gets_the_message_twice() -> None:
    """The first attempt fails, the retry carries callbackCount 2 and the same content."""
    answer = lambda body: 500 if body["callbackCount"] == 1 else 200
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener(answer) as listener:
        api.register("CarrierService", listener.url, "me", "secret")
        rid = api.action("suspend", LINE)
        first, second = listener.wait_for(2, of_request(rid))
        assert (first["callbackCount"], second["callbackCount"]) == (1, 2)
        assert {k: v for k, v in first.items() if k != "callbackCount"} == {
            k: v for k, v in second.items() if k != "callbackCount"
        }
        assert (second["username"], second["password"]) == ("me", "secret")
        assert sandbox.wait_for_callbacks(5)
        outcomes = [(c["attempt"], c["status"], c["outcome"]) for c in sandbox.callbacks_sent()]
        assert outcomes == [(1, 500, "retrying"), (2, 200, "delivered")]


def test_retries_stop_at_the_threshold() -> None:
    """A listener that never answers 2xx gets exactly maxCallbackThreshold (4) attempts."""
    with (
        running_sandbox() as (sandbox, url, _clock),
        Api(url) as api,
        CallbackListener(lambda b: 503) as listener,
    ):
        api.register("CarrierService", listener.url)
        rid = api.action("suspend", LINE)
        assert sandbox.wait_for_callbacks(10)
        assert [b["callbackCount"] for b in listener.bodies(of_request(rid))] == [1, 2, 3, 4]
        assert sandbox.callbacks_sent()[-1]["outcome"] == "failed"


def test_an_unreachable_listener_is_retried_then_given_up() -> None:
    """Connection refused counts as not acknowledged: four attempts, each recorded with its error."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/cb"
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api:
        api.register("CarrierService", dead_url)
        api.action("suspend", LINE)
        assert sandbox.wait_for_callbacks(10)
        attempts = sandbox.callbacks_sent()
        assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
        assert all(a["status"] is None and a["error"] for a in attempts)


def test_without_a_listener_nothing_is_delivered() -> None:
    """No registration for the service: the result is simply never sent."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        api.register("EnhancedConnectivityService", listener.url)
        api.action("suspend", LINE)
        assert sandbox.wait_for_callbacks(5)
        assert listener.bodies() == []
        assert [c["outcome"] for c in sandbox.callbacks_sent()] == ["no-listener"]


def test_dropped_callbacks_are_lost() -> None:
    """drop_callbacks(1) loses exactly the next callback; the one after is delivered."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        api.register("CarrierService", listener.url)
        sandbox.drop_callbacks(1, "CarrierService")
        lost = api.action("suspend", LINE)
        kept = api.action("restore", LINE)
        listener.wait_for(1, of_request(kept))
        assert sandbox.wait_for_callbacks(5)
        assert listener.bodies(of_request(lost)) == []
        assert [c["outcome"] for c in sandbox.callbacks_sent()] == ["dropped", "delivered"]


def test_listener_registration_list_and_removal() -> None:
    """Register answers accountName/serviceName; the list is empty-bodied when none; deregister removes one."""
    with running_sandbox(devices=20) as (_sandbox, url, _clock), Api(url) as api:
        path = f"/m2m/v1/callbacks/{ACCOUNT}"
        empty = api.get(path)
        assert (empty.status_code, empty.content) == (200, b"")
        registered = api.post(
            path, {"name": "CarrierService", "url": "https://bot.example/thingspace/callbacks"}
        )
        assert registered.json() == {"accountName": ACCOUNT, "serviceName": "CarrierService"}
        listed = api.get(path).json()
        assert listed == [
            {
                "accountName": ACCOUNT,
                "serviceName": "CarrierService",
                "url": "https://bot.example/thingspace/callbacks",
                "username": "",
                "password": "",
            }
        ]
        removed = api.delete(f"{path}/name/CarrierService")
        assert removed.json() == {"accountName": ACCOUNT, "serviceName": "CarrierService"}
        again = api.delete(f"{path}/name/CarrierService")
        assert again.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.CallbackNotRegistered"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "https://x.example/cb"}, "INPUT_INVALID.Name.Null"),
        ({"name": "PizzaService", "url": "https://x.example/cb"}, "INPUT_INVALID.Name.Invalid"),
        ({"name": "CarrierService"}, "INPUT_INVALID.Url.Null"),
        ({"name": "CarrierService", "url": "ftp://x.example/cb"}, "INPUT_INVALID.Url.Invalid"),
        ({"name": "CarrierService", "url": "http://[::1"}, "INPUT_INVALID.Url.Invalid"),
        ({"name": "CarrierService", "url": "http://x.example:99999/cb"}, "INPUT_INVALID.Url.Invalid"),
    ],
)
def test_registration_validation(body: dict[str, str], code: str) -> None:
    """A bad registration is a 400 naming the field, and registers nothing."""
    with running_sandbox(devices=20) as (sandbox, url, _clock), Api(url) as api:
        response = api.post(f"/m2m/v1/callbacks/{ACCOUNT}", body)
        assert response.status_code == 400
        assert response.json()["errorCode"] == f"UnifiedWebService.{code}"
        assert sandbox.state.listeners == {}


def test_sender_handles_chunked_replies_and_keeps_the_connection() -> None:
    """A listener answering with a chunked body still acknowledges; its connection is reused."""
    received: list[dict[str, object]] = []
    ports: set[int] = set()

    async def endpoint(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        assert request.client is not None
        ports.add(request.client.port)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"ok":'
            yield b"true}"

        return StreamingResponse(chunks(), media_type="application/json")

    listener = ServerThread(Starlette(routes=[Route("/cb", endpoint, methods=["POST"])])).start()
    try:
        with running_sandbox(callback_concurrency=1) as (sandbox, url, _clock), Api(url) as api:
            api.register("CarrierService", listener.url + "/cb")
            for operation in ("suspend", "restore", "suspend"):
                api.action(operation, LINE)
            assert sandbox.wait_for_callbacks(5)
            assert [c["outcome"] for c in sandbox.callbacks_sent()] == ["delivered"] * 3
            assert len(received) == 3 and len(ports) == 1
    finally:
        listener.stop()


def test_bulk_suspend_sends_one_callback_per_device() -> None:
    """A 2,000-line suspend becomes one callback per line sharing the requestId (the pending line holds its own)."""
    with (
        running_sandbox(devices=2000) as (sandbox, url, _clock),
        Api(url) as api,
        CallbackListener() as listener,
    ):
        api.register("CarrierService", listener.url)
        ids = [("iccid", d.iccid) for d in sandbox.state.devices]
        rid = api.action("suspend", *ids)
        bodies = listener.wait_for(1999, of_request(rid))
        assert len({b["deviceIds"][0]["id"] for b in bodies}) == 1999
        assert wait_until(lambda: sandbox.pending_callbacks() == 0)
        assert sandbox.device("demo-pending")["pendingRequestsHeld"] == 1


def test_dropped_callbacks_can_target_an_api_path() -> None:
    """A drop rule for a path glob loses only callbacks answering requests to that path, SMS
    follow-ups (sent, then delivered) included; other paths' callbacks still arrive."""
    with running_sandbox() as (sandbox, url, _clock), Api(url) as api, CallbackListener() as listener:
        api.register("CarrierService", listener.url)
        dropped = api.post("/_sandbox/faults", {"drop_callbacks": 1, "path": "*/actions/restore"})
        assert dropped.json() == {"drop_callbacks": 1, "service": None, "path": "*/actions/restore"}
        kept = api.action("suspend", LINE)
        lost = api.action("restore", LINE)
        listener.wait_for(1, of_request(kept))
        assert sandbox.wait_for_callbacks(5)
        assert listener.bodies(of_request(lost)) == []
        outcomes = {c["requestId"]: c["outcome"] for c in sandbox.callbacks_sent()}
        assert outcomes == {kept: "delivered", lost: "dropped"}


def test_a_drop_rule_with_a_bad_path_is_refused() -> None:
    """The control route says what a path must be."""
    with running_sandbox() as (_sandbox, url, _clock), Api(url) as api:
        answer = api.post("/_sandbox/faults", {"drop_callbacks": 1, "path": 7})
        assert answer.status_code == 400
        assert "path must be an API path or a glob" in answer.json()["error"]
