"""The errors the ThingSpace client raises. Callers never see an ``httpx`` exception.

::

    ThingSpaceError
    ├── InvalidRequest               refused before sending: our own check of the arguments
    ├── ThingSpaceTransportError     no answer: the request may or may not have arrived
    │   ├── ThingSpaceTimeout            connect/read/write/pool timeout, or the overall deadline
    │   └── ThingSpaceConnectError       could not connect (refused, DNS, TLS, reset)
    └── ThingSpaceResponseError      ThingSpace answered, with an error
        ├── ThingSpaceAuthError          credentials: WSO2 ``fault`` (900901, 900902), OAuth errors
        │   ├── SessionExpired               ``REQUEST_FAILED.SessionToken.Expired`` (and .Invalid)
        │   ├── LoginFailed                  ``/session/login`` or the token endpoint refused us
        │   │   └── LoginLockedOut               the user is locked at Verizon (5 failed logins)
        │   └── LoginCoolingDown             fail-fast: logins are closed after a failure
        ├── DeviceNotFound               ``REQUEST_FAILED.DeviceNotFound`` (or an empty lookup)
        ├── InvalidInput                 ``INPUT_INVALID.*``: ThingSpace rejected the request
        ├── RateLimited                  HTTP 429 (``retry_after`` seconds when sent)
        ├── ServerError                  HTTP 5xx
        └── UnexpectedResponse           2xx but not the JSON we expected

Every error has ``user_message``: one short sentence fit for Slack (no secrets, identifiers
masked). :class:`ThingSpaceResponseError` also carries ``status``, ``error_code`` (the part of
ThingSpace's ``errorCode`` after the service prefix, e.g. ``REQUEST_FAILED.SessionToken.Expired``;
code against this, never against messages), ``raw_code`` (as sent), ``message`` and ``path``.

:func:`error_from_response` turns any non-2xx answer into the right class.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx

from bot.redact import mask_text

__all__ = [
    "DeviceNotFound",
    "InvalidInput",
    "InvalidRequest",
    "LoginCoolingDown",
    "LoginFailed",
    "LoginLockedOut",
    "RateLimited",
    "ServerError",
    "SessionExpired",
    "ThingSpaceAuthError",
    "ThingSpaceConnectError",
    "ThingSpaceError",
    "ThingSpaceResponseError",
    "ThingSpaceTimeout",
    "ThingSpaceTransportError",
    "UnexpectedResponse",
    "error_from_response",
    "split_error_code",
]

#: First segments of an errorCode once the service prefix is removed (thingspace-api.md §11.3).
_CODE_CLASSES: Final = ("INPUT_INVALID", "REQUEST_FAILED", "REQUEST_ONHOLD", "REQUEST_CANCELLED")
_SESSION_GONE: Final = frozenset(
    {"REQUEST_FAILED.SessionToken.Expired", "INPUT_INVALID.SessionToken.Invalid"}
)
_MAX_MESSAGE: Final = 300


def split_error_code(raw_code: str) -> str:
    """``UnifiedWebService.REQUEST_FAILED.DeviceNotFound`` -> ``REQUEST_FAILED.DeviceNotFound``.

    The service prefix varies and is dropped; a code without a known class is returned unchanged.
    """
    parts = raw_code.strip().split(".")
    for i, part in enumerate(parts):
        if part in _CODE_CLASSES:
            return ".".join(parts[i:])
    return raw_code.strip()


def _format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    if minutes and secs:
        return f"{minutes} min {secs} s"
    return f"{minutes} min" if minutes else f"{secs} s"


class ThingSpaceError(Exception):
    """Base of every error the ThingSpace client raises."""

    user_message: str = "ThingSpace could not complete the request."

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        if user_message is not None:
            self.user_message = user_message


class InvalidRequest(ThingSpaceError, ValueError):
    """Arguments refused by the client before anything was sent (nothing changed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


class ThingSpaceTransportError(ThingSpaceError):
    """No answer from ThingSpace. For a change (suspend, SMS...) the outcome is unknown."""

    user_message = "ThingSpace did not answer; try again in a few minutes."

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ThingSpaceTimeout(ThingSpaceTransportError):
    """A timeout (connect, read, write, pool) or the overall deadline of a call."""

    user_message = "ThingSpace took too long to answer; try again in a few minutes."


class ThingSpaceConnectError(ThingSpaceTransportError):
    """The connection could not be made (refused, DNS, TLS, reset before an answer)."""

    user_message = "Could not reach ThingSpace; try again in a few minutes."


class ThingSpaceResponseError(ThingSpaceError):
    """ThingSpace answered with an error status (or an unusable body)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_code: str = "",
        raw_code: str = "",
        path: str = "",
        user_message: str | None = None,
    ) -> None:
        super().__init__(message, user_message=user_message)
        self.status = status
        self.error_code = error_code
        self.raw_code = raw_code
        self.message = message
        self.path = path

    def __str__(self) -> str:
        code = f" {self.error_code}" if self.error_code else ""
        where = f" on {self.path}" if self.path else ""
        return f"HTTP {self.status}{code}{where}: {self.message}"


class ThingSpaceAuthError(ThingSpaceResponseError):
    """ThingSpace refused our credentials (bearer token, session, or login)."""

    user_message = "ThingSpace refused the bot's credentials; an admin should check them."


class SessionExpired(ThingSpaceAuthError):
    """The ``VZ-M2M-Token`` session expired (20 minutes idle) or is no longer valid."""

    user_message = "The ThingSpace session expired; try again."


class LoginFailed(ThingSpaceAuthError):
    """``/session/login`` (or the OAuth token endpoint) refused the credentials."""

    user_message = (
        "ThingSpace refused the bot's login; an admin should check THINGSPACE_USERNAME/PASSWORD "
        "(or the client id/secret)."
    )


class LoginLockedOut(LoginFailed):
    """The API user is locked at Verizon after repeated failed logins; Verizon Support unlocks it."""

    user_message = "The ThingSpace API user is locked; an admin must ask Verizon Support to unlock it."


class LoginCoolingDown(ThingSpaceAuthError):
    """Fail-fast: a login failed recently and logins stay closed for a cool-down.

    Five failed logins lock the account at Verizon, so the client never retries a failed login
    until ``seconds_left`` has run out. ``cause`` is the failure that closed logins.
    """

    def __init__(self, cause: ThingSpaceResponseError, seconds_left: float) -> None:
        what = "token request" if "/oauth2/" in cause.path else "login"
        message = (
            f"ThingSpace {what} failed ({cause.error_code or f'HTTP {cause.status}'}); "
            f"logins are paused for {_format_seconds(seconds_left)} so the account is not locked"
        )
        super().__init__(
            message,
            status=cause.status,
            error_code=cause.error_code,
            raw_code=cause.raw_code,
            path=cause.path,
            user_message=(
                f"ThingSpace refused the bot's {what} recently; logins are paused for "
                f"{_format_seconds(seconds_left)} to avoid locking the account. "
                f"An admin should check the ThingSpace credentials."
            ),
        )
        self.cause = cause
        self.seconds_left = seconds_left


class DeviceNotFound(ThingSpaceResponseError):
    """No such device in the account."""

    user_message = "ThingSpace does not know that device in this account."


class InvalidInput(ThingSpaceResponseError):
    """ThingSpace rejected the request as invalid (``INPUT_INVALID.*`` or another 4xx)."""


class RateLimited(ThingSpaceResponseError):
    """HTTP 429; ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    user_message = "ThingSpace is rate-limiting the bot; try again shortly."

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ThingSpaceResponseError):
    """HTTP 5xx from ThingSpace."""

    user_message = "ThingSpace had an internal error; try again in a few minutes."


class UnexpectedResponse(ThingSpaceResponseError):
    """A success status with a body that is not the expected JSON."""

    user_message = "ThingSpace sent an answer the bot could not read."


def _body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(response: httpx.Response, *, login: bool = False) -> ThingSpaceResponseError:
    """The error for a non-2xx ``response``; ``login=True`` for the session login/token calls.

    Reads ThingSpace's ``{"errorCode", "errorMessage"}``, the WSO2 ``{"fault": {...}}`` envelope and
    the OAuth ``{"error", "error_description"}`` body. Messages are masked (no full identifiers).
    """
    status = response.status_code
    path = response.request.url.path if response.request is not None else ""
    body = _body(response)
    raw_code = ""
    message = ""
    fault = False
    oauth = False
    if isinstance(body, dict):
        if isinstance(body.get("fault"), dict):
            fault = True
            raw_code = str(body["fault"].get("code", ""))
            message = str(body["fault"].get("message", "") or body["fault"].get("description", ""))
        elif "errorCode" in body or "errorMessage" in body:
            raw_code = str(body.get("errorCode", ""))
            message = str(body.get("errorMessage", ""))
        elif "error" in body:
            oauth = True
            raw_code = str(body.get("error", ""))
            message = str(body.get("error_description", "") or raw_code)
    if not message:
        message = response.reason_phrase or f"HTTP {status}"
    message = mask_text(message)[:_MAX_MESSAGE]
    code = split_error_code(raw_code)
    kwargs: dict[str, Any] = {"status": status, "error_code": code, "raw_code": raw_code, "path": path}

    if status == 429:
        return RateLimited(message, retry_after=_retry_after(response), **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    if code in _SESSION_GONE:
        return SessionExpired(message, **kwargs)
    if login and not (fault and "/oauth2/" not in path):
        text = f"{code} {message}".lower()
        if "lock" in text:
            return LoginLockedOut(message, **kwargs)
        return LoginFailed(message, **kwargs)
    if fault or oauth or status in (401, 403):
        return ThingSpaceAuthError(message, **kwargs)
    if code.endswith("DeviceNotFound") or (status == 404 and "device" in message.lower()):
        return DeviceNotFound(message, **kwargs)
    if code.startswith("INPUT_INVALID") or 400 <= status < 500:
        return InvalidInput(message, user_message=f"ThingSpace rejected the request: {message}", **kwargs)
    return UnexpectedResponse(message, **kwargs)
