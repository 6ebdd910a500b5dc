"""Logging: one JSON line per event, a request id on every line, nothing secret or personal.

:func:`configure_logging` installs a single handler on the root logger. Every record that reaches
it passes :class:`RedactionFilter` first, which

1. replaces every value given to :func:`register_secret` (tokens, passwords, the signing secret)
   with ``***`` — in the message, in the ``%``-args, in ``extra`` fields and in tracebacks;
2. cuts request bodies: anything after ``body:``/``json_body:``/``body_params:`` in a message is
   dropped, and ``extra`` fields named like a body are replaced by ``<omitted>``;
3. masks MDNs, ICCIDs, IMEIs and IMSIs down to their last four digits (:func:`bot.core.redact.mask_text`);

and the formatter adds ``request_id`` from a :mod:`contextvars` variable. Secrets are replaced
before identifiers are masked, so a numeric password never leaks its last four digits.

Request ids and threads
    ``with request_context():`` binds an id for the current context.
    Context variables do **not** follow work handed to another thread (``threading.Thread``,
    ``ThreadPoolExecutor``, Bolt's listener executor, APScheduler jobs). A worker that picks up a
    job must set the job's request id itself (``with request_context(row["request_id"]):``), or
    the submitter wraps the callable with :func:`carry_request_id`.

Third-party loggers that dump bodies or URLs are turned down to WARNING (``NOISY_LOGGERS``).
``slack_bolt`` copies the root level onto ``slack_bolt.RequestVerification`` whenever an ``App``
is built, so that logger also gets a logger-level filter that drops its INFO body dump whatever
its level says. uvicorn installs its own unfiltered handlers unless it is started with
``log_config=None`` (``ServerThread(app, log_config=None)``): production servers must pass it.

Every ``tsbot`` command starts with :func:`configure_from_env` (the CLI calls it), which does both
of these from the environment.

Usage::

    configure_logging(settings.log_level)        # JSON lines on stderr
    register_secrets(settings)                   # every secret in Settings
    with request_context() as rid:
        log.info("suspend requested", extra={"count": 3})
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import io
import json
import logging
import re
import secrets
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final, ParamSpec, TypeVar
from urllib.parse import quote, quote_plus

from bot.core.config import LOG_LEVELS, ConfigError, Settings
from bot.core.redact import mask_text

__all__ = [
    "NOISY_LOGGERS",
    "JsonFormatter",
    "LogCapture",
    "RedactionFilter",
    "TextFormatter",
    "build_handler",
    "capture_logs",
    "carry_request_id",
    "clear_secrets",
    "configure_from_env",
    "configure_logging",
    "get_request_id",
    "new_request_id",
    "redact",
    "register_secret",
    "register_secrets",
    "request_context",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Loggers that log request bodies, full URLs or message payloads below WARNING.
NOISY_LOGGERS: Final = (
    "slack_bolt.RequestVerification",  # whole request body at INFO on a bad signature
    "slack_sdk",  # json_body / body_params at DEBUG
    "httpx",  # every full URL at INFO
    "httpcore",  # connection and header traces at DEBUG
    "uvicorn.access",  # one line per request, with the query string
    "websockets",  # Socket Mode frames (message payloads) at DEBUG
)

REDACTED: Final = "***"
OMITTED: Final = "<omitted>"
#: Shorter values are not registered: replacing them everywhere would shred every line.
MIN_SECRET_LENGTH: Final = 4
#: How many rotating secrets (session tokens) are remembered; older ones have expired anyway.
ROTATING_SECRETS_KEPT: Final = 64

_BODY_KEYS = ("body", "raw_body", "json_body", "body_params", "request_body", "response_body")
_BODY_IN_TEXT = re.compile(r"\b(" + "|".join(_BODY_KEYS) + r")\s*[:=].*", re.IGNORECASE | re.DOTALL)
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MARK = "_tsbot_redacted"
#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
    "request_id",
    _MARK,
}

# -- request ids ----------------------------------------------------------------------------------

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tsbot_request_id", default=None)


def new_request_id() -> str:
    """A fresh id such as ``r3f9a0c1d2e4b5a67``.

    The leading ``r`` keeps the hex part from looking like a device identifier to the masker.
    """
    return "r" + secrets.token_hex(8)


def get_request_id() -> str | None:
    """The request id bound in the current context, if any."""
    return _request_id.get()


@contextlib.contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    """Bind *request_id* (or a new one) for the block; yields the id in use."""
    rid = request_id or new_request_id()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


def carry_request_id(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap *fn* so that, run on any thread, it logs under the request id bound right now."""
    captured = _request_id.get()

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _request_id.set(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            _request_id.reset(token)

    return wrapper


# -- secrets --------------------------------------------------------------------------------------

_secrets_lock = threading.Lock()
_static_secrets: set[str] = set()
_rotating_secrets: deque[str] = deque(maxlen=ROTATING_SECRETS_KEPT)
_secret_pattern: re.Pattern[str] | None = None


def _variants(value: str) -> set[str]:
    """The value as typed, URL-encoded and JSON-escaped: the forms it can take in a log line."""
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _rebuild() -> None:
    global _secret_pattern
    values = sorted(_static_secrets | set(_rotating_secrets), key=len, reverse=True)
    _secret_pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None


def register_secret(value: str | None, *, rotating: bool = False) -> None:
    """Never log *value*: it is replaced by ``***`` wherever it appears.

    Blank values and values shorter than ``MIN_SECRET_LENGTH`` are ignored (``tsbot check``
    should refuse such a secret). Pass ``rotating=True`` for short-lived tokens (ThingSpace
    session and OAuth tokens): only the newest ``ROTATING_SECRETS_KEPT`` of those are kept.
    """
    value = (value or "").strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        forms = _variants(value)
        if rotating:
            for form in forms:
                if form not in _rotating_secrets:
                    _rotating_secrets.append(form)
        else:
            _static_secrets.update(forms)
        _rebuild()


def register_secrets(settings: Settings) -> None:
    """Register every secret held in *settings*, and the HTTP Basic headers built from them."""
    for value in (
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.thingspace_client_secret,
        settings.thingspace_password,
        settings.callback_password,
        settings.callback_password_previous,
    ):
        register_secret(value)
    for user, password in (
        (settings.thingspace_client_id, settings.thingspace_client_secret),
        (settings.callback_username, settings.callback_password),
    ):
        if password:
            register_secret(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    with _secrets_lock:
        _static_secrets.clear()
        _rotating_secrets.clear()
        _rebuild()


# -- redaction ------------------------------------------------------------------------------------


def redact(text: str) -> str:
    """Secrets → ``***``, bodies cut, device identifiers masked to their last four digits."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _BODY_IN_TEXT.sub(lambda m: f"{m.group(1)}: {OMITTED}", text)
    return mask_text(text)


def _scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of an ``extra`` value with every string redacted."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        masked = redact(str(value))
        return value if masked == str(value) else masked
    if isinstance(value, str):
        return redact(value)
    if depth >= 4:
        return redact(repr(value))
    if isinstance(value, Mapping):
        return {
            redact(str(k)): (OMITTED if str(k).lower() in _BODY_KEYS else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return redact(str(value))


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a bad %-format or __str__ must not hide the event
        return f"{record.msg!s} {record.args!r}"


class RedactionFilter(logging.Filter):
    """Rewrite a record in place so that no handler can see a secret, a body or a full id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MARK, False):
            return True
        record.msg = redact(_message_of(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in [k for k in record.__dict__ if k not in _STANDARD_ATTRS]:
            value = record.__dict__.pop(key)
            record.__dict__[redact(key)] = OMITTED if key.lower() in _BODY_KEYS else _scrub(value)
        given = getattr(record, "request_id", None)
        bound = _request_id.get() if given is None else redact(str(given))
        # outside any request (start-up, a background loop between items) the thread names the work
        record.__dict__["request_id"] = bound or f"-{record.threadName}"
        setattr(record, _MARK, True)
        return True


class _BelowWarning(logging.Filter):
    """Drop records under WARNING whatever the logger's level (which slack_bolt resets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


# -- formatters -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", **extra, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in _extras(record).items():
            line[key if key not in line else f"{key}_"] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 INFO    bot.outbox.relay [r3f9…] message key=value`` for people (``tsbot demo``)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        rid = getattr(record, "request_id", None) or "-"
        # one event, one line: user text cannot forge a second entry (CWE-117)
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{when} {record.levelname:<7} {record.name} [{rid}] {message}"
        if extras:
            text += f" {extras}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        return text


# -- set-up ---------------------------------------------------------------------------------------

_installed: logging.Handler | None = None


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    return logging.getLevelNamesMapping()[name]


def _quiet_noisy_loggers() -> None:
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not any(isinstance(f, _BelowWarning) for f in logger.filters):
            logger.addFilter(_BelowWarning())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (like ``logging.lastResort``),
    so a command run in-process by a test that swaps stderr never writes to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def build_handler(*, json: bool = True, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (default: the current stderr) with the redaction filter and the JSON (or
    text) formatter."""
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    return handler


def configure_logging(
    level: str | int = "INFO", *, json: bool = True, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record to *stream* (default stderr) as redacted JSON lines (or text).

    Calling it again replaces the handler it installed before; other handlers are left alone.
    Raises ``ValueError`` for an unknown level name. Returns the handler (tests remove it).
    """
    global _installed
    number = _level_number(level)
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    _installed = build_handler(json=json, stream=stream)
    root.addHandler(_installed)
    root.setLevel(number)
    _quiet_noisy_loggers()
    return _installed


def configure_from_env(environ: Mapping[str, str]) -> logging.Handler:
    """What every ``tsbot`` command does before its own work: redacted JSON lines on stderr at
    ``TSBOT_LOG_LEVEL``, with every secret of the environment registered.

    The same set-up as ``tsbot serve``, so a warning from ``check``, ``callbacks`` or ``audit``
    reads like any other line and never shows a secret. When the configuration cannot be read (the
    command reports that itself), the environment's secrets are still registered and the level
    falls back to INFO if ``TSBOT_LOG_LEVEL`` is what is wrong.
    """
    try:
        settings = Settings.from_env(environ)
    except ConfigError:
        settings = Settings.secrets_from_env(environ)
    level = settings.log_level if settings.log_level.strip().upper() in LOG_LEVELS else "INFO"
    handler = configure_logging(level)
    register_secrets(settings)
    return handler


# -- tests and tooling ----------------------------------------------------------------------------


class LogCapture:
    """What :func:`capture_logs` collected: the raw text and the parsed JSON lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every captured line, parsed (a line that is not JSON raises ``ValueError``)."""
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def capture_logs(level: str | int = "DEBUG") -> Iterator[LogCapture]:
    """Capture, through the production filter and formatter, everything logged in the block.

    Sets the root level for the block and restores it after. Not meant for concurrent use from
    several tests at once (logging configuration is process-wide).
    """
    capture = LogCapture()
    handler = build_handler(json=True, stream=capture.stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(_level_number(level))
    _quiet_noisy_loggers()
    try:
        yield capture
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
