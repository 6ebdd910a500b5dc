"""The errors the ThingSpace client raises. Callers never see an ``httpx`` exception.

::

    ThingSpaceError
    ├── InvalidRequest               refused before sending: our own check of the arguments
    ├── ThingSpaceTransportError     no answer: the request may or may not have arrived
    │   ├── ThingSpaceTimeout            connect/read/write/pool timeout, or the overall deadline
    │   └── ThingSpaceConnectError       could not connect (refused, DNS, TLS, reset)
    └── ThingSpaceResponseError      ThingSpace answered, with an error
        ├── ThingSpaceAuthError          credentials: WSO2 ``fault`` (900901, 900902), OAuth errors
        │   ├── SessionExpired               ``REQUEST_FAILED.SessionToken.Expired`` (.Invalid, .Format)
        │   ├── LoginFailed                  ``/session/login`` or the token endpoint refused us
        │   │   └── LoginLockedOut               the user is locked at Verizon (5 failed logins)
        │   └── LoginCoolingDown             fail-fast: logins are paused after a refusal (see ``pause``)
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
from enum import StrEnum
from typing import Any, Final

import httpx

from bot.core.redact import mask_text

__all__ = [
    "DeviceNotFound",
    "InvalidInput",
    "InvalidRequest",
    "LoginCoolingDown",
    "LoginFailed",
    "LoginLockedOut",
    "LoginPause",
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
    "is_token_path",
    "split_error_code",
]

#: First segments of an errorCode once the service prefix is removed: ``UnifiedWebService.
#: REQUEST_FAILED.DeviceNotFound`` is coded against ``REQUEST_FAILED.DeviceNotFound`` (Verizon:
#: "Synchronous Error Messages": key on the code, never on the message).
_CODE_CLASSES: Final = ("INPUT_INVALID", "REQUEST_FAILED", "REQUEST_ONHOLD", "REQUEST_CANCELLED")
_SESSION_GONE: Final = frozenset(
    {
        "REQUEST_FAILED.SessionToken.Expired",
        "INPUT_INVALID.SessionToken.Invalid",
        # the token header was missing or unreadable: a fresh login is the fix too
        "REQUEST_FAILED.SessionToken.Format",
    }
)
_MAX_MESSAGE: Final = 300
#: Last segment of the login error codes that mean "this user is locked". ThingSpace's own code is
#: not public (Verizon's "Start a Connectivity Management Session" only says five failed logins lock
#: the user); ``REQUEST_FAILED.Login.UserLocked`` is the sandbox's. The
#: message is never read: a wrong password's says how many "attempts [are] left before the user is
#: locked".
_LOCKED_CODE_ENDINGS: Final = frozenset({"UserLocked"})
_OAUTH_PATH_PART: Final = "/oauth2/"


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
    if seconds >= 3600:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    minutes, secs = divmod(seconds, 60)
    if minutes and secs:
        return f"{minutes} min {secs} s"
    return f"{minutes} min" if minutes else f"{secs} s"


def is_token_path(path: str) -> bool:
    """Whether ``path`` is the OAuth token endpoint (client credentials) rather than the login."""
    return _OAUTH_PATH_PART in path


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


#: What to do after a refused login / token request: shown in Slack, so no secrets.
_FIX_LOGIN: Final = (
    "ThingSpace refused the bot's login: the UWS username or password is wrong. An admin should check "
    "THINGSPACE_USERNAME and THINGSPACE_PASSWORD, then run `tsbot check`."
)
_FIX_API_KEY: Final = (
    "ThingSpace refused the bot's API key: an admin should check THINGSPACE_CLIENT_ID and "
    "THINGSPACE_CLIENT_SECRET, then run `tsbot check`."
)


class LoginFailed(ThingSpaceAuthError):
    """``/session/login`` (or the OAuth token endpoint) refused the credentials."""

    user_message = _FIX_LOGIN

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
        if user_message is None and type(self) is LoginFailed and is_token_path(path):
            user_message = _FIX_API_KEY
        super().__init__(
            message,
            status=status,
            error_code=error_code,
            raw_code=raw_code,
            path=path,
            user_message=user_message,
        )


class LoginLockedOut(LoginFailed):
    """The API user is locked at Verizon after repeated failed logins; Verizon Support unlocks it."""

    user_message = (
        "The ThingSpace API user is locked at Verizon after too many failed logins. An admin must ask "
        "Verizon Support to unlock it, then run `tsbot check --reopen-logins`."
    )


class LoginPause(StrEnum):
    """Why logins are paused (:attr:`LoginCoolingDown.pause`)."""

    #: one refusal: one more try once the cool-down has run out
    COOL_DOWN = "cool-down"
    #: refused twice with these credentials: paused until they change or an operator reopens
    UNTIL_CHANGED = "until-changed"
    #: ThingSpace says the user is locked: paused until the credentials change or an operator reopens
    LOCKED = "locked"
    #: so many refusals in a row (any credentials) that one more could lock the user: operator only
    TOO_MANY = "too-many"
    #: another process is logging in with these credentials at this moment
    IN_PROGRESS = "in-progress"


class LoginCoolingDown(ThingSpaceAuthError):
    """Fail-fast: logins are paused after a refusal, so a bad password cannot lock the account.

    Five failed logins lock the account at Verizon (unlocking needs Verizon Support), so the client
    never sends a login while this is raised. ``pause`` says why and until when: after one refusal
    for ``seconds_left`` (the cool-down); after a second refusal with the same credentials, a lock,
    or too many refusals in a row, until the credentials change or an operator reopens logins
    (``seconds_left`` is then infinite). ``cause`` is the refusal that paused logins (``None`` when
    it is not known to this process), ``refusals`` how many there were, ``since`` when the pause
    began (on the login gate's clock) and ``paused_for`` how long ago that was.
    """

    def __init__(
        self,
        cause: ThingSpaceResponseError | None,
        seconds_left: float,
        *,
        pause: LoginPause = LoginPause.COOL_DOWN,
        refusals: int = 1,
        since: float | None = None,
        paused_for: float | None = None,
        refused_by: str = "",
    ) -> None:
        token = cause is not None and is_token_path(cause.path)
        what = "token request" if token else "login"
        fix = (
            "THINGSPACE_CLIENT_ID and THINGSPACE_CLIENT_SECRET"
            if token
            else "THINGSPACE_USERNAME and THINGSPACE_PASSWORD"
        )
        code = (cause.error_code or f"HTTP {cause.status}") if cause is not None else "no code"
        times = "twice" if refusals == 2 else f"{refusals} times"
        ago = f" (paused {_format_seconds(paused_for)} ago)" if paused_for is not None else ""
        if pause is LoginPause.COOL_DOWN:
            left = _format_seconds(seconds_left)
            message = f"ThingSpace {what} refused ({code}); logins are paused for {left} so the account is not locked"
            user_message = (
                f"ThingSpace refused the bot's {what}, so logins are paused for {left} to keep the account "
                "from being locked (5 failed logins lock it at Verizon); after that the bot tries once more, "
                f"then stops. An admin should check {fix}, then run `tsbot check`."
            )
        elif pause is LoginPause.UNTIL_CHANGED:
            message = (
                f"ThingSpace {what} refused {times} with the same credentials ({code}); logins are paused "
                "until the credentials change or an operator reopens them"
            )
            user_message = (
                f"ThingSpace refused the bot's {what} {times} with the same credentials, so logins are paused "
                f"until they change{ago}. An admin should fix {fix} (the bot tries again as soon as they "
                "change) or, to try the same ones once more, run `tsbot check --reopen-logins`."
            )
        elif pause is LoginPause.LOCKED:
            message = (
                f"the ThingSpace API user is locked ({code}); logins are paused until the credentials change "
                "or an operator reopens them"
            )
            user_message = (
                f"The ThingSpace API user is locked at Verizon, so the bot has paused its logins{ago}. An admin "
                "must ask Verizon Support to unlock it, then run `tsbot check --reopen-logins`."
            )
        elif pause is LoginPause.TOO_MANY:
            message = (
                f"ThingSpace refused {refusals} logins in a row; logins are paused until an operator "
                "reopens them"
            )
            user_message = (
                f"ThingSpace refused the bot's last {refusals} logins in a row, with different credentials; "
                "one more failure may lock the API user at Verizon, so logins are paused. An admin should "
                "confirm the username and password in the ThingSpace portal, set them, then run "
                "`tsbot check --reopen-logins`."
            )
        else:
            message = "another process is logging in to ThingSpace with these credentials right now"
            user_message = (
                "Another tsbot process is logging in to ThingSpace right now; try again in a few seconds."
            )
        super().__init__(
            message,
            status=cause.status if cause is not None else 0,
            error_code=cause.error_code if cause is not None else "",
            raw_code=cause.raw_code if cause is not None else "",
            path=cause.path if cause is not None else "",
            user_message=user_message,
        )
        self.cause = cause
        self.seconds_left = seconds_left
        self.pause = pause
        self.refusals = refusals
        self.since = since
        self.paused_for = paused_for
        self.refused_by = refused_by

    def __str__(self) -> str:
        return super().__str__() if self.cause is not None else self.message


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
    if login and not (fault and not is_token_path(path)):
        if code.rsplit(".", 1)[-1] in _LOCKED_CODE_ENDINGS:
            return LoginLockedOut(message, **kwargs)
        return LoginFailed(message, **kwargs)
    if fault or oauth or status in (401, 403):
        return ThingSpaceAuthError(message, **kwargs)
    if code.endswith("DeviceNotFound") or (status == 404 and "device" in message.lower()):
        return DeviceNotFound(message, **kwargs)
    if code.startswith("INPUT_INVALID") or 400 <= status < 500:
        return InvalidInput(message, user_message=f"ThingSpace rejected the request: {message}", **kwargs)
    return UnexpectedResponse(message, **kwargs)
