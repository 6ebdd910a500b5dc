"""The ASGI app: ThingSpace's paths (under the sandbox root) plus the ``/_sandbox/`` control routes.

Every API request goes through the same steps, as on the real gateway: record it, apply any
injected fault and latency, match the resource (an unknown one is the WSO2 fault 900906),
check the bearer token (401 fault 900901/900902), check the ``VZ-M2M-Token`` session (except for
login), then run the operation. Malformed input is a 400 with a specific ``errorCode`` and changes
nothing; an unexpected failure is logged and answered with a JSON 500, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from bot.sandbox import actions, messaging, mo_sms, reachability, views
from bot.sandbox.callback_sender import API_PATH, Listener
from bot.sandbox.control import control_routes
from bot.sandbox.errors import (
    CALLBACK_NOT_REGISTERED,
    REQUEST_INVALID_JSON,
    SERVICE_PREFIX,
    UNEXPECTED_ERROR,
    ApiError,
    field_invalid,
    field_null,
    gateway_fault,
    thingspace_error,
)

if TYPE_CHECKING:
    from bot.sandbox.core import Sandbox

__all__ = ["KNOWN_SERVICES", "build_app"]

logger = logging.getLogger(__name__)

MAX_BODY: Final = 8 * 1024 * 1024
#: Callback service names accepted by ``POST /callbacks/{account}`` (Verizon: "Register a Callback
#: Listener URL").
KNOWN_SERVICES: Final = frozenset(
    {
        "AlertService",
        "CarrierService",
        "DevicePRLInformation",
        "DeviceProfileService",
        "DevicePromoUsage",
        "DeviceService",
        "DeviceSuspensionStatus",
        "DeviceUsage",
        "DiagnosticsService",
        "EnhancedConnectivityService",
        "ExtendedEnhancedConnectivityService",
        "ExternalProvisioningChanges",
        "IntelligenceService",
        "NetworkEventService",
        "NiddService",
        "PromoChanges",
        "PwnService",
        "QoS",
        "ResumeTrackingNotification",
        "SMSDeliveryConfirmation",
        "StateService",
        "SubscriptionNotificationService",
        "VIPCallbackService",
    }
)


@dataclass(slots=True)
class Call:
    """What a handler gets: the parsed body, path parameters, headers and the session token."""

    body: dict[str, Any]
    raw: bytes
    params: dict[str, str]
    headers: dict[str, str]
    session: str = ""
    #: the query string's parameters (first value of each)
    query: dict[str, str] = field(default_factory=dict)
    #: headers the handler wants on its answer (e.g. ``Location``)
    answer_headers: dict[str, str] = field(default_factory=dict)


Result = tuple[int, Any]
Handler = Callable[["Sandbox", Call], Result]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    session: bool = True  # needs a VZ-M2M-Token
    json: bool = True  # body is JSON (the token endpoints take a form)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    if payload is None:
        return Response(b"", status_code=status, headers=headers)
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _api_context(path: str) -> str:
    for prefix in ("/m2m/v2", "/m2m/v1", "/ts/v1"):
        if path.startswith(prefix):
            return prefix
    return "/" + path.strip("/").split("/", 1)[0] if path.strip("/") else "/"


# -- handlers --------------------------------------------------------------------------------------
def _token(sb: Sandbox, call: Call) -> Result:
    form = {k: v[0] for k, v in parse_qs(call.raw.decode("latin-1"), keep_blank_values=True).items()}
    return 200, sb.auth.issue_token(call.headers.get("authorization"), form, sb.clock())


def _revoke(sb: Sandbox, call: Call) -> Result:
    form = {k: v[0] for k, v in parse_qs(call.raw.decode("latin-1"), keep_blank_values=True).items()}
    sb.auth.issue_token(call.headers.get("authorization"), {"grant_type": "client_credentials"}, sb.clock())
    token = form.get("token", "")
    if not token:
        raise ApiError(
            400, {"error": "invalid_request", "error_description": "Missing token parameter value"}
        )
    sb.auth.revoke(token)
    return 200, None


def _login(sb: Sandbox, call: Call) -> Result:
    return 200, {"sessionToken": sb.auth.login(call.body, sb.clock())}


def _logout(sb: Sandbox, call: Call) -> Result:
    sb.auth.logout(call.session)
    return 200, {"sessionToken": call.session}


def _register(sb: Sandbox, call: Call) -> Result:
    account = call.params["account"]
    body = call.body
    name, url = body.get("name"), body.get("url")
    username, password = body.get("username", ""), body.get("password", "")
    with sb.state.lock:
        sb.state.check_account(account, required=True)
        if not name:
            raise field_null("name")
        if name not in KNOWN_SERVICES:
            raise field_invalid(
                "name", f"Unknown callback service {name!r}; use one of {', '.join(sorted(KNOWN_SERVICES))}."
            )
        if not url:
            raise field_null("url")
        try:
            parts = urlsplit(url) if isinstance(url, str) else None
            port_ok = parts is not None and parts.port != 0
        except ValueError:
            parts, port_ok = None, False
        if parts is None or not port_ok or parts.scheme not in ("http", "https") or not parts.hostname:
            raise field_invalid("url", "url must be an http:// or https:// address of your listener.")
        if not isinstance(username, str) or not isinstance(password, str):
            raise field_invalid("username", "username and password must be strings.")
        sb.state.listeners[name] = Listener(account, name, url, username, password)
    logger.info("sandbox: listener for %s registered at %s", name, urlsplit(url).netloc)
    return 200, {"accountName": account, "serviceName": name}


def _list_listeners(sb: Sandbox, call: Call) -> Result:
    account = call.params["account"]
    with sb.state.lock:
        sb.state.check_account(account, required=True)
        rows = [
            {
                "accountName": lst.account,
                "serviceName": lst.service,
                "url": lst.url,
                "username": lst.username,
                "password": lst.password,
            }
            for lst in sb.state.listeners.values()
        ]
    return 200, rows or None  # ThingSpace answers an empty body when none are registered


def _deregister(sb: Sandbox, call: Call) -> Result:
    account, name = call.params["account"], call.params["service"]
    with sb.state.lock:
        sb.state.check_account(account, required=True)
        if sb.state.listeners.pop(name, None) is None:
            raise thingspace_error(CALLBACK_NOT_REGISTERED, f"No listener is registered for {name}.")
    return 200, {"accountName": account, "serviceName": name}


def _account(sb: Sandbox, call: Call) -> Result:
    with sb.state.lock:
        sb.state.check_account(call.params["account"], required=True)
    return 200, views.account_info(sb.state)


def _status_v1(sb: Sandbox, call: Call) -> Result:
    with sb.state.lock:
        sb.state.check_account(call.params["account"], required=True)
    return 200, views.request_status_v1(sb.state, call.params["request"])


def _status_v2(sb: Sandbox, call: Call) -> Result:
    with sb.state.lock:
        sb.state.check_account(call.params["account"], required=True)
    return 200, views.request_status_v2(sb.state, call.params["request"])


def _mo_history(sb: Sandbox, call: Call) -> Result:
    account = call.params["account"]
    with sb.state.lock:
        sb.state.check_account(account, required=True)
        status, payload, token = mo_sms.history(sb.state, call.query.get("next"))
    if token is not None:
        call.answer_headers["Location"] = f"/sms/{account}/history?next={token}"
    return status, payload


def _mo_start_callbacks(sb: Sandbox, call: Call) -> Result:
    with sb.state.lock:
        sb.state.check_account(call.params["account"], required=True)
        return 200, mo_sms.start_callbacks(sb.state)


def _ok(fn: Callable[[Any, dict[str, Any]], Any]) -> Handler:
    def handler(sb: Sandbox, call: Call) -> Result:
        return 200, fn(sb.state, call.body)

    return handler


def _paged(fn: Callable[[Any, dict[str, Any]], tuple[int, Any]]) -> Handler:
    def handler(sb: Sandbox, call: Call) -> Result:
        return fn(sb.state, call.body)

    return handler


def _action(operation: str) -> Handler:
    def handler(sb: Sandbox, call: Call) -> Result:
        return 200, actions.provision(sb.state, call.body, operation)

    return handler


_ACCOUNT = r"(?P<account>[^/]+)"
_ROUTES: Final = [
    _Route("POST", re.compile(r"/ts/v1/oauth2/token"), _token, session=False, json=False),
    _Route("POST", re.compile(r"/ts/v1/oauth2/revoke"), _revoke, session=False, json=False),
    _Route("POST", re.compile(r"/m2m/v1/session/login"), _login, session=False),
    _Route("POST", re.compile(r"/m2m/v1/session/logout"), _logout),
    _Route("POST", re.compile(r"/m2m/v1/devices/actions/list"), _paged(views.list_devices)),
    _Route(
        "POST",
        re.compile(r"/m2m/v1/devices/extendeddiagnostics/actions/list"),
        _ok(views.extended_diagnostics),
    ),
    _Route(
        "POST",
        re.compile(r"/m2m/v1/devices/connections/actions/listHistory"),
        _paged(views.connection_history),
    ),
    _Route("POST", re.compile(r"/m2m/v1/devices/usage/actions/list"), _paged(views.usage_history)),
    _Route("POST", re.compile(r"/m2m/v1/devices/history/actions/list"), _paged(views.provisioning_history)),
    _Route("POST", re.compile(r"/m2m/v1/devices/actions/list/imeiiccidmismatch"), _ok(views.mismatch_list)),
    _Route("POST", re.compile(r"/m2m/v1/devices/actions/suspend"), _action("suspend")),
    _Route("POST", re.compile(r"/m2m/v1/devices/actions/restore"), _action("restore")),
    _Route("POST", re.compile(r"/m2m/v1/sms"), _ok(actions.send_sms)),
    _Route("POST", re.compile(r"/m2m/v1/devices/nidd/message"), _ok(messaging.nidd_message)),
    _Route("POST", re.compile(r"/m2m/v1/devices/sms/history/actions/list"), _ok(messaging.sms_event_history)),
    _Route("GET", re.compile(rf"/m2m/v1/sms/{_ACCOUNT}/history"), _mo_history),
    _Route("PUT", re.compile(rf"/m2m/v1/sms/{_ACCOUNT}/startCallbacks"), _mo_start_callbacks),
    _Route("POST", re.compile(r"/m2m/v1/devices/actions/cancellocation"), _ok(actions.cancel_location)),
    _Route("POST", re.compile(rf"/m2m/v1/callbacks/{_ACCOUNT}"), _register),
    _Route("GET", re.compile(rf"/m2m/v1/callbacks/{_ACCOUNT}"), _list_listeners),
    _Route("DELETE", re.compile(rf"/m2m/v1/callbacks/{_ACCOUNT}/name/(?P<service>[^/]+)"), _deregister),
    _Route(
        "POST", re.compile(r"/m2m/v1/diagnostics/basic/devicereachability"), _ok(reachability.start_monitors)
    ),
    _Route(
        "DELETE", re.compile(r"/m2m/v1/diagnostics/basic/devicereachability"), _ok(reachability.stop_monitors)
    ),
    _Route(
        "POST",
        re.compile(r"/m2m/v1/diagnostics/basic/devicereachability/status"),
        _ok(reachability.query_status),
    ),
    _Route(
        "POST",
        re.compile(r"/m2m/v1/diagnostics/basic/devicereachability/monitors"),
        _ok(reachability.list_monitors),
    ),
    _Route("GET", re.compile(rf"/m2m/v1/accounts/{_ACCOUNT}"), _account),
    _Route("GET", re.compile(rf"/m2m/v1/accounts/{_ACCOUNT}/requests/(?P<request>[^/]+)/status"), _status_v1),
    _Route("GET", re.compile(rf"/m2m/v2/accounts/{_ACCOUNT}/requests/(?P<request>[^/]+)/status"), _status_v2),
]


def _match(method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
    for route in _ROUTES:
        if route.method == method:
            found = route.pattern.fullmatch(path)
            if found is not None:
                return route, found.groupdict()
    return None


class _Api:
    """The catch-all endpoint for ThingSpace's paths."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    async def handle(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        status, code = 500, ""
        origin = API_PATH.set(path)
        try:
            rule = self.sb.faults.take(method, path)
            delay = self.sb.faults.latency + (rule.latency if rule is not None else 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            if rule is not None and rule.status is not None:
                body = rule.body
                if body is None:
                    body = {
                        "errorCode": f"{SERVICE_PREFIX}.{UNEXPECTED_ERROR}",
                        "errorMessage": "Injected fault.",
                    }
                status = rule.status
                return _json_response(status, body)
            status, payload, headers = await self._handle(request, method, path)
            return _json_response(status, payload, headers)
        except ApiError as exc:
            status, code = exc.status, exc.code
            return _json_response(exc.status, exc.body)
        except Exception:
            logger.exception("sandbox: unexpected failure on %s %s", method, path)
            status, code = 500, f"{SERVICE_PREFIX}.{UNEXPECTED_ERROR}"
            return _json_response(
                500, {"errorCode": code, "errorMessage": "Unexpected error in the sandbox."}
            )
        finally:
            API_PATH.reset(origin)
            self.sb.request_log.record(method, path, self.sb.state.now_iso(), status, code)

    async def _handle(
        self, request: Request, method: str, path: str
    ) -> tuple[int, Any, dict[str, str] | None]:
        api = _api_context(path)
        matched = _match(method, path)
        if matched is None:
            raise gateway_fault("900906", api)
        route, params = matched
        headers = {k.lower(): v for k, v in request.headers.items()}
        now = self.sb.clock()
        if api != "/ts/v1":
            self.sb.auth.check_bearer(headers.get("authorization"), now, api)
        session = ""
        if route.session:
            session = self.sb.auth.check_session(headers.get("vz-m2m-token"), now)
        declared = int(headers.get("content-length") or 0)
        if declared > MAX_BODY:
            raise ApiError(
                413,
                {
                    "errorCode": f"{SERVICE_PREFIX}.INPUT_INVALID.Request.TooLarge",
                    "errorMessage": f"The request body is larger than {MAX_BODY} bytes.",
                },
            )
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(
                413,
                {
                    "errorCode": f"{SERVICE_PREFIX}.INPUT_INVALID.Request.TooLarge",
                    "errorMessage": f"The request body is larger than {MAX_BODY} bytes.",
                },
            )
        body: dict[str, Any] = {}
        if route.json and raw.strip():
            try:
                parsed = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise thingspace_error(REQUEST_INVALID_JSON, "The request body is not valid JSON.") from None
            if not isinstance(parsed, dict):
                raise thingspace_error(REQUEST_INVALID_JSON, "The request body must be a JSON object.")
            body = parsed
        query = {k: v[0] for k, v in parse_qs(request.url.query, keep_blank_values=True).items()}
        call = Call(body, raw, params, headers, session, query)
        status, payload = route.handler(self.sb, call)
        return status, payload, call.answer_headers or None


def build_app(sandbox: Sandbox) -> Starlette:
    """The sandbox's Starlette app: control routes under ``/_sandbox``, ThingSpace everywhere else."""
    api = _Api(sandbox)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Mount("/_sandbox", routes=control_routes(sandbox)),
            Route("/{path:path}", api.handle, methods=methods),
        ]
    )
