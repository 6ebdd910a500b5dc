"""The ThingSpace callback intake: ``POST /thingspace/callbacks`` → durable inbox → 2xx.

What a request goes through, in order, and what it gets back:

======================================== ======= ==============================================
check                                    answer  stored / counted (``tsbot_callbacks_total``)
======================================== ======= ==============================================
body over 1 MB (declared or streamed)    413     nothing / ``too_large``
not UTF-8 JSON, not an object, too deep  400     nothing / ``malformed``
echoed ``username``/``password`` differ  401     nothing / ``rejected``
authentic JSON the parser cannot read    200     an ``unknown_callbacks`` row / ``unrecognised``
                                                 (+ ``callbacks_unrecognised_total{service}``)
a new fact                               200     an inbox row / ``accepted``
the same fact again (a retry, a replay)  200     nothing new / ``duplicate``
the database cannot commit               503     nothing / — (ThingSpace retries)
======================================== ======= ==============================================

Authentication compares the body's ``username`` and ``password`` with
``TSBOT_CALLBACK_USERNAME``/``TSBOT_CALLBACK_PASSWORD`` in constant time, on UTF-8 bytes (so a
non-ASCII or lone-surrogate value is compared, not an error). ThingSpace offers nothing stronger: it echoes the registered username and password as plain
text in the body, with no signature and no timestamp (Verizon: "About Callback Services"; SDK
``ConnectivityManagementCallback``). With no password configured every callback is refused: an open
listener would accept anyone's results. The credentials are dropped before anything is stored or
logged; the body itself is never logged.

Only what could never be accepted gets a 4xx (bad credentials, not JSON, too big, not UTF-8 —
decoded strictly, so a UTF-16 body is refused rather than guessed); anything authentic and JSON
is acknowledged, and one the parser cannot read is kept raw (credentials removed) for
``tsbot callbacks unknown`` and ``tsbot callbacks reprocess``.

The 2xx is sent only after the callback's inbox row is committed. To keep that cheap under a burst
(10,000 devices answering at once) one writer thread — :class:`InboxWriter` — group-commits: it
takes every callback waiting in its queue, inserts them in one transaction, commits once, and only
then releases each waiting request with "new" or "duplicate". The inbox worker
(:mod:`bot.inbox.worker`) turns rows into results afterwards.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.core.logs import request_context
from bot.slack.web import BodyTooLarge, read_capped
from bot.thingspace.events import InvalidCallback, guess_service, parse_callback
from storage import inbox, unknown_callbacks
from storage.db import write
from storage.inbox import InboxItem
from storage.pool import ConnectionPool
from storage.unknown_callbacks import UnknownItem

__all__ = [
    "CALLBACK_PATH",
    "MAX_CALLBACK_BODY",
    "InboxWriter",
    "callback_route",
    "inbox_item",
]

log = logging.getLogger(__name__)

#: what the writer stores: a readable callback (the inbox) or an unreadable authentic one
Item = InboxItem | UnknownItem

CALLBACK_PATH = "/thingspace/callbacks"
#: Bodies above this size are refused with 413 before they are read in full.
MAX_CALLBACK_BODY = 1024 * 1024
#: The most callbacks one group commit takes.
MAX_BATCH = 2000


class IntakeClosed(RuntimeError):
    """The writer is stopping; the request gets 503 and ThingSpace retries."""


class InboxWriter:
    """One thread that stores callbacks in batches: one transaction and one commit per batch.

    :meth:`submit` returns a future that resolves to True (stored) or False (the same fact was
    already stored) once the batch holding the item has committed, or raises if it could not be.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        on_commit: Callable[[int], None] = lambda n: None,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.on_commit = on_commit
        self.max_batch = max_batch
        self.clock = clock
        self._queue: queue.SimpleQueue[tuple[Item, Future[bool]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._gate = threading.Lock()
        self.batches = 0
        self.stored = 0
        self._last_commit = 0.0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._closed.clear()
        self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Store what is already queued, then stop; later submissions are refused."""
        with self._gate:
            self._closed.set()
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None
        self._fail_queued()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Nothing to wake: the writer waits on its queue."""

    def idle(self) -> bool:
        """No callback waiting to be stored."""
        return self._queue.empty()

    def busy(self, window: float = 0.1) -> bool:
        """Whether callbacks were stored within the last *window* seconds (a burst is on)."""
        return time.monotonic() - self._last_commit < window

    def submit(self, item: Item) -> Future[bool]:
        future: Future[bool] = Future()
        with self._gate:
            if self._closed.is_set() or not self.alive():
                future.set_exception(IntakeClosed("the callback intake is stopping"))
                return future
            self._queue.put((item, future))
        return future

    def _fail_queued(self) -> None:
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not None and not entry[1].done():
                entry[1].set_exception(IntakeClosed("the callback intake stopped"))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    stopping = True
                    break
                batch.append(entry)
            self._store(batch)

    def _store(self, batch: list[tuple[Item, Future[bool]]]) -> None:
        db = self.pool.get()
        readable = [item for item, _ in batch if isinstance(item, InboxItem)]
        unreadable = [item for item, _ in batch if isinstance(item, UnknownItem)]
        try:
            with write(db):
                now = self.clock()
                fresh = iter(inbox.insert_many(db, readable, now=now))
                kept = iter(unknown_callbacks.insert_many(db, unreadable, now=now))
                results = [next(fresh) if isinstance(item, InboxItem) else next(kept) for item, _ in batch]
        except Exception as exc:  # noqa: BLE001 - the writer must outlive any one bad batch
            if len(batch) > 1:
                # One bad row must not fail its neighbours: store them one by one.
                log.warning(
                    "inbox batch of %d failed (%s); storing one by one", len(batch), type(exc).__name__
                )
                for entry in batch:
                    self._store([entry])
                return
            log.error("could not store a callback: %s", type(exc).__name__)
            batch[0][1].set_exception(
                exc if isinstance(exc, sqlite3.Error) else IntakeClosed(str(type(exc).__name__))
            )
            return
        self.batches += 1
        self.stored += sum(results)
        self._last_commit = time.monotonic()
        for (_, future), new in zip(batch, results, strict=True):
            future.set_result(new)
        if any(new for (item, _), new in zip(batch, results, strict=True) if isinstance(item, InboxItem)):
            self.on_commit(sum(results))


def _as_bytes(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "surrogatepass")


def authentic(payload: Mapping[str, Any], username: str, password: str, previous: str = "") -> bool:
    """Whether the echoed credentials equal the configured ones (constant time, on bytes).

    During a password rotation *previous* (``TSBOT_CALLBACK_PASSWORD_PREVIOUS``) is accepted too,
    so callbacks ThingSpace queued or retries with the old password are not refused.
    """
    if not password:
        return False
    got_user = _as_bytes(payload.get("username", ""))
    got_password = _as_bytes(payload.get("password", ""))
    want_user = username.encode("utf-8", "surrogatepass")
    wanted = [password.encode("utf-8", "surrogatepass")]
    if previous:
        wanted.append(previous.encode("utf-8", "surrogatepass"))
    # Every comparison always runs: no early exit tells which one failed.
    user_ok = hmac.compare_digest(got_user if got_user is not None else b"\x00", want_user)
    given = got_password if got_password is not None else b"\x00"
    password_ok = False
    for want in wanted:
        password_ok |= hmac.compare_digest(given, want)
    return user_ok & password_ok & (got_user is not None) & (got_password is not None)


def _utf8(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCallback(f"{what} is not valid Unicode text") from None
    return value


def inbox_item(payload: Mapping[str, Any]) -> InboxItem:
    """The inbox row for one authentic callback body (raises :class:`InvalidCallback`).

    The body is serialised here, on the request's side: one that cannot be (nested too deeply)
    is refused with a 400 instead of failing in the writer thread; non-ASCII is escaped, so a
    lone surrogate from a JSON escape is stored as the escape it came as.
    """
    try:
        event = parse_callback(payload)
        stored = json.dumps(dict(event.raw), separators=(",", ":"), ensure_ascii=True)
    except RecursionError:
        raise InvalidCallback("the body is nested too deeply") from None
    except ValueError as exc:
        if isinstance(exc, InvalidCallback):
            raise
        raise InvalidCallback("the body holds a value JSON cannot carry") from None
    return InboxItem(
        request_id=_utf8(event.request_id, "requestId") or inbox.UNSOLICITED,
        device=_utf8(str(event.device), "deviceIds") if event.device is not None else "",
        outcome_key=event.outcome_key,
        service=event.service,
        kind=event.kind.value,
        payload=stored,
        callback_count=event.callback_count,
    )


def unknown_item(payload: Mapping[str, Any], reason: str) -> UnknownItem:
    """What is kept of an authentic callback the parser cannot read: the body without the
    credentials (non-ASCII escaped, so lone surrogates survive), a service guess and the request
    id when it has a usable one. Raises :class:`InvalidCallback` only for a body that cannot be
    serialised at all (nested too deeply)."""
    body = {k: v for k, v in payload.items() if k not in ("username", "password")}
    try:
        stored = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
        print_ = unknown_callbacks.fingerprint(body)
    except RecursionError:
        raise InvalidCallback("the body is nested too deeply") from None
    except ValueError:
        raise InvalidCallback("the body holds a value JSON cannot carry") from None
    request_id = payload.get("requestId")
    if not isinstance(request_id, str):
        request_id = ""
    try:
        request_id = _utf8(request_id.strip()[:200], "requestId")
    except InvalidCallback:
        request_id = ""
    return UnknownItem(
        fingerprint=print_,
        service_guess=guess_service(payload),
        request_id=request_id,
        reason=reason[:300],
        payload=stored,
    )


def _answer(status: int, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"ok": 200 <= status < 300}
    if message:
        body["error" if status >= 400 else "message"] = message
    body.update(extra)
    return JSONResponse(body, status_code=status)


def _peer_allowed(request: Request, allowed: Sequence[IPv4Network | IPv6Network]) -> bool:
    """Whether the peer is allowed. Behind a proxy, uvicorn has already replaced the peer with the
    X-Forwarded-For address — but only for proxies in ``TSBOT_TRUSTED_PROXIES``, so a spoofed
    header from anyone else is ignored."""
    if request.client is None:
        return False
    try:
        address = ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in network for network in allowed)


def callback_route(
    *,
    writer: InboxWriter,
    username: str,
    password: str,
    previous_password: str = "",
    allowed: Sequence[IPv4Network | IPv6Network] = (),
    count: Callable[[str], None] = lambda result: None,
    count_unrecognised: Callable[[str], None] = lambda service: None,
    path: str = CALLBACK_PATH,
) -> Route:
    """The Starlette route of the intake. *count* gets each request's result;
    *count_unrecognised* the service guess of each new authentic callback that could not be read."""
    if not password:
        log.warning("TSBOT_CALLBACK_PASSWORD is not set: every ThingSpace callback will be refused (401)")

    async def _intake(request: Request) -> Response:
        if allowed and not _peer_allowed(request, allowed):
            count("rejected")
            peer = request.client.host if request.client else "?"
            log.warning("refused a ThingSpace callback from %s: not in TSBOT_CALLBACK_ALLOWED_IPS", peer)
            return _answer(403, "this address may not send callbacks")
        try:
            body = await read_capped(request, MAX_CALLBACK_BODY)
        except BodyTooLarge:
            count("too_large")
            log.warning("refused a callback body over %d bytes", MAX_CALLBACK_BODY)
            return _answer(413, f"callback body over {MAX_CALLBACK_BODY} bytes")
        except ValueError:
            count("malformed")
            return _answer(400, "bad Content-Length header")
        try:
            payload = json.loads(body.decode("utf-8"))  # strictly UTF-8: no UTF-16/32 guessing
        except (ValueError, RecursionError):
            count("malformed")
            return _answer(400, "the body is not valid UTF-8 JSON")
        if not isinstance(payload, dict):
            count("malformed")
            return _answer(400, "a callback body must be a JSON object")
        if not authentic(payload, username, password, previous_password):
            count("rejected")
            peer = request.client.host if request.client else "?"
            log.warning("refused a ThingSpace callback from %s: wrong username or password", peer)
            return _answer(401, "wrong callback username or password")
        item: Item
        unreadable = ""
        try:
            item = inbox_item(payload)
        except InvalidCallback as exc:
            # Authentic and JSON: never refused (ThingSpace would retry, then drop it). Kept
            # aside for `tsbot callbacks unknown` / `reprocess`.
            unreadable = str(exc)
            try:
                item = unknown_item(payload, unreadable)
            except InvalidCallback as why:
                count("malformed")
                return _answer(400, f"not a ThingSpace callback: {why}")
        try:
            new = await asyncio.wrap_future(writer.submit(item))
        except (IntakeClosed, sqlite3.Error) as exc:
            log.error("callback not stored (%s); answering 503 so ThingSpace retries", type(exc).__name__)
            return _answer(503, "the callback could not be stored; retry later")
        if isinstance(item, UnknownItem):
            count("unrecognised")
            if new:
                count_unrecognised(item.service_guess)
                log.warning(
                    "kept an authentic callback the bot cannot read (%s, service guess %s): "
                    "see `tsbot callbacks unknown`",
                    unreadable,
                    item.service_guess,
                )
            return _answer(200, "kept, not understood", duplicate=not new)
        count("accepted" if new else "duplicate")
        return _answer(200, "", duplicate=not new)

    async def intake(request: Request) -> Response:
        with request_context():
            return await _intake(request)

    return Route(path, intake, methods=["POST"])
