"""Prometheus metrics for ``GET /metrics``: one registry per app, bounded labels.

``Metrics()`` owns its own :class:`~prometheus_client.CollectorRegistry` (never the global
default), so tests and ``tsbot demo`` can build several apps in one process. Every instrument is
named ``tsbot_<name>``:

==================================  =========  ===========================================
name                                type       labels
==================================  =========  ===========================================
``commands_total``                  counter    ``verb``, ``outcome``
``ack_seconds``                     histogram  —  (time from request in to Slack ack)
``callbacks_total``                 counter    ``result``: accepted|duplicate|rejected|too_large|malformed|
                                               unrecognised
``callbacks_unrecognised_total``    counter    ``service`` (a guess; authentic callbacks kept unread)
``inbox_depth``                     gauge      —  (callbacks stored, not yet processed)
``outbox_depth``                    gauge      —  (Slack messages waiting to be sent)
``slack_rate_limited_total``        counter    ``method``  (HTTP 429 from the Web API)
``slack_dead_letters_total``        counter    —  (outbox rows given up on)
``slack_calls_total``               counter    ``method``, ``result``
``thingspace_call_seconds``         histogram  ``operation``
``thingspace_errors_total``         counter    ``operation``, ``error``
``scheduler_job_runs_total``        counter    ``job``
``scheduler_job_misses_total``      counter    ``job``
``alerts_firing``                   gauge      —
==================================  =========  ===========================================

Label values stay bounded: a verb outside :data:`KNOWN_VERBS` is counted as ``unknown``; a callback
result outside :data:`CALLBACK_RESULTS` is a programming error (``ValueError``); any other label
value must look like a name (``^[A-Za-z][A-Za-z0-9_.:-]{0,63}$``, no run of five digits, so no
device id, phone number or Slack id gets in) and each label keeps at most
:data:`MAX_VALUES_PER_LABEL` distinct values; anything else is counted as ``other``.

Gauges are read at scrape time from a function (``inbox_depth_from(fn)``); a function that
raises reports ``NaN`` instead of breaking the scrape.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "CALLBACK_RESULTS",
    "KNOWN_VERBS",
    "MAX_VALUES_PER_LABEL",
    "NAMESPACE",
    "Metrics",
]

log = logging.getLogger(__name__)

NAMESPACE: Final = "tsbot"
#: The slash-command verbs (the README's "Slash commands"); ``Metrics(verbs=...)`` adds more.
KNOWN_VERBS: Final = frozenset(
    {
        "help",
        "status",
        "diag",
        "find",
        "reach",
        "suspend",
        "resume",
        "sms",
        "cancel-location",
        "watch",
        "unwatch",
        "watches",
        "request",
        "history",
    }
)
CALLBACK_RESULTS: Final = ("accepted", "duplicate", "rejected", "too_large", "malformed", "unrecognised")
MAX_VALUES_PER_LABEL: Final = 50
UNKNOWN: Final = "unknown"
OTHER: Final = "other"

_NAME_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
_DIGIT_RUN = re.compile(r"\d{5}")
#: Slack's ack deadline is 3 s: the buckets are dense below it.
ACK_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
THINGSPACE_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _LabelGuard:
    """Keeps one label's values few and free of identifiers."""

    def __init__(self, limit: int = MAX_VALUES_PER_LABEL) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        value = str(value)
        if not _NAME_LIKE.fullmatch(value) or _DIGIT_RUN.search(value):
            return OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
            return value


def _safe(fn: Callable[[], float]) -> Callable[[], float]:
    def read() -> float:
        try:
            return float(fn())
        except Exception:  # a failing probe must not break the whole scrape
            log.warning("metrics gauge probe %s failed", getattr(fn, "__name__", "?"), exc_info=True)
            return math.nan

    return read


class Metrics:
    """The app's instruments and the registry they live in."""

    def __init__(self, *, verbs: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._verbs = KNOWN_VERBS | frozenset(verbs)
        self._guards: dict[str, _LabelGuard] = {}
        r = self.registry
        ns = NAMESPACE
        self.commands = Counter(
            "commands", "Slash commands by verb and outcome.", ["verb", "outcome"], namespace=ns, registry=r
        )
        self.ack_seconds = Histogram(
            "ack_seconds",
            "Seconds from request received to Slack ack.",
            namespace=ns,
            registry=r,
            buckets=ACK_BUCKETS,
        )
        self.callbacks = Counter(
            "callbacks", "ThingSpace callbacks received, by result.", ["result"], namespace=ns, registry=r
        )
        self.callbacks_unrecognised = Counter(
            "callbacks_unrecognised",
            "Authentic ThingSpace callbacks the bot could not read (kept for `tsbot callbacks unknown`), "
            "by the service they seem to come from.",
            ["service"],
            namespace=ns,
            registry=r,
        )
        self.inbox_depth = Gauge(
            "inbox_depth", "Callbacks stored and not yet processed.", namespace=ns, registry=r
        )
        self.outbox_depth = Gauge(
            "outbox_depth", "Slack messages waiting to be sent.", namespace=ns, registry=r
        )
        self.slack_rate_limited = Counter(
            "slack_rate_limited",
            "Slack Web API 429 answers, by method.",
            ["method"],
            namespace=ns,
            registry=r,
        )
        self.slack_dead_letters = Counter(
            "slack_dead_letters", "Outbox messages given up on.", namespace=ns, registry=r
        )
        self.slack_calls = Counter(
            "slack_calls",
            "Slack Web API calls by method and result.",
            ["method", "result"],
            namespace=ns,
            registry=r,
        )
        self.thingspace_call_seconds = Histogram(
            "thingspace_call_seconds",
            "ThingSpace API call latency by operation.",
            ["operation"],
            namespace=ns,
            registry=r,
            buckets=THINGSPACE_BUCKETS,
        )
        self.thingspace_errors = Counter(
            "thingspace_errors",
            "ThingSpace API errors by operation and error kind.",
            ["operation", "error"],
            namespace=ns,
            registry=r,
        )
        self.scheduler_job_runs = Counter(
            "scheduler_job_runs", "Scheduler job runs, by job.", ["job"], namespace=ns, registry=r
        )
        self.scheduler_job_misses = Counter(
            "scheduler_job_misses",
            "Scheduler runs missed (past their grace time), by job.",
            ["job"],
            namespace=ns,
            registry=r,
        )
        self.alerts_firing = Gauge(
            "alerts_firing", "Watch alerts currently firing.", namespace=ns, registry=r
        )
        self.directory_lines = Gauge(
            "directory_lines", "Lines in the device directory.", namespace=ns, registry=r
        )
        self.directory_sync_running = Gauge(
            "directory_sync_running",
            "1 while a directory sync is reading ThingSpace.",
            namespace=ns,
            registry=r,
        )
        self.directory_sync_lines = Gauge(
            "directory_sync_lines",
            "Lines read by the running directory sync, or by the last one once it has finished.",
            namespace=ns,
            registry=r,
        )
        self.directory_sync_seconds = Gauge(
            "directory_sync_seconds",
            "Seconds the running directory sync has taken so far, or the last one took.",
            namespace=ns,
            registry=r,
        )
        self.directory_synced = Gauge(
            "directory_synced_timestamp_seconds",
            "When the last directory sync finished (Unix time), by kind (complete, incremental).",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        for result in CALLBACK_RESULTS:  # a dashboard sees zeros, not gaps
            self.callbacks.labels(result)

    def _label(self, name: str, value: str) -> str:
        guard = self._guards.get(name)
        if guard is None:
            guard = self._guards.setdefault(name, _LabelGuard())
        return guard(value)

    # -- recording --------------------------------------------------------------------------

    def count_command(self, verb: str, outcome: str) -> None:
        """One slash command finished its ack path with *outcome* (``ok``, ``denied``, ``invalid``…)."""
        verb = verb if verb in self._verbs else UNKNOWN
        self.commands.labels(verb, self._label("outcome", outcome)).inc()

    def observe_ack(self, seconds: float) -> None:
        self.ack_seconds.observe(seconds)

    def count_unrecognised_callback(self, service: str) -> None:
        """One new authentic callback kept unread; *service* is the guess (bounded label)."""
        self.callbacks_unrecognised.labels(self._label("service", service)).inc()

    def count_callback(self, result: str) -> None:
        if result not in CALLBACK_RESULTS:
            raise ValueError(f"callback result {result!r} is not one of {', '.join(CALLBACK_RESULTS)}")
        self.callbacks.labels(result).inc()

    def inbox_depth_from(self, probe: Callable[[], float]) -> None:
        """Read the inbox depth from *probe* at every scrape."""
        self.inbox_depth.set_function(_safe(probe))

    def outbox_depth_from(self, probe: Callable[[], float]) -> None:
        """Read the outbox depth from *probe* at every scrape."""
        self.outbox_depth.set_function(_safe(probe))

    def count_slack_call(self, method: str, result: str) -> None:
        """A Web API call ended: *result* is ``ok`` or Slack's error code (``channel_not_found``)."""
        self.slack_calls.labels(self._label("method", method), self._label("slack_result", result)).inc()

    def count_slack_rate_limited(self, method: str) -> None:
        self.slack_rate_limited.labels(self._label("method", method)).inc()

    def count_dead_letter(self) -> None:
        self.slack_dead_letters.inc()

    def observe_thingspace_call(self, operation: str, seconds: float) -> None:
        self.thingspace_call_seconds.labels(self._label("operation", operation)).observe(seconds)

    def count_thingspace_error(self, operation: str, error: str) -> None:
        """*error* is a kind, e.g. the exception class name or ``http_503``, never a message."""
        self.thingspace_errors.labels(self._label("operation", operation), self._label("error", error)).inc()

    def count_job_run(self, job: str) -> None:
        self.scheduler_job_runs.labels(self._label("job", job)).inc()

    def count_job_miss(self, job: str) -> None:
        self.scheduler_job_misses.labels(self._label("job", job)).inc()

    def directory_lines_from(self, probe: Callable[[], float]) -> None:
        """Read the directory's size from *probe* at every scrape."""
        self.directory_lines.set_function(_safe(probe))

    def observe_directory_sync(self, lines: int, seconds: float, *, done: bool, complete: bool) -> None:
        """A directory sync has read *lines* in *seconds* so far, or has finished (*done*)."""
        self.directory_sync_running.set(0 if done else 1)
        self.directory_sync_lines.set(lines)
        self.directory_sync_seconds.set(seconds)
        if done:
            self.directory_synced.labels("complete" if complete else "incremental").set_to_current_time()

    def alerts_firing_from(self, probe: Callable[[], float]) -> None:
        """Read the number of firing alerts from *probe* at every scrape."""
        self.alerts_firing.set_function(_safe(probe))

    # -- reading ----------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, **labels: str) -> float:
        """The current value of one sample, e.g. ``value("commands_total", verb="diag", outcome="ok")``.

        *name* is without the ``tsbot_`` prefix; a sample never recorded reads as 0.
        """
        found = self.registry.get_sample_value(f"{NAMESPACE}_{name}", labels)
        return 0.0 if found is None else found

    def endpoint(self, request: Request) -> Response:
        """A Starlette endpoint serving :meth:`render` (``Route("/metrics", metrics.endpoint)``)."""
        body, content_type = self.render()
        return Response(body, headers={"Content-Type": content_type})
