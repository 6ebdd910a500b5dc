"""The two credentials of every Connectivity Management call.

Verizon: "Getting Credentials" (OAuth) and "Start a Connectivity Management Session" (UWS login).

* OAuth client credentials at ``POST /ts/v1/oauth2/token``: one token per client, valid for
  :data:`TOKEN_LIFETIME` from first issue; asking again within that time returns the same token
  (``expires_in`` then counts down). ``POST /ts/v1/oauth2/revoke`` ends it early.
* A ``VZ-M2M-Token`` session from ``POST /m2m/v1/session/login`` (a GUID) that expires after
  :data:`SESSION_IDLE` without use (sliding). :data:`MAX_FAILED_LOGINS` consecutive failed logins
  lock the user: from then on even the right password fails, with a clear "locked" error, until
  the sandbox is reset.

Bearer problems answer with the WSO2 ``fault`` envelope (401, codes 900901/900902); session
problems with the usual ``errorCode`` envelope (400).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bot.sandbox.errors import (
    CREDENTIALS_INVALID,
    SESSION_EXPIRED,
    SESSION_FORMAT,
    SESSION_INVALID,
    USER_LOCKED,
    field_null,
    gateway_fault,
    oauth_error,
    thingspace_error,
)

__all__ = ["MAX_FAILED_LOGINS", "SESSION_IDLE", "TOKEN_LIFETIME", "AuthState", "Credentials"]

logger = logging.getLogger(__name__)

TOKEN_LIFETIME: Final = timedelta(hours=1)
SESSION_IDLE: Final = timedelta(minutes=20)
MAX_FAILED_LOGINS: Final = 5


@dataclass(frozen=True, slots=True)
class Credentials:
    client_id: str
    client_secret: str
    username: str
    password: str


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class AuthState:
    """OAuth tokens, sessions and the failed-login counter; thread-safe."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()
        self._token: tuple[str, datetime] | None = None  # (token, issued at)
        self._valid_tokens: dict[str, datetime] = {}  # token -> expiry
        self._sessions: dict[str, datetime] = {}  # token -> last use
        self._failed = 0
        self._locked = False

    # -- OAuth ---------------------------------------------------------------------------------
    def issue_token(
        self, authorization: str | None, form: dict[str, str], now: datetime
    ) -> dict[str, object]:
        """The token endpoint: Basic client credentials, ``grant_type=client_credentials``."""
        if not authorization:
            raise gateway_fault("900902", "/ts/v1")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise oauth_error(
                "invalid_client",
                "Client authentication failed: use HTTP Basic with the app key and secret.",
                status=401,
            )
        try:
            client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise oauth_error(
                "invalid_client",
                "Client authentication failed: the Basic credentials are not valid base64.",
                status=401,
            ) from None
        grant = form.get("grant_type")
        if not grant:
            raise oauth_error("invalid_request", "Missing grant_type parameter value")
        if grant != "client_credentials":
            raise oauth_error(
                "unsupported_grant_type", f"Unsupported grant_type value {grant!r}; use client_credentials."
            )
        creds = self.credentials
        if not (_same(client_id, creds.client_id) and _same(secret, creds.client_secret)):
            logger.info("sandbox: OAuth token refused for an unknown client")
            raise oauth_error(
                "invalid_client", "Client authentication failed: unknown app key or wrong secret.", status=401
            )
        with self._lock:
            if self._token is None or now >= self._token[1] + TOKEN_LIFETIME:
                token = str(uuid.uuid4())
                self._token = (token, now)
                self._valid_tokens[token] = now + TOKEN_LIFETIME
            token, issued = self._token
        remaining = max(int((issued + TOKEN_LIFETIME - now).total_seconds()), 1)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": remaining,
            "scope": "am_application_scope default",
        }

    def revoke(self, token: str) -> bool:
        with self._lock:
            known = self._valid_tokens.pop(token, None) is not None
            if self._token is not None and self._token[0] == token:
                self._token = None
            return known

    def check_bearer(self, authorization: str | None, now: datetime, api: str) -> None:
        """Raise the gateway's 401 fault unless a valid, unexpired bearer token is given."""
        if not authorization or not authorization.strip():
            raise gateway_fault("900902", api)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise gateway_fault("900901", api)
        with self._lock:
            expiry = self._valid_tokens.get(token.strip())
        if expiry is None or now >= expiry:
            raise gateway_fault("900901", api)

    # -- sessions ------------------------------------------------------------------------------
    def login(self, body: dict[str, object], now: datetime) -> str:
        """Check the UWS user; return a new session token (GUID)."""
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username:
            raise field_null("username")
        if not isinstance(password, str) or not password:
            raise field_null("password")
        creds = self.credentials
        with self._lock:
            if self._locked and _same(username, creds.username):
                raise thingspace_error(
                    USER_LOCKED,
                    f"User {username} is locked after {MAX_FAILED_LOGINS} consecutive failed logins; "
                    "contact Verizon support to unlock it (sandbox: POST /_sandbox/reset).",
                )
            if not (_same(username, creds.username) and _same(password, creds.password)):
                if _same(username, creds.username):
                    self._failed += 1
                    if self._failed >= MAX_FAILED_LOGINS:
                        self._locked = True
                        logger.warning("sandbox: user locked after %d failed logins", self._failed)
                left = max(MAX_FAILED_LOGINS - self._failed, 0)
                raise thingspace_error(
                    CREDENTIALS_INVALID,
                    f"Invalid username or password ({left} attempts left before the user is locked)."
                    if _same(username, creds.username)
                    else "Invalid username or password.",
                )
            self._failed = 0
            token = str(uuid.uuid4())
            self._sessions[token] = now
            return token

    def check_session(self, header: str | None, now: datetime) -> str:
        """Validate and touch a ``VZ-M2M-Token``; returns it."""
        if header is None or not header.strip():
            raise thingspace_error(
                SESSION_FORMAT, "The VZ-M2M-Token header is missing; log in and send the session token."
            )
        token = header.strip()
        try:
            uuid.UUID(token)
        except ValueError:
            raise thingspace_error(SESSION_INVALID, "The VZ-M2M-Token is not a valid GUID.") from None
        with self._lock:
            last = self._sessions.get(token)
            if last is None or now - last > SESSION_IDLE:
                self._sessions.pop(token, None)
                raise thingspace_error(SESSION_EXPIRED, "The session token has expired; log in again.")
            self._sessions[token] = now
        return token

    def logout(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def reset(self, *, everything: bool) -> None:
        """Unlock the user; with ``everything`` also forget tokens and sessions."""
        with self._lock:
            self._failed = 0
            self._locked = False
            if everything:
                self._token = None
                self._valid_tokens.clear()
                self._sessions.clear()

    @property
    def locked(self) -> bool:
        with self._lock:
            return self._locked
