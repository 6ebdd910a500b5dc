"""The outbox relay: sends the rows of ``storage.outbox`` to Slack, paced, retried, restart-safe.

One dispatcher thread looks at the head of every lane (a channel, a message's updates, a
response_url), decides which may go now, claims them with a lease and hands them to a small
thread pool, so a channel that Slack rate-limits never holds up the others.

Rules it keeps:

* about one message per second per channel (``chat.postMessage`` and ``chat.postEphemeral``
  share the channel's pace); messages of one channel go out in the order they were enqueued;
* at most one ``chat.update`` per message every ``update_interval`` seconds (the outbox has
  already coalesced pending updates, so the newest state is what is sent), and overall no more
  than ``update_budget_per_minute`` updates (``chat.update`` is Tier 3, ~50/min per workspace);
* HTTP 429 blocks that method for that channel for ``Retry-After`` seconds; for ``chat.update``,
  whose Tier-3 limit is workspace-wide, the whole method waits. A 429 does not count as a failure;
* 5xx answers, timeouts, connection errors and Slack's transient error codes are retried with
  capped exponential backoff and jitter (``backoff_cap``, 60 s by default) for as long as the row
  is younger than ``max_age`` (:data:`MAX_RETRY_AGE`, 24 h, counted from the enqueue or the last
  requeue): a Slack outage of minutes or hours delays messages, it does not lose them. Only a
  row still failing after that long is dead-lettered ("gave up after 24 h: …"). A 429 is never a
  failure, but it too stops at the age limit;
* an update waits while the post it edits is still unsent (pending, or being retried); it is
  dead-lettered only if that post is dead or gone;
* every other Slack error (``channel_not_found``, ``not_in_channel``, ``is_archived``,
  ``invalid_auth``, ``invalid_blocks``, ``msg_too_long``, a response_url's ``expired_url`` or
  ``used_url`` …) is permanent: the row goes to the dead-letter state with one WARNING line and an
  ``on_event("dead", info)`` call, and is not tried again (``tsbot outbox dead`` lists such rows,
  ``tsbot outbox requeue`` sends them again once the cause is fixed);
* when the root message of a request (``req:<request id>``) or an approval card
  (``approval:<action id>``) dies because the bot cannot post in that conversation
  (``channel_not_found``, ``not_in_channel``), the requester is told what happened and what to do:
  through the command's response_url while it is fresh (Slack honours one for 30 min), else by a
  direct message;
* a row taken back after a crash (its lease expired while ``sending``) or after a timeout may
  already be in Slack. Every post carries its row's mark in Slack's message ``metadata``
  (:data:`METADATA_EVENT`, :func:`marker`), so such a post is first looked for in the channel
  (or its thread) with ``conversations.history`` / ``.replies``: found, that copy is updated to
  the row's content and becomes the row's message — nothing is posted twice. When it cannot be
  looked for (no ``channels:history`` / ``groups:history`` scope, a DM) the re-send carries a
  small ``ref <hash>`` label so a human can spot a duplicate — a context block, or inside the
  last context block when the message already has Slack's maximum of 50 blocks, or in the text
  when neither fits.

One relay sends at a time per database: the pacing, the 429 blocks and the update budget live in
the relay's memory, so two relays (two processes started on one database by mistake) would each
pace on their own and together double the rate. The relay therefore sends only while it holds the
SQLite lease :data:`RELAY_LEASE` (``storage.lease``); another relay on the same database waits,
and takes over within :data:`RELAY_LEASE_TTL` if the holder dies (within ``poll_interval`` if it
stops cleanly and releases the lease). A relay that takes over first waits one pacing interval
per lane, since its predecessor may have just sent there. Claims stay atomic and per lane
underneath, so even an overlap sends each row once.

Slack is reached with slack_sdk's ``WebClient`` with its retry handlers switched off (the outbox
owns retries: a hidden retry would be an unlabelled duplicate); a response_url with a plain
httpx POST that carries no token, and only to ``https://hooks.slack.com`` or the configured Slack
API's own origin (the local stand-in): a response_url comes from a request body, and any other
host is dead-lettered unsent.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient

from bot.core.durations import format_duration
from bot.core.logs import request_context
from bot.core.redact import mask_text
from bot.render.blocks import MAX_BLOCKS, channel_ref
from storage import lease as lease_store
from storage import outbox, pending, requests
from storage.db import write
from storage.outbox import OutboxRow
from storage.pool import ConnectionPool

__all__ = [
    "MAX_RETRY_AGE",
    "METHODS",
    "RELAY_LEASE",
    "RELAY_LEASE_TTL",
    "TRANSIENT_ERRORS",
    "EventHook",
    "OutboxRelay",
    "fresh_block_ids",
    "reference",
    "requester_notice",
]

logger = logging.getLogger(__name__)

#: ``on_event(kind, info)``: kind is ``sent``, ``retry``, ``rate_limited`` or ``dead``; info holds
#: ``key``, ``kind`` (of the row), ``channel``, ``method``, ``attempts``, ``error``, ``retry_in``
#: (seconds, for retry and rate_limited) and ``row`` (the ``storage.outbox.OutboxRow``).
EventHook = Callable[[str, Mapping[str, Any]], None]

#: Slack ``error`` codes worth another try; every other code is permanent.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

#: The Slack call each kind of outbox row is sent with.
#: Slack's answers meaning "no file can be uploaded here": the file row posts its text instead
NO_FILES = frozenset(
    {
        "missing_scope",
        "not_allowed_token_type",
        "unknown_method",
        "method_not_supported_for_channel_type",
        "invalid_channel",
        "not_in_channel",
    }
)

METHODS = {
    "post": "chat.postMessage",
    "ephemeral": "chat.postEphemeral",
    "update": "chat.update",
    "respond": "response_url",
}

#: How long a row is retried through transient failures (5xx, timeouts, refused connections,
#: 429s) before it is dead-lettered, counted from its enqueue (or its last requeue).
MAX_RETRY_AGE = 24 * 3600.0
#: The lease a relay must hold to send (one sending relay per database).
RELAY_LEASE = "outbox-relay"
#: How long that lease lasts unless renewed (every third of it): after a relay dies, another
#: one on the same database takes over within this time.
RELAY_LEASE_TTL = 15.0
#: Errors that mean the bot cannot post in the conversation at all (not a member, or cannot see it).
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel"})
#: A response_url is honoured by Slack for 30 min; this much of it is trusted.
RESPONSE_URL_FRESH = 25 * 60.0
#: What a request of each verb is called in the notice to its requester.
_REQUEST_NOUNS = {
    "suspend": "suspend",
    "resume": "resume",
    "sms": "SMS",
    "cancel-location": "cancel-location request",
    "reach": "reachability query",
}
#: Keys of the posts whose death the requester is told about: request roots and approval cards.
_REQUESTER_PREFIXES = ("req:", "approval:")

# A row whose next_attempt_at lies further ahead than this was scheduled by a clock that has
# since been set back; it is treated as due rather than left waiting for hours.
_CLOCK_STEP_HORIZON = 3600.0
_MIN_SCAN_SPACING = 0.01


#: where Slack's response_urls point (docs.slack.dev, "Handling user interaction")
RESPONSE_URL_HOST = "hooks.slack.com"


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def response_url_allowed(url: str, slack_api_url: str) -> bool:
    """Whether the bot may POST to *url*, which came in a request body: only Slack's own
    ``https://hooks.slack.com/…``, or the origin of the configured Slack API (the local stand-in).
    A response_url is a place the bot sends channel content to; any other host is refused."""
    origin = _origin(url)
    if origin is None:
        return False
    if origin[:2] == ("https", RESPONSE_URL_HOST) and origin[2] in (None, 443):
        return True
    return origin == _origin(slack_api_url) and origin[0] in ("http", "https") and bool(origin[1])


#: ``metadata.event_type`` of every message the relay posts; ``event_payload.ref`` is
#: :func:`marker` of the row's key, how a re-sent post finds a first copy Slack kept (Slack's
#: ``chat.postMessage`` ``metadata``, read back with ``conversations.history``
#: ``include_all_metadata``)
METADATA_EVENT = "tsbot_outbox"
#: how far back before a row was created (or requeued) its first copy is looked for: clock skew
_ORPHAN_MARGIN = 300.0
_ORPHAN_PAGES = 3


def marker(key: str) -> str:
    """The unique mark of an outbox key carried in the metadata of the message it posts."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def reference(key: str) -> str:
    """The short, stable label of an outbox key shown on a possibly duplicated message."""
    return "ref " + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class _Outcome:
    status: str  # sent | rate_limited | retry | dead
    error: str = ""
    retry_after: float = 0.0
    uncertain: bool = False
    slack_channel: str | None = None
    slack_ts: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class _Work:
    row: OutboxRow
    channel: str  # where the call goes (for updates: the target's channel id)
    thread_ts: str | None = None
    ts: str | None = None  # the message an update edits
    link: tuple[str, str] | None = None  # (channel, ts) of the post whose permalink the content carries


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            if isinstance(value, list | tuple):
                return str(value[0]) if value else None
            return str(value)
    return None


def _retry_after(headers: Mapping[str, Any]) -> float:
    raw = _header(headers, "Retry-After")
    try:
        seconds = float(raw) if raw is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 1.0), _CLOCK_STEP_HORIZON)


def fresh_block_ids(blocks: list[dict[str, Any]], token: str) -> list[dict[str, Any]]:
    """*blocks* with a new ``block_id`` on every block (``<its id or b<i>>.<token>``), for a message
    that replaces another: Slack asks for new ids on each update, so clients drop the old blocks'
    state. The stored payload keeps the plain ids (renderers find their own blocks by them)."""
    out = []
    for index, block in enumerate(blocks):
        base = str(block.get("block_id") or f"b{index}")[: 255 - len(token) - 1]
        out.append({**block, "block_id": f"{base}.{token}"})
    return out


def _fallback_text(blocks: list[dict[str, Any]] | None) -> str:
    """A notification text for a blocks-only message (Slack shows it in notifications)."""
    for block in blocks or []:
        text = block.get("text")
        if isinstance(text, Mapping) and isinstance(text.get("text"), str) and text["text"].strip():
            return str(text["text"])[:300]
    return "(message)"


#: Slack's limit of elements in one context block.
_CONTEXT_ELEMENTS = 10


def _labelled(blocks: list[dict[str, Any]], ref: str) -> list[dict[str, Any]] | None:
    """*blocks* with the duplicate label *ref* added, never more than Slack's 50 blocks: a context
    block of its own if there is room, else one more element of the last block if that is a
    context block with room; None if neither fits (the caller puts the label in the text)."""
    label = {"type": "mrkdwn", "text": ref}
    if len(blocks) < MAX_BLOCKS:
        return [*blocks, {"type": "context", "elements": [label]}]
    last = blocks[-1]
    elements = last.get("elements")
    if last.get("type") == "context" and isinstance(elements, list) and len(elements) < _CONTEXT_ELEMENTS:
        return [*blocks[:-1], {**last, "elements": [*elements, label]}]
    return None


def requester_notice(db: Any, row: OutboxRow, error: str, *, now: float) -> str | None:
    """Tell the requester that the root message of their request, or their approval card, could
    not be posted (the bot is not in that conversation), and what to do about it.

    Queued in the caller's transaction: through the response_url the request came with while it
    is fresh, else as a direct message. Returns which of the two, or None when the row is not
    such a post, the error is another one, or the requester is unknown.
    """
    if row.kind != "post" or error not in CHANNEL_ERRORS or not row.key.startswith(_REQUESTER_PREFIXES):
        return None
    prefix, _, ident = row.key.partition(":")
    where = channel_ref(row.channel)
    why = (
        f"I am not a member of {where}"
        if error == "not_in_channel"
        else "I cannot see that conversation (a DM, or a private channel I am not in)"
    )
    invite = (
        f"invite @tsbot to {where} (`/invite @tsbot`)"
        if row.channel[:1] in ("C", "G")
        else "run the command in a channel I am in (or invite @tsbot to one)"
    )
    if prefix == "req":
        tracked = requests.get_request(db, ident)
        if tracked is None:
            return None
        actor, url, issued = tracked.actor, tracked.response_url, tracked.created_at
        action = pending.get(db, str(tracked.detail["pending"])) if tracked.detail.get("pending") else None
        if action is not None:
            issued = action.created_at  # the response_url is the slash command's
        text = (
            f":warning: ThingSpace accepted your {_REQUEST_NOUNS.get(tracked.verb, tracked.verb)} "
            f"(request `{ident}`), but I could not "
            f"post its results in {where}: {why} (`{error}`). Nothing was undone. To see the "
            f"result, {invite}, then `/ts request {ident}` shows it."
        )
    else:
        action = pending.get(db, ident)
        if action is None:
            return None
        actor, url, issued = action.actor, action.response_url, action.created_at
        devices = len(action.devices)
        text = (
            f":warning: Your {action.verb} of {devices:,} device{'s' if devices != 1 else ''} needs "
            f"a second person's approval, but I could not post the approval card in {where}: "
            f"{why} (`{error}`). Nothing was changed. To go ahead, {invite} and run the command again."
        )
    key = f"undeliverable:{row.key}"
    if url and now - issued < RESPONSE_URL_FRESH:
        outbox.enqueue_respond(db, key=key, response_url=url, text=text)
        return "response_url"
    if not actor:
        return None
    outbox.enqueue_post(db, key=key, channel=actor, text=text)
    return "direct message"


def _transport_outcome(exc: BaseException) -> _Outcome:
    """A call that got no HTTP answer: retryable; uncertain unless it surely never left."""
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    never_sent = isinstance(reason, ConnectionRefusedError | httpx.ConnectError | socket.gaierror)
    name = type(reason).__name__
    if isinstance(reason, TimeoutError | socket.timeout | httpx.TimeoutException):
        name = "timeout"
    elif isinstance(reason, http.client.RemoteDisconnected | ConnectionResetError):
        name = "connection lost"
    return _Outcome("retry", error=f"no answer from Slack ({name})", uncertain=not never_sent)


def _server_error(status: int) -> _Outcome:
    """5xx: retry. 503 means the request was turned away; any other 5xx may have been processed."""
    return _Outcome("retry", error=f"HTTP {status}", uncertain=status != 503)


class OutboxRelay:
    """Sends outbox rows from a database until stopped. One relay sends per database at a time.

    ``wake()`` after an enqueue makes it look at once; it also polls every ``poll_interval``
    seconds. ``clock`` (monotonic) drives the in-memory pacing; the rows' own times are epoch
    seconds, so they survive restarts. ``max_age`` bounds the retries of a transiently failing
    row (see the module docstring). ``lease_name`` (default :data:`RELAY_LEASE`) is the SQLite
    lease the relay must hold to send, held for ``lease_ttl`` seconds and renewed every third of
    it; ``None`` sends without one (a test that wants two relays side by side).
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        slack_api_url: str,
        bot_token: str,
        clock: Callable[[], float] = time.monotonic,
        per_channel_interval: float = 1.0,
        update_interval: float = 3.0,
        max_age: float = MAX_RETRY_AGE,
        on_event: EventHook | None = None,
        update_budget_per_minute: float = 50.0,
        workers: int = 4,
        lease: float = 30.0,
        timeout: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        poll_interval: float = 1.0,
        lease_name: str | None = RELAY_LEASE,
        lease_ttl: float = RELAY_LEASE_TTL,
    ) -> None:
        if max_age <= 0 or workers < 1:
            raise ValueError("max_age must be positive and workers at least 1")
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        if lease <= timeout:
            raise ValueError("lease must be longer than the HTTP timeout, or a slow call is sent twice")
        self._pool = pool
        self._clock = clock
        self._per_channel_interval = per_channel_interval
        self._update_interval = update_interval
        self._max_age = max_age
        self._lease_name = lease_name
        self._lease_ttl = lease_ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held_until = 0.0  # wall-clock end of this relay's lease, as last renewed
        self._renew_at = 0.0  # wall-clock time of the next renewal (or the next attempt)
        # When this relay (re)gained the right to send (clock()): the relay before it may have
        # sent in any lane just before, so each lane first waits its interval from then.
        self._took_over = float("-inf")
        self._on_event = on_event
        self._workers = workers
        self._lease = lease
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._poll_interval = poll_interval
        self._update_rate = update_budget_per_minute / 60.0
        self._update_burst = max(1.0, min(10.0, update_budget_per_minute / 5.0))
        self._update_tokens = self._update_burst
        self._update_tokens_at = clock()

        sdk_logger = logging.getLogger(f"{__name__}.slack_sdk")
        if sdk_logger.level == logging.NOTSET:
            # The relay logs every outcome itself; slack_sdk would repeat each failure at ERROR.
            sdk_logger.setLevel(logging.CRITICAL)
        base_url = slack_api_url if slack_api_url.endswith("/") else slack_api_url + "/"
        self._slack_api_url = base_url
        self._slack = WebClient(
            token=bot_token,
            base_url=base_url,
            timeout=int(max(1, timeout)),
            retry_handlers=[],
            logger=sdk_logger,
        )
        self._http: httpx.Client | None = None

        self._lock = threading.Lock()
        self._inflight: set[str] = set()
        self._lane_ready: dict[str, float] = {}
        self._blocked: dict[tuple[str, str], float] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> OutboxRelay:
        """Start the dispatcher thread and the sender pool (no-op if running)."""
        if self._thread is not None:
            return self
        self._stopping.clear()
        # One pooled connection per sender, so httpcore never queues or trims (encode/httpcore#1110).
        pool = httpx.Limits(max_connections=self._workers, max_keepalive_connections=self._workers)
        self._http = httpx.Client(timeout=httpx.Timeout(self._timeout), follow_redirects=False, limits=pool)
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="outbox-send")
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop dispatching; calls already in flight finish (each is bounded by the HTTP timeout)."""
        thread, executor = self._thread, self._executor
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if executor is not None:
            executor.shutdown(wait=True)
        if self._http is not None:
            self._http.close()
        self._thread = self._executor = self._http = None
        self._release_lease()
        with self._progress:
            self._progress.notify_all()

    def wake(self) -> None:
        """Look at the outbox now (call after an enqueue has committed)."""
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until every row is sent, dead or superseded; False if *timeout* passed first."""
        deadline = time.monotonic() + timeout
        db = self._pool.get()
        while True:
            if outbox.pending_count(db) == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.wake()
            with self._progress:
                self._progress.wait(min(0.1, remaining))

    @property
    def running(self) -> bool:
        """True while the dispatcher thread is alive (for readiness checks)."""
        return self._thread is not None and self._thread.is_alive()

    def alive(self) -> bool:
        return self.running

    def idle(self) -> bool:
        """Nothing in flight and nothing left to send."""
        with self._lock:
            inflight = bool(self._inflight)
        return not inflight and outbox.pending_count(self._pool.get()) == 0

    @property
    def active(self) -> bool:
        """True while this relay holds the lease and may send (always, without a lease)."""
        return self._lease_name is None or time.time() < self._held_until - self._lease_ttl / 10

    # -- the lease -----------------------------------------------------------------------------

    def _hold_lease(self) -> bool:
        """Whether this relay may send now; takes or renews the lease when it is time to."""
        if self._lease_name is None:
            return True
        now = time.time()
        if now < self._renew_at:
            return now < self._held_until - self._lease_ttl / 10
        db = self._pool.get()
        current = lease_store.current(db, self._lease_name)
        if current is not None and current.holder != self.holder and current.expires_at > now:
            # Someone else sends; look again soon (a read, no write transaction).
            was = self._held_until > now
            self._held_until = 0.0
            self._renew_at = now + min(self._poll_interval, self._lease_ttl / 3)
            if was:
                logger.warning("the outbox relay lease went to %s; this relay stops sending", current.holder)
            return False
        held = lease_store.acquire(db, self._lease_name, self.holder, ttl=self._lease_ttl, now=now)
        was = self._held_until > now
        self._held_until = held.expires_at if held else 0.0
        self._renew_at = now + (
            self._lease_ttl / 3 if held else min(self._poll_interval, self._lease_ttl / 3)
        )
        if held and not was:
            logger.info("this process holds the outbox relay lease and sends to Slack")
            self._took_over = self._clock()
        return held is not None and now < self._held_until - self._lease_ttl / 10

    def _release_lease(self) -> None:
        if self._lease_name is None or self._held_until == 0.0:
            return
        self._held_until = self._renew_at = 0.0
        try:
            lease_store.release(self._pool.get(), self._lease_name, self.holder)
        except Exception:  # noqa: BLE001 - shutting down: the lease then simply expires
            logger.warning("could not release the outbox relay lease; it expires in %.0f s", self._lease_ttl)

    # -- dispatching -------------------------------------------------------------------------

    def _run(self) -> None:
        last_scan = 0.0
        while not self._stopping.is_set():
            # Completions wake the dispatcher; batching them bounds the scans to ~100/s.
            since = time.monotonic() - last_scan
            if since < _MIN_SCAN_SPACING:
                self._stopping.wait(_MIN_SCAN_SPACING - since)
            last_scan = time.monotonic()
            self._wake.clear()
            try:
                if self._hold_lease():
                    delay = self._dispatch_once()
                    if self._lease_name is not None:  # wake up in time to renew the lease
                        delay = min(delay, self._renew_at - time.time())
                else:  # another relay sends: look again when the lease may be free
                    delay = self._renew_at - time.time()
            except Exception:
                logger.exception("outbox dispatcher failed; retrying in %.1f s", self._poll_interval)
                delay = self._poll_interval
            self._wake.wait(max(0.005, delay))

    def _dispatch_once(self) -> float:
        """Start every row that may go now; return how long until something may be due."""
        db = self._pool.get()
        now_wall, now = time.time(), self._clock()
        wait = self._poll_interval
        for row in outbox.lane_heads(db):
            with self._lock:
                if len(self._inflight) >= self._workers:
                    break
                if row.lane in self._inflight:
                    continue
            if row.state == "sending" and row.lease_until is not None and row.lease_until >= now_wall:
                wait = min(wait, row.lease_until - now_wall + 0.01)
                continue
            ahead = row.next_attempt_at - now_wall
            if row.state == "pending" and 0 < ahead <= _CLOCK_STEP_HORIZON:
                wait = min(wait, ahead)
                continue
            paced = self._pacing_wait(row, now)
            if paced > 0:
                wait = min(wait, paced)
                continue
            work = self._prepare(db, row)
            if work is None:
                continue
            claimed = outbox.claim(db, row.id, lease=self._lease, now=now_wall)
            if claimed is None:
                continue
            self._reserve(claimed, now)
            assert self._executor is not None
            self._executor.submit(self._send, dataclasses.replace(work, row=claimed))
        return wait

    def _block_key(self, row: OutboxRow) -> tuple[str, str]:
        method = METHODS[row.kind]
        if row.kind == "update":
            return (method, "")
        if row.kind == "respond":
            return (method, row.lane)
        return (method, row.channel)

    def _lane_interval(self, row: OutboxRow) -> float:
        if row.kind == "update":
            return self._update_interval
        if row.kind == "respond":
            return 0.0
        return self._per_channel_interval

    def _pacing_wait(self, row: OutboxRow, now: float) -> float:
        """Seconds until pacing, rate limits and the update budget let this row go (0: now)."""
        with self._lock:
            wait = max(
                self._lane_ready.get(row.lane, 0.0) - now,
                self._blocked.get(self._block_key(row), 0.0) - now,
                self._took_over + self._lane_interval(row) - now,
            )
            if row.kind == "update":
                self._refill_updates(now)
                if self._update_tokens < 1.0:
                    wait = max(wait, (1.0 - self._update_tokens) / self._update_rate)
        return max(0.0, wait)

    def _refill_updates(self, now: float) -> None:
        elapsed = max(0.0, now - self._update_tokens_at)
        self._update_tokens = min(self._update_burst, self._update_tokens + elapsed * self._update_rate)
        self._update_tokens_at = now

    def _reserve(self, row: OutboxRow, now: float) -> None:
        with self._lock:
            self._inflight.add(row.lane)
            if row.kind == "update":
                self._update_tokens -= 1.0
            if len(self._lane_ready) > 1000:
                self._lane_ready = {k: v for k, v in self._lane_ready.items() if v > now}
                self._blocked = {k: v for k, v in self._blocked.items() if v > now}

    def _prepare(self, db: Any, row: OutboxRow) -> _Work | None:
        """Resolve what the row depends on; None if it must wait (or was just dead-lettered)."""
        link: tuple[str, str] | None = None
        if row.payload.get("link_key") and row.kind in ("update", "post"):
            linked = outbox.get(db, str(row.payload["link_key"]))
            if linked is not None and linked.state in outbox.OPEN_STATES:
                return None  # the post it links to is not sent yet
            if linked is not None and linked.state == "sent" and linked.slack_ts:
                link = (linked.slack_channel or linked.channel, linked.slack_ts)
        work = self._prepare_target(db, row)
        return None if work is None else dataclasses.replace(work, link=link)

    def _prepare_target(self, db: Any, row: OutboxRow) -> _Work | None:
        if row.kind == "update":
            target = outbox.get(db, row.target_key or "")
            if target is not None and target.state in outbox.OPEN_STATES:
                return None
            if target is None or target.state != "sent" or not target.slack_ts:
                self._dead(row, "the message to update was never posted", db=db)
                return None
            return _Work(row, target.slack_channel or target.channel, ts=target.slack_ts)
        if row.kind == "post" and row.thread_key is not None and row.thread_ts is None:
            parent = outbox.get(db, row.thread_key)
            if parent is not None and parent.state in outbox.OPEN_STATES:
                return None
            if parent is not None and parent.state == "sent" and parent.slack_ts:
                root = parent.thread_ts or parent.slack_ts
                return _Work(row, parent.slack_channel or row.channel, thread_ts=root)
            logger.info(
                "outbox %s: thread parent was never posted; posting in the channel instead",
                mask_text(row.key),
            )
            return _Work(row, row.channel)
        return _Work(row, row.channel, thread_ts=row.thread_ts)

    # -- sending -----------------------------------------------------------------------------

    def _send(self, work: _Work) -> None:
        with request_context(f"out-{work.row.id}"):
            self._send_row(work)

    def _send_row(self, work: _Work) -> None:
        row = work.row
        try:
            try:
                outcome = self._call(work)
            except Exception as exc:  # a bug or an unforeseen library error: retry, bounded
                logger.exception("outbox %s: unexpected error while sending", mask_text(row.key))
                outcome = _Outcome("retry", error=f"unexpected {type(exc).__name__}", uncertain=True)
            self._record(work, outcome)
        except Exception:
            logger.exception(
                "outbox %s: could not record the result; the lease will expire", mask_text(row.key)
            )
        finally:
            with self._lock:
                # Pace from the answer, not the claim: Slack counts arrivals, and an arrival is
                # never later than our answer, so the next call arrives at least an interval later.
                interval = self._lane_interval(row)
                if interval > 0:
                    ready = self._clock() + interval
                    self._lane_ready[row.lane] = max(self._lane_ready.get(row.lane, 0.0), ready)
                self._inflight.discard(row.lane)
            self._wake.set()
            with self._progress:
                self._progress.notify_all()

    def _content(self, row: OutboxRow) -> tuple[str, list[dict[str, Any]] | None]:
        text: str = row.payload.get("text") or ""
        blocks: list[dict[str, Any]] | None = row.payload.get("blocks")
        creates_message = row.kind in ("post", "ephemeral") or (
            row.kind == "respond"
            and not row.payload.get("replace_original")
            and not row.payload.get("delete_original")
        )
        if row.uncertain and creates_message:
            ref = reference(row.key)
            if blocks:
                blocks = _labelled(blocks, ref)
                if blocks is None:  # no room in the blocks: the label goes into the text
                    blocks = row.payload.get("blocks")
                    text = f"{text}\n_{ref}_" if text else ref
            else:
                text = f"{text}\n_{ref}_" if text else ref
        replaces = row.kind == "update" or (
            row.kind == "respond" and bool(row.payload.get("replace_original"))
        )
        if replaces and blocks:
            blocks = fresh_block_ids(blocks, uuid.uuid4().hex[:8])
        if not text:
            text = _fallback_text(blocks)
        return text, blocks

    def _call(self, work: _Work) -> _Outcome:
        row = work.row
        if row.kind == "post" and row.uncertain and not isinstance(row.payload.get("file"), Mapping):
            orphan = self._find_orphan(work)
            if orphan is not None:  # the first attempt reached Slack: complete it, post nothing new
                return self._adopt(work, orphan)
        text, blocks = self._content(row)
        if row.payload.get("link_key"):
            text, blocks = _linked(text, blocks, self._permalink(work.link))
        if row.kind == "respond":
            return self._respond(row, text, blocks)
        params: dict[str, Any] = {"channel": work.channel, "text": text}
        if blocks is not None:
            params["blocks"] = blocks
        if row.kind == "post":
            params["metadata"] = {"event_type": METADATA_EVENT, "event_payload": {"ref": marker(row.key)}}
            if work.thread_ts:
                params["thread_ts"] = work.thread_ts
                if row.payload.get("reply_broadcast"):
                    params["reply_broadcast"] = True
        elif row.kind == "ephemeral":
            params["user"] = row.payload["user"]
            if work.thread_ts:
                params["thread_ts"] = work.thread_ts
        elif row.kind == "update":
            params["ts"] = work.ts
        if row.kind == "post" and isinstance(row.payload.get("file"), Mapping):
            uploaded = self._upload(work, row.payload["file"])
            if uploaded is not None:
                return uploaded
            params.pop("blocks", None)  # Slack takes no file here: the fallback text instead
        method = METHODS[row.kind]
        try:
            response = self._slack.api_call(method, json=params)
        except SlackApiError as exc:
            return self._slack_failure(exc)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return _transport_outcome(exc)
        data: Mapping[str, Any] = response.data if isinstance(response.data, Mapping) else {}
        if row.kind == "ephemeral":
            return _Outcome("sent", slack_channel=work.channel, slack_ts=str(data.get("message_ts") or ""))
        return _Outcome(
            "sent",
            slack_channel=str(data.get("channel") or work.channel),
            slack_ts=str(data.get("ts") or work.ts or ""),
            thread_ts=work.thread_ts if row.kind == "post" else None,
        )

    def _permalink(self, ref: tuple[str, str] | None) -> str | None:
        """The permalink of a sent message (``chat.getPermalink``); None if Slack cannot say."""
        if ref is None:
            return None
        try:
            response = self._slack.api_call(
                "chat.getPermalink", params={"channel": ref[0], "message_ts": ref[1]}
            )
        except (SlackApiError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            logger.info("chat.getPermalink failed (%s); the link is left out", type(exc).__name__)
            return None
        data = response.data if isinstance(response.data, Mapping) else {}
        link = data.get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else None

    def _upload(self, work: _Work, file: Mapping[str, Any]) -> _Outcome | None:
        """Upload a file row (``files.getUploadURLExternal``, the bytes to its URL,
        ``files.completeUploadExternal`` into the thread). None when Slack takes no file here —
        a missing ``files:write`` scope, a workspace or stand-in without files — so the caller
        posts the fallback text instead."""
        data = base64.b64decode(str(file.get("b64", "")))
        name = str(file.get("name") or "file")
        try:
            grant = self._slack.api_call(
                "files.getUploadURLExternal", params={"filename": name, "length": len(data)}
            )
            upload_url, file_id = str(grant.get("upload_url") or ""), str(grant.get("file_id") or "")
            assert self._http is not None
            sent = self._http.post(
                upload_url, content=data, headers={"Content-Type": "application/octet-stream"}
            )
            if sent.status_code >= 500:
                return _server_error(sent.status_code)
            if sent.status_code >= 300:
                return _Outcome("dead", error=f"upload refused: HTTP {sent.status_code}")
            complete: dict[str, Any] = {
                "files": json.dumps([{"id": file_id, "title": str(file.get("title") or name)}]),
                "channel_id": work.channel,
            }
            if work.thread_ts:
                complete["thread_ts"] = work.thread_ts
            self._slack.api_call("files.completeUploadExternal", params=complete)
        except SlackApiError as exc:
            payload = exc.response.data if isinstance(exc.response.data, Mapping) else {}
            if str(payload.get("error") or "") in NO_FILES:
                logger.info(
                    "outbox: Slack takes no file here (%s); posting the text instead", payload.get("error")
                )
                return None
            return self._slack_failure(exc)
        except httpx.HTTPError as exc:
            return _transport_outcome(exc)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return _transport_outcome(exc)
        return _Outcome("sent", slack_channel=work.channel, slack_ts="", thread_ts=work.thread_ts)

    def _find_orphan(self, work: _Work) -> str | None:
        """The ts of a copy of this post that an earlier attempt left in Slack (a crash or a lost
        answer after Slack accepted it), found by its metadata mark; None if there is none or
        Slack cannot be asked (no ``channels:history`` / ``groups:history`` scope, a DM, an
        error): the post is then sent again, labelled as a possible duplicate."""
        row = work.row
        mark = marker(row.key)
        params: dict[str, Any] = {
            "channel": work.channel,
            "oldest": f"{max(0.0, row.age_from - _ORPHAN_MARGIN):.6f}",
            "include_all_metadata": True,
            "limit": 200,
        }
        method = "conversations.history"
        if work.thread_ts:
            method, params["ts"] = "conversations.replies", work.thread_ts
        try:
            for _ in range(_ORPHAN_PAGES):
                data = self._slack.api_call(method, params=params).data
                if not isinstance(data, Mapping):
                    return None
                for message in data.get("messages") or ():
                    meta = message.get("metadata") if isinstance(message, Mapping) else None
                    payload = meta.get("event_payload") if isinstance(meta, Mapping) else None
                    if (
                        isinstance(payload, Mapping)
                        and meta.get("event_type") == METADATA_EVENT  # type: ignore[union-attr]
                        and payload.get("ref") == mark
                        and message.get("ts")
                    ):
                        return str(message["ts"])
                cursor = (data.get("response_metadata") or {}).get("next_cursor")
                if not data.get("has_more") or not cursor:
                    return None
                params["cursor"] = cursor
        except (SlackApiError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            logger.info(
                "outbox %s: could not look for an earlier copy (%s); re-sending it labelled",
                mask_text(row.key),
                type(exc).__name__,
            )
        return None

    def _adopt(self, work: _Work, ts: str) -> _Outcome:
        """Make the copy Slack kept (*ts*) this row's message: updated to the row's content."""
        row = work.row
        text: str = row.payload.get("text") or ""
        blocks: list[dict[str, Any]] | None = row.payload.get("blocks")
        params: dict[str, Any] = {"channel": work.channel, "ts": ts, "text": text or _fallback_text(blocks)}
        if blocks is not None:
            params["blocks"] = blocks
        try:
            response = self._slack.api_call("chat.update", json=params)
        except SlackApiError as exc:
            return self._slack_failure(exc)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return _transport_outcome(exc)
        data: Mapping[str, Any] = response.data if isinstance(response.data, Mapping) else {}
        logger.info("outbox %s: found the copy an earlier attempt posted; updated it", mask_text(row.key))
        return _Outcome(
            "sent",
            slack_channel=str(data.get("channel") or work.channel),
            slack_ts=ts,
            thread_ts=work.thread_ts,
        )

    def _slack_failure(self, exc: SlackApiError) -> _Outcome:
        response = exc.response
        status = int(response.status_code)
        data = response.data if isinstance(response.data, Mapping) else {}
        code = str(data.get("error") or f"HTTP {status}")
        if status == 429 or code == "ratelimited":
            return _Outcome("rate_limited", error="ratelimited", retry_after=_retry_after(response.headers))
        if status >= 500:
            return _server_error(status)
        if code in TRANSIENT_ERRORS:
            return _Outcome("retry", error=code)
        return _Outcome("dead", error=code)

    def _respond(self, row: OutboxRow, text: str, blocks: list[dict[str, Any]] | None) -> _Outcome:
        payload = row.payload
        body: dict[str, Any] = {"text": text, "response_type": payload.get("response_type", "ephemeral")}
        if blocks is not None:
            body["blocks"] = blocks
        if payload.get("replace_original"):
            body["replace_original"] = True
        if payload.get("delete_original"):
            body = {"delete_original": True}
        assert self._http is not None
        url = str(payload["response_url"])
        if not response_url_allowed(url, self._slack_api_url):
            return _Outcome("dead", error="response_url is not a Slack address (hooks.slack.com)")
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            return _transport_outcome(exc)
        status = response.status_code
        code = response.text.strip()[:100]
        with contextlib.suppress(ValueError):
            parsed = response.json()
            if isinstance(parsed, Mapping):
                if parsed.get("ok", True) and status < 300:
                    return _Outcome("sent")
                code = str(parsed.get("error") or code)
        if status == 429:
            return _Outcome("rate_limited", error="ratelimited", retry_after=_retry_after(response.headers))
        if status >= 500:
            return _server_error(status)
        if status < 300 and code.lower() in ("", "ok"):
            return _Outcome("sent")
        if code in TRANSIENT_ERRORS:
            return _Outcome("retry", error=code)
        return _Outcome("dead", error=f"HTTP {status} {code}".strip())

    # -- recording results -------------------------------------------------------------------

    def _backoff(self, failures: int) -> float:
        delay = min(self._backoff_cap, self._backoff_base * 2.0 ** max(0, failures - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def _record(self, work: _Work, outcome: _Outcome) -> None:
        row = work.row
        db = self._pool.get()
        method = METHODS[row.kind]
        if outcome.status == "sent":
            outbox.mark_sent(
                db,
                row.id,
                slack_channel=outcome.slack_channel,
                slack_ts=outcome.slack_ts,
                thread_ts=outcome.thread_ts,
            )
            self._emit("sent", row, method=method)
            return
        age = time.time() - row.age_from
        if outcome.status in ("rate_limited", "retry") and age >= self._max_age:
            # Slack has been failing (or rate-limiting) this row for the whole age limit.
            self._dead(
                row, f"gave up after {format_duration(timedelta(seconds=age))}: {outcome.error}", db=db
            )
            return
        if outcome.status == "rate_limited":
            with self._lock:
                key = self._block_key(row)
                self._blocked[key] = max(self._blocked.get(key, 0.0), self._clock() + outcome.retry_after)
            outbox.mark_retry(
                db,
                row.id,
                error=outcome.error,
                next_attempt_at=time.time() + outcome.retry_after,
                failed=False,
            )
            logger.info(
                "outbox %s: %s rate-limited for %s; retrying in %.1f s",
                mask_text(row.key),
                method,
                mask_text(work.channel or "response_url"),
                outcome.retry_after,
            )
            self._emit("rate_limited", row, method=method, error=outcome.error, retry_in=outcome.retry_after)
            return
        if outcome.status == "dead":
            self._dead(row, outcome.error, db=db, attempts=row.attempts)
            return
        # Never later than the age limit, so a row that keeps failing is given up on in time.
        delay = min(self._backoff(row.failures + 1), max(0.0, self._max_age - age) + 0.001)
        state = outbox.mark_retry(
            db,
            row.id,
            error=outcome.error,
            next_attempt_at=time.time() + delay,
            uncertain=outcome.uncertain,
        )
        logger.info(
            "outbox %s: %s failed (%s), attempt %d; %s",
            mask_text(row.key),
            method,
            mask_text(outcome.error),
            row.attempts,
            "superseded by a newer update" if state == "superseded" else f"retrying in {delay:.2f} s",
        )
        self._emit("retry", row, method=method, error=outcome.error, retry_in=delay)

    def _dead(self, row: OutboxRow, error: str, *, db: Any, attempts: int | None = None) -> None:
        told: str | None = None
        with write(db):
            outbox.mark_dead(db, row.id, error=error)
            try:
                with write(db):  # a savepoint: a failing notice never keeps the row from dying
                    told = requester_notice(db, row, error, now=time.time())
            except Exception:
                logger.exception("outbox %s: could not queue the notice to the requester", mask_text(row.key))
        count = row.attempts if attempts is None else attempts
        logger.warning(
            "outbox %s: %s to %s dead after %d attempt(s): %s",
            mask_text(row.key),
            METHODS[row.kind],
            mask_text(row.channel or "response_url"),
            count,
            mask_text(error),
        )
        if told:
            logger.info("outbox %s: the requester is told through their %s", mask_text(row.key), told)
            self._wake.set()
        self._emit("dead", row, method=METHODS[row.kind], error=error)
        with self._progress:
            self._progress.notify_all()

    def _emit(self, kind: str, row: OutboxRow, **extra: Any) -> None:
        if self._on_event is None:
            return
        info: dict[str, Any] = {
            "key": row.key,
            "kind": row.kind,
            "channel": row.channel,
            "attempts": row.attempts,
            "error": None,
            "retry_in": None,
            "row": row,
            **extra,
        }
        try:
            self._on_event(kind, info)
        except Exception:
            logger.exception("outbox on_event hook failed for %s", kind)


def _linked(
    text: str, blocks: list[dict[str, Any]] | None, permalink: str | None
) -> tuple[str, list[dict[str, Any]] | None]:
    """*text* and *blocks* with :data:`storage.outbox.LINK_SLOT` as a link to *permalink* (plain
    words when there is none)."""

    def fill(value: str) -> str:
        label = "the grouped alert"
        return value.replace(outbox.LINK_SLOT, f"<{permalink}|{label}>" if permalink else label)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return fill(node)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return fill(text), (walk(blocks) if blocks is not None else None)
