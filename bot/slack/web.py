"""The HTTP surface of ``tsbot serve``: Starlette routes in front of Bolt and the callback intake.

``POST /slack/events`` reads the raw body exactly once (capped), pre-validates the signature
headers (Bolt's stock verifier answers 500 to a non-numeric timestamp or a non-ASCII signature),
verifies the v0 HMAC with a ±5 min window, refuses a replay of the same signed request, and only
then hands the same bytes to Bolt on a worker thread. Malformed or unsigned requests get 400/401,
never 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.core.logs import request_context
from bot.render.wording import something_went_wrong
from bot.slack.request_shape import body_problem
from storage import seen
from storage.db import write
from storage.pool import ConnectionPool
from storage.schema import open_database

__all__ = ["MAX_SLACK_BODY", "create_web_app", "read_capped"]

log = logging.getLogger(__name__)

MAX_SLACK_BODY = 512 * 1024
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than *limit* bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValueError("bad content-length")
        if int(declared) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _failed(ref: str) -> tuple[int, str, dict[str, Any]]:
    """Our own failure after the request was accepted (logged by the caller with *ref*): never a
    500 or a traceback in Slack; a slash command shows the reference."""
    text = something_went_wrong(ref)
    body = json.dumps({"response_type": "ephemeral", "text": text})
    return 200, body, {"content-type": ["application/json"]}


def create_web_app(
    *,
    bolt_app: App,
    pool: ConnectionPool,
    signing_secret: str,
    ready: Callable[[], dict[str, bool]],
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    clock: Callable[[], float] = time.time,
) -> Starlette:
    secret = signing_secret.encode()
    # Replay protection needs no fsync (losing the last few keys to a power cut only reopens a
    # window Slack's timestamp check still bounds): one connection with synchronous=OFF, so the
    # check costs no disk flush on the ack path.
    seen_db = open_database(pool.path, migrate=False, synchronous="OFF")
    seen_lock = threading.Lock()

    async def slack_events(request: Request) -> Response:
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
            return _error(401, "missing or malformed X-Slack-Signature / X-Slack-Request-Timestamp")
        try:
            body = await read_capped(request, MAX_SLACK_BODY)
        except BodyTooLarge:
            return _error(413, "request body too large")
        except ValueError:
            return _error(400, "bad Content-Length")
        if abs(clock() - int(timestamp)) > 60 * 5:
            return _error(401, "stale request: timestamp is more than 5 minutes from now")
        base = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return _error(401, "invalid signature")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "body is not UTF-8")
        problem = body_problem(text, request.headers.get("content-type", ""))
        if problem is not None:
            return _error(400, f"malformed Slack request: {problem}")

        def dispatch() -> tuple[int, str, dict[str, Any]]:
            with request_context():
                return _dispatch()

        def _dispatch() -> tuple[int, str, dict[str, Any]]:
            with seen_lock, write(seen_db):
                first = seen.first_sighting(seen_db, timestamp, signature, now=clock())
            if not first:
                return (
                    409,
                    '{"ok":false,"error":"duplicate request: this signed request was already received"}',
                    {"content-type": ["application/json"]},
                )
            headers: dict[str, str | Sequence[str]] = {k: [v] for k, v in request.headers.items()}
            ref = secrets.token_hex(4)
            try:
                response = bolt_app.dispatch(BoltRequest(body=text, headers=headers))
            except Exception:
                log.exception("Slack request failed, ref %s", ref)
                return _failed(ref)
            if response.status >= 500:
                log.error("Bolt answered %s, ref %s", response.status, ref)
                return _failed(ref)
            return response.status, response.body, response.headers

        status, out_body, out_headers = await run_in_threadpool(dispatch)
        content_type = (out_headers.get("content-type") or ["text/plain;charset=utf-8"])[0]
        return Response(out_body, status_code=status, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await run_in_threadpool(ready)
        return JSONResponse(
            {"ready": all(checks.values()), "checks": checks},
            status_code=200 if all(checks.values()) else 503,
        )

    async def metrics_route(request: Request) -> Response:
        if metrics is None:
            return _error(404, "metrics are not enabled")
        payload, content_type = await run_in_threadpool(metrics)
        return Response(payload, media_type=content_type)

    routes: list[BaseRoute] = [
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)
