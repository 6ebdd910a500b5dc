"""Callback delivery: ThingSpace's asynchronous results, POSTed to the registered listeners.

Every asynchronous operation ends in one callback *per device*, sent to the URL registered for the
right service name (Verizon: "About Callback Services"; SDK ``ConnectivityManagementCallback``).
The envelope is::

    {"username": ..., "password": ...,            # as registered, "" when none
     "requestId": ..., "deviceIds": [...],        # the originating request, one device
     "deviceResponse" | "diagnosticsResponse": {...},
     "status": "Success" | "Failed", "faultResponse": {...},   # the latter on failure
     "callbackCount": 1..4, "maxCallbackThreshold": 4}

A listener must answer 2xx. Otherwise (an error status, a refused connection, a timeout) the
same message is sent again after the retry interval with ``callbackCount`` one higher, up to
:data:`MAX_CALLBACKS` attempts, then given up. With no listener registered for the service at
send time the result is simply never delivered.

:class:`CallbackSender` runs on its own thread with its own event loop and a bounded number of
deliveries in flight (16 by default); a 10,000-device bulk action becomes 10,000 POSTs over
keep-alive connections. It speaks minimal HTTP/1.1 itself (Content-Length and chunked replies,
http and https) because a general client costs several times more CPU per callback, and the
callback throughput of the bot is benchmarked against this sender. The same loop also runs the
sandbox's ticker (time-based events).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final
from urllib.parse import urlsplit

from bot.sandbox.clock import Clock, iso

__all__ = ["MAX_CALLBACKS", "CallbackSender", "Delivery", "Listener"]

logger = logging.getLogger(__name__)

MAX_CALLBACKS: Final = 4
_MAX_BODY: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Listener:
    """A registered callback listener (``POST /callbacks/{account}``)."""

    account: str
    service: str
    url: str
    username: str = ""
    password: str = ""


@dataclass(slots=True)
class Delivery:
    """One callback message; ``then`` is submitted after its first attempt (ordering).
    ``origin`` is the API path of the request it answers ("" for time-based notices)."""

    service: str
    payload: dict[str, Any]
    then: list[Delivery] = field(default_factory=list)
    attempt: int = 0
    generation: int = 0
    origin: str = ""


#: the API path being served, so a request (and every callback it causes) knows where it came from
API_PATH: ContextVar[str] = ContextVar("sandbox_api_path", default="")


class _Http:
    """One keep-alive HTTP/1.1 connection at a time; enough to POST JSON and read the status."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._key: tuple[str, str, int] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ssl: ssl.SSLContext | None = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._key = None

    async def post(self, url: str, body: bytes) -> int:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default = 443 if scheme == "https" else 80
        port = parts.port or default
        key = (scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname if port == default else f"{parts.hostname}:{port}"
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tsbot-sandbox\r\n"
            f"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        request = head.encode("latin-1") + body
        for retry_stale in (True, False):
            reused = self._writer is not None and self._key == key
            if not reused:
                self.close()
                await asyncio.wait_for(self._open(key), self._timeout)
            try:
                return await asyncio.wait_for(self._exchange(request), self._timeout)
            except (ConnectionError, asyncio.IncompleteReadError, EOFError):
                self.close()
                if reused and retry_stale:
                    continue  # the listener closed an idle keep-alive connection: reconnect once
                raise
            except BaseException:
                self.close()
                raise
        raise ConnectionError("unreachable")  # pragma: no cover

    async def _open(self, key: tuple[str, str, int]) -> None:
        scheme, hostname, port = key
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        self._reader, self._writer = await asyncio.open_connection(hostname, port, ssl=context)
        self._key = key

    async def _exchange(self, request: bytes) -> int:
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        writer.write(request)
        await writer.drain()
        while True:
            status_line = await reader.readline()
            if not status_line:
                raise EOFError("connection closed before a response")
            version, _, rest = status_line.decode("latin-1").partition(" ")
            status = int(rest[:3])
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n"):
                    break
                if not line:
                    raise EOFError("connection closed in the response headers")
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            if 100 <= status < 200:
                continue
            break
        keep_alive = headers.get("connection") != "close" and version.upper() != "HTTP/1.0"
        if headers.get("transfer-encoding", "").endswith("chunked"):
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                await self._skip(reader, size + 2 if size else 0)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
        elif "content-length" in headers:
            await self._skip(reader, int(headers["content-length"]))
        elif status not in (204, 304):
            while await reader.read(65536):
                pass
            keep_alive = False
        if not keep_alive:
            self.close()
        return status

    @staticmethod
    async def _skip(reader: asyncio.StreamReader, size: int) -> None:
        while size > 0:
            chunk = await reader.readexactly(min(size, _MAX_BODY))
            size -= len(chunk)


class CallbackSender:
    """Background delivery of callbacks with bounded concurrency and retries.

    ``resolve(service)`` returns the listener registered for a service at send time (or None).
    ``on_tick`` is called every ``tick_interval`` seconds on the sender's loop.
    """

    def __init__(
        self,
        resolve: Callable[[str], Listener | None],
        *,
        clock: Clock,
        concurrency: int = 16,
        retry_interval: float = 300.0,
        timeout: float = 10.0,
        on_tick: Callable[[], object] | None = None,
        tick_interval: float = 0.1,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._resolve = resolve
        self._clock = clock
        self._concurrency = concurrency
        self.retry_interval = retry_interval
        self._timeout = timeout
        self._on_tick = on_tick
        self._tick_interval = tick_interval
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Delivery] | None = None
        self._thread = threading.Thread(target=self._run, name="sandbox-callbacks", daemon=True)
        self._started = threading.Event()
        self._cond = threading.Condition()
        self._outstanding = 0
        self._generation = 0
        self._drops: list[list[Any]] = []  # [remaining, service or None, path glob or None]
        self._log: deque[dict[str, Any]] = deque(maxlen=100_000)
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def close(self) -> None:
        """Stop the thread; undelivered callbacks are abandoned. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        with self._cond:
            self._outstanding = 0
            self._cond.notify_all()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._queue = asyncio.Queue()
        tasks = [self._loop.create_task(self._worker()) for _ in range(self._concurrency)]
        tasks.append(self._loop.create_task(self._ticker()))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, deliveries: list[Delivery]) -> None:
        """Queue callbacks (thread-safe, non-blocking)."""
        if not deliveries or self._closed:
            return
        with self._cond:
            self._outstanding += len(deliveries)
            generation = self._generation
        for delivery in deliveries:
            delivery.generation = generation
        self._loop.call_soon_threadsafe(self._enqueue, deliveries)

    def _enqueue(self, deliveries: list[Delivery]) -> None:
        assert self._queue is not None
        for delivery in deliveries:
            self._queue.put_nowait(delivery)

    def drop(self, count: int, service: str | None = None, path: str | None = None) -> None:
        """Silently lose the next ``count`` callbacks (of ``service`` and/or caused by a request to
        an API path matching the glob ``path``; of any, without either)."""
        with self._cond:
            self._drops.append([count, service, path])

    def clear(self) -> None:
        """Abandon everything queued or waiting for a retry (sandbox reset)."""
        with self._cond:
            self._generation += 1
            self._drops.clear()

    # -- observing -----------------------------------------------------------------------------
    def outstanding(self) -> int:
        """Callbacks queued, in flight or waiting for a retry."""
        with self._cond:
            return self._outstanding

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no callback is queued, in flight or waiting for a retry."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    def log(self) -> list[dict[str, Any]]:
        """Every delivery attempt (and drop), oldest first."""
        with self._cond:
            return list(self._log)

    # -- delivering ----------------------------------------------------------------------------
    def _finish(self, delivery: Delivery) -> None:
        if delivery.then:
            self.submit(delivery.then)
            delivery.then = []
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def _take_drop(self, delivery: Delivery) -> bool:
        with self._cond:
            for rule in self._drops:
                service, path = rule[1], rule[2]
                if (
                    rule[0] > 0
                    and service in (None, delivery.service)
                    and (path is None or fnmatchcase(delivery.origin, path))
                ):
                    rule[0] -= 1
                    return True
            return False

    def _record(
        self, delivery: Delivery, url: str, status: int | None, outcome: str, error: str = ""
    ) -> None:
        entry = {
            "time": iso(self._clock()),
            "service": delivery.service,
            "requestId": delivery.payload.get("requestId"),
            "deviceIds": delivery.payload.get("deviceIds"),
            "url": url,
            "attempt": delivery.attempt,
            "status": status,
            "outcome": outcome,
            "error": error,
        }
        with self._cond:
            self._log.append(entry)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:
                    logger.exception("sandbox ticker failed")

    async def _worker(self) -> None:
        assert self._queue is not None
        http = _Http(self._timeout)
        try:
            while True:
                delivery = await self._queue.get()
                try:
                    await self._deliver(http, delivery)
                except Exception:  # never lose the worker
                    logger.exception("sandbox callback delivery failed")
                    self._finish(delivery)
        finally:
            http.close()

    async def _deliver(self, http: _Http, delivery: Delivery) -> None:
        with self._cond:
            stale = delivery.generation != self._generation
        if stale:
            delivery.then = []
            self._finish(delivery)
            return
        if delivery.attempt == 0 and self._take_drop(delivery):
            self._record(delivery, "", None, "dropped")
            self._finish(delivery)
            return
        listener = self._resolve(delivery.service)
        if listener is None:
            self._record(delivery, "", None, "no-listener")
            self._finish(delivery)
            return
        delivery.attempt += 1
        message = {"username": listener.username, "password": listener.password, **delivery.payload}
        message["callbackCount"] = delivery.attempt
        message["maxCallbackThreshold"] = MAX_CALLBACKS
        body = json.dumps(message, separators=(",", ":")).encode()
        status: int | None = None
        error = ""
        try:
            status = await http.post(listener.url, body)
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivered = status is not None and 200 <= status < 300
        if delivered:
            outcome = "delivered"
        elif delivery.attempt < MAX_CALLBACKS:
            outcome = "retrying"
        else:
            outcome = "failed"
        self._record(delivery, listener.url, status, outcome, error)
        if delivery.attempt == 1 and delivery.then:
            self.submit(delivery.then)
            delivery.then = []
        if outcome == "retrying":
            logger.info(
                "sandbox: callback %s attempt %d to %s not acknowledged (%s); retrying in %.3g s",
                delivery.service,
                delivery.attempt,
                urlsplit(listener.url).netloc,
                status or error,
                self.retry_interval,
            )
            self._loop.call_later(self.retry_interval, self._requeue, delivery)
            return
        if outcome == "failed":
            logger.warning(
                "sandbox: callback %s given up after %d attempts", delivery.service, delivery.attempt
            )
        self._finish(delivery)

    def _requeue(self, delivery: Delivery) -> None:
        assert self._queue is not None
        if not self._closed:
            self._queue.put_nowait(delivery)
