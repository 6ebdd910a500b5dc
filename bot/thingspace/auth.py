"""``ThingSpaceAuth``: the two ThingSpace credentials as one ``httpx.Auth`` (thingspace-api.md §2).

Every Connectivity Management call carries ``Authorization: Bearer <OAuth token>`` and
``VZ-M2M-Token: <session token>``. This auth gets both and keeps them:

* **OAuth token**: ``POST /ts/v1/oauth2/token`` with HTTP Basic client credentials and the form
  body ``grant_type=client_credentials``; cached until ``token_margin`` seconds before
  ``expires_in`` runs out. A 401 WSO2 ``fault`` (900901/900902) on a call refreshes it once.
* **Session token**: ``POST /m2m/v1/session/login`` with ``{"username", "password"}``. ThingSpace
  ends a session after 20 idle minutes; the auth logs in again when a call is answered
  ``SessionToken.Expired`` (or proactively after ``session_idle`` seconds without a call), then
  resends the call once.

Rules that protect the account (five failed logins lock it at Verizon):

* **Single flight.** However many threads meet an expired session at once, exactly one logs in;
  the others wait for it and use the new token. A thread only renews a token if the one it used
  is still the current one (a generation check by identity).
* **No login loop.** A login (or token request) that ThingSpace refuses with a 4xx is never
  retried: logins close for ``login_cooldown`` seconds (default 300), during which every call that
  needs a login fails fast with :class:`~bot.thingspace.errors.LoginCoolingDown`, without
  touching the network. A 5xx or a transport error is raised to the caller as is, without a
  cool-down (ThingSpace did not judge the credentials) and without a retry.

The clock is injectable (``clock=``, seconds, monotonic) so tests can move time. The flow is
synchronous only: the bot's business logic runs on threads, not on an event loop.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Final

import httpx

from bot.redact import mask_text
from bot.thingspace.errors import (
    LoginCoolingDown,
    LoginFailed,
    ThingSpaceResponseError,
    UnexpectedResponse,
    error_from_response,
    split_error_code,
)

__all__ = ["LOGIN_PATH", "TOKEN_PATH", "ThingSpaceAuth"]

logger = logging.getLogger(__name__)

TOKEN_PATH: Final = "/ts/v1/oauth2/token"  # noqa: S105 - a path, not a secret
LOGIN_PATH: Final = "/m2m/v1/session/login"
SESSION_HEADER: Final = "VZ-M2M-Token"

_BEARER_FAULTS: Final = frozenset({"900901", "900902"})
_SESSION_GONE: Final = frozenset(
    {"REQUEST_FAILED.SessionToken.Expired", "INPUT_INVALID.SessionToken.Invalid"}
)
_DEFAULT_EXPIRES_IN: Final = 3600.0

Flow = Generator[httpx.Request, httpx.Response, None]


@dataclass(frozen=True, eq=False)
class _Token:
    """One issued credential. Compared by identity: that is the generation check."""

    value: str
    expires_at: float  # on the auth's clock; ``inf`` for session tokens (they expire when idle)


class ThingSpaceAuth(httpx.Auth):
    """OAuth bearer + ``VZ-M2M-Token`` session for ``httpx.Client(auth=...)``. Thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        clock: Callable[[], float] = time.monotonic,
        login_cooldown: float = 300.0,
        token_margin: float = 60.0,
        session_idle: float = 18 * 60.0,
    ) -> None:
        self._base = str(base_url).rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._clock = clock
        self._cooldown = float(login_cooldown)
        self._token_margin = float(token_margin)
        self._session_idle = float(session_idle)
        self._lock = threading.RLock()
        self._bearer: _Token | None = None
        self._session: _Token | None = None
        self._session_used = 0.0
        self._closed_until = 0.0
        self._closed_by: ThingSpaceResponseError | None = None
        #: How many token requests and logins this auth has sent (for tests and metrics).
        self.token_requests = 0
        self.logins = 0

    def __repr__(self) -> str:
        return f"ThingSpaceAuth({self._base!r}, client_id={self._client_id!r})"

    # -- public state ------------------------------------------------------------------------

    def logins_closed_for(self) -> float:
        """Seconds until logins reopen after a refused login; 0 when they are open."""
        return max(0.0, self._closed_until - self._clock()) if self._closed_by else 0.0

    def reset(self) -> None:
        """Forget both tokens and reopen logins (after an operator fixed the credentials)."""
        with self._lock:
            self._bearer = None
            self._session = None
            self._closed_until = 0.0
            self._closed_by = None

    # -- httpx.Auth --------------------------------------------------------------------------

    def sync_auth_flow(self, request: httpx.Request) -> Flow:
        bearer = yield from self._bearer_flow(stale=None)
        session = yield from self._session_flow(stale=None)
        self._apply(request, bearer, session)
        response = yield request
        bearer_renewed = session_renewed = False
        while True:
            problem = self._problem(response)
            if problem == "bearer" and not bearer_renewed:
                bearer_renewed = True
                bearer = yield from self._bearer_flow(stale=bearer)
            elif problem == "session" and not session_renewed:
                session_renewed = True
                session = yield from self._session_flow(stale=session)
            else:
                return
            response.close()
            self._apply(request, bearer, session)
            response = yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("ThingSpaceAuth is synchronous; use it with httpx.Client")
        yield request  # pragma: no cover - unreachable; makes this an async generator

    # -- internals -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self._base + path

    def _apply(self, request: httpx.Request, bearer: _Token, session: _Token) -> None:
        request.headers["Authorization"] = f"Bearer {bearer.value}"
        request.headers[SESSION_HEADER] = session.value
        self._session_used = self._clock()

    def _problem(self, response: httpx.Response) -> str:
        """``bearer``, ``session`` or ``""``: what a response says about our credentials."""
        if response.status_code not in (400, 401, 403):
            return ""
        response.read()
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        fault = body.get("fault")
        if isinstance(fault, dict) and str(fault.get("code", "")) in _BEARER_FAULTS:
            return "bearer"
        if split_error_code(str(body.get("errorCode", ""))) in _SESSION_GONE:
            return "session"
        return ""

    def _check_open(self) -> None:
        if self._closed_by is None:
            return
        left = self._closed_until - self._clock()
        if left > 0:
            raise LoginCoolingDown(self._closed_by, left)
        self._closed_by = None

    def _close_logins(self, error: ThingSpaceResponseError) -> None:
        self._closed_by = error
        self._closed_until = self._clock() + self._cooldown
        logger.error(
            "ThingSpace refused the credentials on %s (%s, HTTP %s); logins closed for %.0f s",
            error.path,
            error.error_code or "no code",
            error.status,
            self._cooldown,
        )

    def _bearer_valid(self, token: _Token | None, stale: _Token | None) -> bool:
        return token is not None and token is not stale and self._clock() < token.expires_at

    def _bearer_flow(self, stale: _Token | None) -> Generator[httpx.Request, httpx.Response, _Token]:
        token = self._bearer
        if token is not None and self._bearer_valid(token, stale):
            return token
        with self._lock:
            token = self._bearer
            if token is not None and self._bearer_valid(token, stale):
                return token
            self._check_open()
            basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode("ascii")
            request = httpx.Request(
                "POST",
                self._url(TOKEN_PATH),
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
                data={"grant_type": "client_credentials"},
            )
            self.token_requests += 1
            logger.info("requesting a ThingSpace OAuth token")
            response = yield request
            response.read()
            if not response.is_success:
                self._fail(error_from_response(response, login=True))
            body = self._json(response)
            access = body.get("access_token")
            if not isinstance(access, str) or not access:
                raise UnexpectedResponse(
                    "the token answer has no access_token", status=response.status_code, path=TOKEN_PATH
                )
            expires_in = body.get("expires_in", _DEFAULT_EXPIRES_IN)
            try:
                lifetime = (
                    float(expires_in) if isinstance(expires_in, int | float | str) else _DEFAULT_EXPIRES_IN
                )
            except ValueError:
                lifetime = _DEFAULT_EXPIRES_IN
            if lifetime <= 0:
                lifetime = _DEFAULT_EXPIRES_IN
            margin = min(self._token_margin, lifetime / 10)
            token = _Token(access, self._clock() + lifetime - margin)
            self._bearer = token
            return token

    def _session_valid(self, token: _Token | None, stale: _Token | None) -> bool:
        if token is None or token is stale:
            return False
        return self._clock() - self._session_used < self._session_idle

    def _session_flow(self, stale: _Token | None) -> Generator[httpx.Request, httpx.Response, _Token]:
        token = self._session
        if token is not None and self._session_valid(token, stale):
            return token
        with self._lock:
            token = self._session
            if token is not None and self._session_valid(token, stale):
                return token
            self._check_open()
            bearer = yield from self._bearer_flow(stale=None)
            response = yield self._login_request(bearer)
            if self._problem(response) == "bearer":
                response.close()
                bearer = yield from self._bearer_flow(stale=bearer)
                response = yield self._login_request(bearer)
            response.read()
            if not response.is_success:
                self._fail(error_from_response(response, login=True))
            body = self._json(response)
            value = body.get("sessionToken")
            if not isinstance(value, str) or not value:
                raise UnexpectedResponse(
                    "the login answer has no sessionToken", status=response.status_code, path=LOGIN_PATH
                )
            token = _Token(value, float("inf"))
            self._session = token
            self._session_used = self._clock()
            logger.info("ThingSpace session started (login %d)", self.logins)
            return token

    def _login_request(self, bearer: _Token) -> httpx.Request:
        self.logins += 1
        logger.info("logging in to ThingSpace as %s", mask_text(self._username))
        return httpx.Request(
            "POST",
            self._url(LOGIN_PATH),
            headers={"Authorization": f"Bearer {bearer.value}", "Accept": "application/json"},
            json={"username": self._username, "password": self._password},
        )

    def _fail(self, error: ThingSpaceResponseError) -> None:
        """Raise ``error``; a refused login/token request (4xx) also closes logins."""
        if isinstance(error, LoginFailed):
            self._close_logins(error)
        raise error

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, object]:
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UnexpectedResponse(
                "the credential answer is not a JSON object",
                status=response.status_code,
                path=response.request.url.path,
            )
        return body
