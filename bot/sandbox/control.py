"""The ``/_sandbox/`` control routes (JSON), used by tests and ``tsbot demo``.

==========================================  =====================================================
``GET  /_sandbox/``                          account, credentials, fleet size, demo devices
``GET  /_sandbox/conditions``                the diagnostic conditions and which device shows each
``GET  /_sandbox/devices/{ref}``             one device as the sandbox sees it (``ref``: ``kind:id``,
                                             a bare id, or a label such as ``demo-hung``)
``POST /_sandbox/devices/{ref}/reachability``  ``{"reachable": true|false}``: flip reachability now
                                             (monitors call back; down also means not attached)
``POST /_sandbox/devices/{ref}/sms``         ``{"text": "..."}``: the device sends an SMS (called back
                                             to EnhancedConnectivityService, or queued for
                                             ``GET /sms/{account}/history``): ``{"sent": how}``
``POST /_sandbox/devices/{ref}/condition``   ``{"condition": "hung"}``: put the line in a condition
                                             (see :mod:`bot.sandbox.conditions`)
``POST /_sandbox/devices/{ref}/replies``     ``{"sms": true, "nidd": false, "prefix": "OK ",
                                             "delay": 3}``: the device answers each SMS (NIDD
                                             data) it receives with prefix + text after delay s
``GET  /_sandbox/requests``                  requests received: ``[{seq, method, path, time, status,
                                             errorCode?}]``; query ``path`` (exact, or a glob with
                                             ``*``), ``method``, ``after`` (a seq)
``POST /_sandbox/faults``                    ``{"path": glob, "count": 1, "method"?, "status"?,
                                             "body"?, "latency"?}``: the next ``count`` matching
                                             requests wait ``latency`` s and/or get ``status`` +
                                             ``body``; or ``{"drop_callbacks": n, "service"?,
                                             "path"?}``: lose the next ``n`` callbacks (of that
                                             service / answering requests to that path glob)
``GET  /_sandbox/faults`` / ``DELETE``         list / clear the fault rules
``POST /_sandbox/latency``                   ``{"seconds": 0.2}``: default latency of every API call
``POST /_sandbox/notify``                    ``{"service": "ExternalProvisioningChanges", "device":
                                             ref, "change": "Suspend"|"Resume"|"Activate"|
                                             "Deactivate"|"ChangeMdn", "by"?}`` applies the change,
                                             records it in the line's provisioning history by
                                             ``by`` (default ``portal``) and calls back; ``{"service":
                                             "ResumeTrackingNotification", "device": ref}`` sends
                                             the auto-resume warning of a suspended line
``GET  /_sandbox/callbacks``                 every callback attempt: service, requestId, deviceIds,
                                             url, attempt, status, outcome
``POST /_sandbox/tick``                      run the time-based events due now
``POST /_sandbox/clock``                     ``{"advance": seconds}`` (only with a ManualClock)
``POST /_sandbox/reset``                     ``{"everything": false}``: rebuild the fleet; forget
                                             requests, monitors, faults, pending callbacks and the
                                             login lock; ``everything`` also drops tokens, sessions
                                             and listeners
==========================================  =====================================================

Errors are ``{"error": "..."}`` with 400 (bad input) or 404 (unknown device).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from bot.sandbox.core import Sandbox

__all__ = ["BadRequest", "control_routes"]


class BadRequest(ValueError):
    """A control request that cannot be carried out as sent (400)."""


def _reply(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, indent=1).encode(), status_code=status, media_type="application/json")


def _error(message: str, status: int = 400) -> Response:
    return _reply({"error": message}, status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest("the body must be a JSON object")
    return parsed


def control_routes(sb: Sandbox) -> list[BaseRoute]:
    """Routes mounted at ``/_sandbox``."""

    async def summary(request: Request) -> Response:
        return _reply(sb.summary())

    async def conditions(request: Request) -> Response:
        return _reply({"conditions": sb.conditions(), "demoDevices": sb.demo_devices()})

    async def device(request: Request) -> Response:
        try:
            return _reply(sb.device(request.path_params["ref"]))
        except LookupError as exc:
            return _error(str(exc), 404)

    async def reachability(request: Request) -> Response:
        try:
            body = await _body(request)
            reachable = body.get("reachable")
            if not isinstance(reachable, bool):
                return _error('send {"reachable": true} or {"reachable": false}')
            sb.set_reachability(request.path_params["ref"], reachable)
            return _reply(sb.device(request.path_params["ref"]))
        except LookupError as exc:
            return _error(str(exc), 404)
        except ValueError as exc:
            return _error(str(exc))

    async def sms(request: Request) -> Response:
        try:
            body = await _body(request)
            text = body.get("text")
            if not isinstance(text, str):
                return _error('send {"text": "..."}: what the device sends')
            how = sb.device_sms(request.path_params["ref"], text)
            return _reply({"sent": how})
        except LookupError as exc:
            return _error(str(exc), 404)
        except ValueError as exc:
            return _error(str(exc))

    async def condition(request: Request) -> Response:
        try:
            body = await _body(request)
            name = body.get("condition")
            if not isinstance(name, str):
                return _error('send {"condition": NAME}; names: ' + ", ".join(sb.conditions()))
            sb.set_condition(request.path_params["ref"], name)
            return _reply(sb.device(request.path_params["ref"]))
        except LookupError as exc:
            return _error(str(exc), 404)
        except ValueError as exc:
            return _error(str(exc))

    async def replies(request: Request) -> Response:
        try:
            body = await _body(request)
            sb.set_replies(request.path_params["ref"], body)
            return _reply(sb.device(request.path_params["ref"]))
        except LookupError as exc:
            return _error(str(exc), 404)
        except ValueError as exc:
            return _error(str(exc))

    async def requests(request: Request) -> Response:
        query = request.query_params
        try:
            after = int(query.get("after", "0"))
        except ValueError:
            return _error("after must be a whole number (a seq)")
        return _reply(sb.requests_received(query.get("path"), query.get("method"), after=after))

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return _reply(sb.faults.active())
        if request.method == "DELETE":
            sb.faults.clear()
            return _reply([])
        try:
            body = await _body(request)
            if "drop_callbacks" in body:
                count = body["drop_callbacks"]
                service = body.get("service")
                drop_path = body.get("path")
                if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                    return _error("drop_callbacks must be a positive whole number")
                if service is not None and not isinstance(service, str):
                    return _error("service must be a callback service name")
                if drop_path is not None and not isinstance(drop_path, str):
                    return _error('path must be an API path or a glob, e.g. "*/actions/suspend"')
                sb.drop_callbacks(count, service, drop_path)
                return _reply({"drop_callbacks": count, "service": service, "path": drop_path})
            path = body.get("path")
            if not isinstance(path, str):
                return _error('send {"path": "/m2m/v1/...", "count": 1, "status": 503} (see GET /_sandbox/)')
            sb.inject_fault(
                path,
                count=_int(body.get("count", 1), "count"),
                method=_opt_str(body.get("method"), "method"),
                status=None if body.get("status") is None else _int(body["status"], "status"),
                body=body.get("body"),
                latency=_float(body.get("latency", 0.0), "latency"),
            )
            return _reply(sb.faults.active())
        except ValueError as exc:
            return _error(str(exc))

    async def latency(request: Request) -> Response:
        try:
            body = await _body(request)
            sb.set_latency(_float(body.get("seconds"), "seconds"))
            return _reply({"seconds": sb.faults.latency})
        except ValueError as exc:
            return _error(str(exc))

    async def notify(request: Request) -> Response:
        try:
            body = await _body(request)
            service, ref = body.get("service"), body.get("device")
            if not isinstance(service, str) or not isinstance(ref, str):
                return _error(
                    'send {"service": "ExternalProvisioningChanges"|"ResumeTrackingNotification", "device": ref}'
                )
            request_id = sb.notify(
                service, ref, change=_opt_str(body.get("change"), "change"), by=_opt_str(body.get("by"), "by")
            )
            return _reply({"requestId": request_id})
        except LookupError as exc:
            return _error(str(exc), 404)
        except ValueError as exc:
            return _error(str(exc))

    async def callbacks(request: Request) -> Response:
        return _reply(sb.callbacks_sent())

    async def tick(request: Request) -> Response:
        return _reply({"ran": sb.tick()})

    async def clock(request: Request) -> Response:
        try:
            body = await _body(request)
            return _reply({"now": sb.advance_clock(_float(body.get("advance"), "advance"))})
        except ValueError as exc:
            return _error(str(exc))

    async def reset(request: Request) -> Response:
        try:
            body = await _body(request)
        except ValueError as exc:
            return _error(str(exc))
        everything = body.get("everything", False)
        if not isinstance(everything, bool):
            return _error("everything must be true or false")
        sb.reset(everything=everything)
        return _reply(sb.summary())

    async def unknown(request: Request) -> Response:
        return _error(f"no control route {request.method} {request.url.path}; see GET /_sandbox/", 404)

    return [
        Route("/", summary, methods=["GET"]),
        Route("/conditions", conditions, methods=["GET"]),
        Route("/devices/{ref}", device, methods=["GET"]),
        Route("/devices/{ref}/reachability", reachability, methods=["POST"]),
        Route("/devices/{ref}/condition", condition, methods=["POST"]),
        Route("/devices/{ref}/replies", replies, methods=["POST"]),
        Route("/devices/{ref}/sms", sms, methods=["POST"]),
        Route("/requests", requests, methods=["GET"]),
        Route("/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/latency", latency, methods=["POST"]),
        Route("/notify", notify, methods=["POST"]),
        Route("/callbacks", callbacks, methods=["GET"]),
        Route("/tick", tick, methods=["POST"]),
        Route("/clock", clock, methods=["POST"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/{rest:path}", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be a whole number")
    return value


def _float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number of seconds")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return float(value)


def _opt_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value
