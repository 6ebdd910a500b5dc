"""``ThingSpaceAuth``: the two ThingSpace credentials as one ``httpx.Auth``.

Every Connectivity Management call carries ``Authorization: Bearer <OAuth token>`` and
``VZ-M2M-Token: <session token>`` (Verizon: "Getting Credentials" and "Start a Connectivity
Management Session"; SDK ``OauthToken``, ``LogInRequest``, ``LogInResult``). This auth gets both
and keeps them:

* **OAuth token**: ``POST /ts/v1/oauth2/token`` with HTTP Basic client credentials and the form
  body ``grant_type=client_credentials``; cached until ``token_margin`` seconds before
  ``expires_in`` runs out. A 401 WSO2 ``fault`` (900901/900902) on a call refreshes it once.
* **Session token**: ``POST /m2m/v1/session/login`` with ``{"username", "password"}``. ThingSpace
  ends a session after 20 idle minutes; the auth logs in again when a call is answered
  ``SessionToken.Expired`` or ``SessionToken.Format`` (or proactively after ``session_idle`` seconds without a call), then
  resends the call once.

Rules that protect the account (five failed logins lock it at Verizon; Verizon Support unlocks it):

* **Single flight.** However many threads meet an expired session at once, exactly one logs in;
  the others wait for it and use the new token. A thread only renews a token if the one it used
  is still the current one (a generation check by identity).
* **No login loop: an escalating login gate.** Every token request and login goes through a
  :class:`LoginGate`. A refusal (a 4xx from the token endpoint or the login, i.e. ThingSpace
  judged the credentials) pauses logins for ``login_cooldown`` seconds (default 300): every call
  that needs a login fails fast with :class:`~bot.thingspace.errors.LoginCoolingDown`, without
  touching the network. After that the same credentials get **one** more try; a second refusal
  pauses logins until the credentials change (a different client id/secret, username or password)
  or an operator reopens them (:meth:`ThingSpaceAuth.reset`). A locked user pauses them at once;
  :data:`MAX_REFUSALS_IN_A_ROW` refusals in a row, whatever the credentials, pause them until an
  operator reopens. A successful login resets the count. A 5xx or a transport error is raised to
  the caller as is: ThingSpace did not judge the credentials, so nothing is counted and nothing is
  retried.
* **Shared.** The default gate lives in this object's memory. Give every client of one
  installation the same persistent gate (``storage.login_gate.SqliteLoginGate``) and the count
  holds across threads, processes (``tsbot serve``, ``tsbot check``, ``tsbot callbacks``) and
  restarts: one bad password is tried at most twice in all. A process *claims* an attempt in the
  gate before sending it, so two processes never both take the last try.

The clock is injectable (``clock=``, seconds, monotonic) so tests can move time; the gate keeps its
own clock (:meth:`LoginGate.now`; wall-clock seconds when it is persisted). The flow is
synchronous only: the bot's business logic runs on threads, not on an event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, replace
from typing import Final, Protocol

import httpx

from bot.core.redact import mask_text
from bot.thingspace.errors import (
    LoginCoolingDown,
    LoginFailed,
    LoginLockedOut,
    LoginPause,
    ThingSpaceAuthError,
    ThingSpaceResponseError,
    UnexpectedResponse,
    error_from_response,
    split_error_code,
)
from storage.login_gate_state import LoginGateState

__all__ = [
    "LOGIN_PATH",
    "MAX_REFUSALS_IN_A_ROW",
    "MAX_REFUSALS_PER_CREDENTIALS",
    "TOKEN_PATH",
    "LoginGate",
    "LoginGateState",
    "MemoryLoginGate",
    "ThingSpaceAuth",
    "credentials_key",
    "login_pause",
    "refusal_of",
]

logger = logging.getLogger(__name__)

TOKEN_PATH: Final = "/ts/v1/oauth2/token"  # noqa: S105 - a path, not a secret
LOGIN_PATH: Final = "/m2m/v1/session/login"
SESSION_HEADER: Final = "VZ-M2M-Token"

_BEARER_FAULTS: Final = frozenset({"900901", "900902"})
_SESSION_GONE: Final = frozenset(
    {
        "REQUEST_FAILED.SessionToken.Expired",
        "INPUT_INVALID.SessionToken.Invalid",
        # the token header was missing or unreadable: a fresh login is the fix too
        "REQUEST_FAILED.SessionToken.Format",
    }
)
_DEFAULT_EXPIRES_IN: Final = 3600.0

#: Refusals with one set of credentials before logins pause until the credentials change.
MAX_REFUSALS_PER_CREDENTIALS: Final = 2
#: Refusals in a row, with any credentials, before logins pause until an operator reopens them:
#: one fewer than the five consecutive failures that lock the user at Verizon.
MAX_REFUSALS_IN_A_ROW: Final = 4
#: How long a claimed attempt counts as "in flight" (longer than any login takes). An attempt
#: whose process died before recording its outcome counts as refused after that.
IN_FLIGHT_HOLD: Final = 120.0
_CLAIM_TRIES: Final = 5


# -- the login gate -------------------------------------------------------------------------------


class LoginGate(Protocol):
    """Where the login gate keeps its count: in memory (the default) or shared by every process.

    ``credentials`` is an unambiguous encoding of the client id and secret, the username and the
    password. It is secret: a gate compares it, in constant time, with a salted slow hash and never
    stores or logs it. Each method is atomic; the auth decides what the state means.
    """

    def now(self) -> float:
        """Seconds on the clock the gate's times use."""

    def load(self, credentials: bytes) -> LoginGateState:
        """The state for these credentials (zero counts when they have no record; ``streak`` is global)."""

    def claim(self, credentials: bytes, version: int) -> bool:
        """Count one attempt, in flight, if the gate is still at ``version``; False if it changed."""

    def record_failure(
        self, credentials: bytes, *, status: int, error_code: str, path: str, message: str, locked: bool
    ) -> None:
        """The claimed attempt was refused: count the refusal (here and in the streak)."""

    def record_success(self, credentials: bytes) -> None:
        """A login succeeded: forget these credentials' record and reset the streak."""

    def release(self, credentials: bytes) -> None:
        """The claimed attempt ended without a verdict on the credentials (5xx, network, token issued)."""

    def reopen(self) -> None:
        """Forget everything: an operator reopens logins."""


class MemoryLoginGate:
    """The default :class:`LoginGate`: this process only, on the auth's clock. Thread-safe.

    Records are keyed by an HMAC of the credentials under a random per-gate key.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._records: dict[bytes, LoginGateState] = {}
        self._version = 0
        self._streak = 0

    def _id(self, credentials: bytes) -> bytes:
        return hmac.new(self._key, credentials, hashlib.sha256).digest()

    def _state(self, record: LoginGateState | None) -> LoginGateState:
        return replace(record or LoginGateState(), version=self._version, streak=self._streak)

    def now(self) -> float:
        return self._clock()

    def load(self, credentials: bytes) -> LoginGateState:
        with self._lock:
            return self._state(self._records.get(self._id(credentials)))

    def claim(self, credentials: bytes, version: int) -> bool:
        with self._lock:
            if version != self._version:
                return False
            key = self._id(credentials)
            record = self._records.get(key) or LoginGateState()
            self._records[key] = replace(record, attempts=record.attempts + 1, in_flight_since=self.now())
            self._version += 1
            return True

    def record_failure(
        self, credentials: bytes, *, status: int, error_code: str, path: str, message: str, locked: bool
    ) -> None:
        with self._lock:
            key = self._id(credentials)
            record = self._records.get(key) or LoginGateState(attempts=1)
            now = self.now()
            self._records[key] = replace(
                record,
                attempts=max(record.attempts, record.refusals + 1),
                in_flight_since=0.0,
                refusals=record.refusals + 1,
                first_refused_at=record.first_refused_at or now,
                last_refused_at=now,
                status=status,
                error_code=error_code,
                path=path,
                message=message,
                locked=locked,
            )
            self._streak += 1
            self._version += 1

    def record_success(self, credentials: bytes) -> None:
        with self._lock:
            self._records.pop(self._id(credentials), None)
            self._streak = 0
            self._version += 1

    def release(self, credentials: bytes) -> None:
        with self._lock:
            key = self._id(credentials)
            record = self._records.get(key)
            if record is not None:
                attempts = max(record.refusals, record.attempts - 1)
                if attempts == 0:
                    del self._records[key]
                else:
                    self._records[key] = replace(record, attempts=attempts, in_flight_since=0.0)
            self._version += 1

    def reopen(self) -> None:
        with self._lock:
            self._records.clear()
            self._streak = 0
            self._version += 1


def credentials_key(client_id: str, client_secret: str, username: str, password: str) -> bytes:
    """The ``credentials`` a :class:`LoginGate` is given: unambiguous, and as secret as the password."""
    return json.dumps([client_id, client_secret, username, password]).encode()


def refusal_of(state: LoginGateState) -> LoginFailed | None:
    """The last refusal a gate recorded for these credentials, as the error it was."""
    if not state.refusals or not state.status:
        return None
    cls = LoginLockedOut if state.locked else LoginFailed
    return cls(state.message, status=state.status, error_code=state.error_code, path=state.path)


def login_pause(state: LoginGateState, now: float, cooldown: float) -> LoginCoolingDown | None:
    """Why a login must not be sent now (the error to raise), or ``None`` when it may be."""
    pending = state.attempts > state.refusals
    in_flight = pending and state.in_flight_since > 0 and now < state.in_flight_since + IN_FLIGHT_HOLD
    if pending and not in_flight:
        # an attempt whose outcome never came back (its process died) counts as refused
        refused = state.attempts
        refused_at = max(state.last_refused_at, state.in_flight_since)
    else:
        refused = state.refusals
        refused_at = state.last_refused_at
    cause = refusal_of(state)
    since = state.first_refused_at or state.in_flight_since

    def paused(pause: LoginPause, seconds_left: float) -> LoginCoolingDown:
        return LoginCoolingDown(
            cause,
            seconds_left,
            pause=pause,
            refusals=state.streak if pause is LoginPause.TOO_MANY else refused,
            since=since,
            paused_for=max(0.0, now - since) if since else None,
            refused_by=state.refused_by,
        )

    if refused and state.locked:
        return paused(LoginPause.LOCKED, math.inf)
    if refused >= MAX_REFUSALS_PER_CREDENTIALS:
        return paused(LoginPause.UNTIL_CHANGED, math.inf)
    if state.streak >= MAX_REFUSALS_IN_A_ROW:
        return paused(LoginPause.TOO_MANY, math.inf)
    if in_flight:
        return paused(LoginPause.IN_PROGRESS, state.in_flight_since + IN_FLIGHT_HOLD - now)
    if refused:
        left = refused_at + cooldown - now
        if left > 0:
            return paused(LoginPause.COOL_DOWN, left)
    return None


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
        login_gate: LoginGate | None = None,
    ) -> None:
        self._base = str(base_url).rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._clock = clock
        self._credentials = credentials_key(client_id, client_secret, username, password)
        self._gate: LoginGate = login_gate if login_gate is not None else MemoryLoginGate(clock)
        self._cooldown = float(login_cooldown)
        self._token_margin = float(token_margin)
        self._session_idle = float(session_idle)
        self._lock = threading.RLock()
        self._bearer: _Token | None = None
        self._session: _Token | None = None
        self._session_used = 0.0
        #: How many token requests and logins this auth has sent (for tests and metrics).
        self.token_requests = 0
        self.logins = 0

    def __repr__(self) -> str:
        return f"ThingSpaceAuth({self._base!r}, client_id={self._client_id!r})"

    # -- public state ------------------------------------------------------------------------

    @property
    def login_gate(self) -> LoginGate:
        return self._gate

    def login_pause(self) -> LoginCoolingDown | None:
        """The error a login would meet now, without sending anything; ``None`` when logins are open."""
        return login_pause(self._gate.load(self._credentials), self._gate.now(), self._cooldown)

    def logins_closed_for(self) -> float:
        """Seconds until logins reopen (``inf``: until the credentials change); 0 when they are open."""
        pause = self.login_pause()
        return 0.0 if pause is None else max(0.0, pause.seconds_left)

    def reset(self) -> None:
        """Forget both tokens and reopen logins, for every process sharing the gate (operator action)."""
        with self._lock:
            self._bearer = None
            self._session = None
            self._gate.reopen()

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

    def _claim(self) -> None:
        """Take one attempt from the gate, or raise why logins are paused (nothing is sent)."""
        try:
            for _ in range(_CLAIM_TRIES):
                state = self._gate.load(self._credentials)
                pause = login_pause(state, self._gate.now(), self._cooldown)
                if pause is not None:
                    raise pause
                if self._gate.claim(self._credentials, state.version):
                    return
        except ThingSpaceAuthError:
            raise
        except Exception as exc:  # the gate's storage: fail closed, never log in blind
            logger.exception("the ThingSpace login gate could not be read; not logging in")
            raise ThingSpaceAuthError(
                f"the login gate could not be read ({type(exc).__name__})",
                status=0,
                user_message="The bot could not check its ThingSpace login state (a database problem); "
                "try again in a minute.",
            ) from exc
        raise LoginCoolingDown(None, 1.0, pause=LoginPause.IN_PROGRESS, refusals=0)

    def _record(self, outcome: Callable[[], None]) -> None:
        try:
            outcome()
        except Exception:  # the refusal or success itself matters more; a lost record is conservative
            logger.exception("the ThingSpace login gate could not record an outcome")

    def _attempt(
        self, build: Callable[[], httpx.Request], *, session: bool
    ) -> Generator[httpx.Request, httpx.Response, httpx.Response]:
        """Send one token request (``session=False``) or login through the gate; return its answer.

        A refusal is recorded and raised; a 5xx, a 429 or another error is raised without a verdict.
        A login answered with a bearer-token fault is returned (our token, not the credentials).
        """
        self._claim()
        settled = False
        try:
            response = yield build()
            response.read()
            if session and self._problem(response) == "bearer":
                return response
            if response.is_success:
                if session:
                    self._record(lambda: self._gate.record_success(self._credentials))
                    settled = True
                return response
            error = error_from_response(response, login=True)
            if isinstance(error, LoginFailed):
                self._record(
                    lambda: self._gate.record_failure(
                        self._credentials,
                        status=error.status,
                        error_code=error.error_code,
                        path=error.path,
                        message=error.message,
                        locked=isinstance(error, LoginLockedOut),
                    )
                )
                settled = True
                self._log_refusal(error)
            raise error
        finally:
            if not settled:
                self._record(lambda: self._gate.release(self._credentials))

    def _log_refusal(self, error: ThingSpaceResponseError) -> None:
        try:
            pause = self.login_pause()
        except Exception:
            logger.warning("the ThingSpace login gate could not be read back", exc_info=True)
            pause = None
        if pause is None:
            after = "logins stay open"
        elif math.isinf(pause.seconds_left):
            after = f"logins paused ({pause.pause.value}) until the credentials change or an operator reopens them"
        else:
            after = f"logins paused for {pause.seconds_left:.0f} s, then one more try"
        logger.error(
            "ThingSpace refused the credentials on %s (%s, HTTP %s); %s",
            error.path,
            error.error_code or "no code",
            error.status,
            after,
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
            response = yield from self._attempt(self._token_request, session=False)
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
            bearer = yield from self._bearer_flow(stale=None)
            response = yield from self._attempt(lambda: self._login_request(bearer), session=True)
            if self._problem(response) == "bearer":
                response.close()
                bearer = yield from self._bearer_flow(stale=bearer)
                response = yield from self._attempt(lambda: self._login_request(bearer), session=True)
            if not response.is_success:
                raise error_from_response(response, login=True)
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

    def _token_request(self) -> httpx.Request:
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode("ascii")
        self.token_requests += 1
        logger.info("requesting a ThingSpace OAuth token")
        return httpx.Request(
            "POST",
            self._url(TOKEN_PATH),
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            data={"grant_type": "client_credentials"},
        )

    def _login_request(self, bearer: _Token) -> httpx.Request:
        self.logins += 1
        logger.info("logging in to ThingSpace as %s", mask_text(self._username))
        return httpx.Request(
            "POST",
            self._url(LOGIN_PATH),
            headers={"Authorization": f"Bearer {bearer.value}", "Accept": "application/json"},
            json={"username": self._username, "password": self._password},
        )

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
