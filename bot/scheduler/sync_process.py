"""The directory sync in a process of its own, so its work stays off the serving process's GIL.

A million-line sync is CPU work from end to end — HTTP, JSON, row preparation, SQLite upserts —
and a Python process runs one thread of Python at a time: done in the process that acknowledges
slash commands, it slowed every ack (p99 656 ms during a 1,000,000-line sync against 261 ms after
it). :class:`DirectorySync` runs each sync, the one at start and the scheduled ones, one at a time:

* **in a child process** (the default): ``python -c`` importing this module's :func:`main` from
  the same code as the parent. The child gets its :class:`~bot.core.config.Settings` pickled on
  its standard input (never in its arguments), logs in to ThingSpace as the parent does (its own
  client, the same login gate in the database) and writes the directory through its own
  connection to the same SQLite file (WAL: readers never wait for it).
* **in the calling thread** — when the parent's ThingSpace client has a test transport or the
  database is in memory, which no other process could reach.

What goes between them, pickled, one message at a time:

* parent → child on the child's standard input: the job (settings, complete or not, the
  parent's pid), then one byte each time the child may take its turn to write: ``g`` for a
  short transaction, ``G`` for a long one (the parent's writers are idle). End of file
  means "stop": the parent has asked it to, or has died — either way the child leaves at once.
  It also leaves when its parent's pid changes (it was orphaned).
* child → parent on the child's standard output (anything the child prints goes to its stderr):
  ``("progress", SyncProgress)`` after every page, for ``/metrics``; ``("log", {...})`` for every
  log record, emitted again by the parent under the same logger, so the log reads as before;
  ``("call", operation, seconds, error)`` for every ThingSpace call, for ``/metrics``;
  ``("turn",)`` / ``("end",)`` around each write transaction; ``("done", lines)`` or
  ``("failed", reason, traceback)`` at the end.

**Write turns.** SQLite lets one connection write at a time. Writers in one process queue on a
lock (:func:`storage.db.write`), but a writer in another process meets SQLite's busy handler,
which retries in growing sleeps: a child writing transaction after transaction would starve the
acks' writes (the replay table, audit rows) for seconds. So the child asks for a turn before
each transaction, the parent takes its own writers' lock on the child's behalf, and gives it
back when the child's transaction has ended: the child's writes queue with the parent's exactly
as if they were made in the parent, and each is sized to take about
:data:`bot.core.directory_sync.WRITE_SECONDS`. While the parent's own writers are busy (slash
commands coming in), the next turn waits :data:`YIELD` times as long as the last one held the
database, so the commands keep at least half of it; the child also runs at a lower CPU priority
(:data:`NICE`). With no commands coming in, the sync writes as fast as SQLite takes it, in
longer transactions (:data:`IDLE_WRITE_SECONDS`), which write fewer pages per line.

A child that dies (killed, out of memory, ThingSpace failing) is reported as a failed sync
(:class:`SyncFailed`), and the next scheduled run starts a new one.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bot.core.config import Settings
from bot.core.directory_sync import WRITE_SECONDS, SyncProgress, sync_directory
from bot.core.logs import NOISY_LOGGERS, RedactionFilter, redact, register_secrets
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.models import DevicePage
from storage.db import writers_lock
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool

__all__ = ["DirectorySync", "SyncFailed", "SyncStopped", "log_failure", "main"]

log = logging.getLogger(__name__)

#: how long :meth:`DirectorySync.stop` waits for a child to leave before it kills it
STOP_GRACE = 2.0
#: how often a child checks that its parent is still alive (besides the end of its input)
PARENT_CHECK = 1.0
#: while the bot's own writers are busy, a turn to write starts this many times the last
#: transaction's length after it ended (1.0: the sync takes at most half of the database's time)
YIELD = 1.0
#: how long a write transaction may take while the bot's own writers are idle
IDLE_WRITE_SECONDS = 0.25
#: the sync process's CPU priority below the bot's (``nice``): commands get the CPU first
NICE = 10
#: how long after a turn found the bot's writers busy they count as busy
BUSY_MEMORY = 1.0
#: what the child's ``-c`` runs (the code root is put first on its path: the parent's code)
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from bot.scheduler.sync_process import main; main()"
_ROOT = str(Path(__file__).resolve().parents[2])
#: the bytes that give the child its turn to write: a short one (the bot's writers are busy) or
#: a long one of IDLE_WRITE_SECONDS (they are not: fewer, larger transactions write faster)
_GO = b"g"
_GO_LONG = b"G"
#: a child's exit statuses
EXIT_FAILED = 1
EXIT_STOPPED = 3


class SyncFailed(Exception):
    """The sync did not finish: ThingSpace or the database failed, or its process died.

    ``str()`` is one line; *trace* is the child's traceback, if it raised one."""

    def __init__(self, reason: str, trace: str | None = None) -> None:
        super().__init__(reason)
        self.trace = trace


class SyncStopped(Exception):
    """The sync was stopped before it finished (the bot is stopping)."""


def log_failure(logger: logging.Logger, message: str, failure: SyncFailed) -> None:
    """One ERROR line: *message* and the reason, with the child's traceback (if any) attached as
    the record's exception text, as ``log.exception`` would show it."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s (%s)", (message, failure), None)
    record.exc_text = failure.trace
    logger.handle(record)


@dataclass(frozen=True)
class _Job:
    settings: Settings
    complete: bool
    parent: int


class DirectorySync:
    """Runs directory syncs one at a time, in a child process (*in_child*) or in the calling
    thread; :meth:`stop` ends a running one promptly and refuses new ones.

    *on_progress* gets each :class:`SyncProgress` and *on_call* each ThingSpace call's
    ``(operation, seconds, error)``, in the thread that called :meth:`run`."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: ConnectionPool,
        thingspace: ThingSpaceClient,
        on_progress: Callable[[SyncProgress], None],
        on_call: Callable[[str, float, str | None], None],
        in_child: bool = True,
    ) -> None:
        self.settings = settings
        self.in_child = in_child
        self._pool = pool
        self._thingspace = thingspace
        self._on_progress = on_progress
        self._on_call = on_call
        self._running = threading.Lock()
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._child_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running child's process id (None: no child is running)."""
        with self._child_lock:
            return self._child.pid if self._child is not None else None

    def run(self, *, complete: bool) -> int | None:
        """Run one sync (complete, or the lines added since the last one) and wait for it: the
        number of lines read, or None when another sync was already running (this one is not
        started). Raises :class:`SyncFailed` or :class:`SyncStopped`."""
        if not self._running.acquire(blocking=False):
            log.info("a directory sync is already running; not starting another")
            return None
        try:
            if self._stopping.is_set():
                raise SyncStopped
            return self._run_child(complete) if self.in_child else self._run_here(complete)
        finally:
            self._running.release()

    def stop(self) -> None:
        """Stop the running sync (its child leaves at once, or is killed after
        :data:`STOP_GRACE` s) and start no more."""
        self._stopping.set()
        with self._child_lock:
            child = self._child
        if child is None:
            return
        _close(child.stdin)  # end of input: the child leaves
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    # -- in this thread -------------------------------------------------------------------------
    def _run_here(self, complete: bool) -> int:
        def progress(p: SyncProgress) -> None:
            if self._stopping.is_set():
                raise SyncStopped
            self._on_progress(p)

        try:
            return sync_directory(self._thingspace, self._pool.get(), complete=complete, on_progress=progress)
        except SyncStopped:
            raise
        except Exception as exc:
            raise SyncFailed(_reason(exc), traceback.format_exc()) from exc

    # -- in a child process ---------------------------------------------------------------------
    def _run_child(self, complete: bool) -> int:
        job = _Job(settings=self.settings, complete=complete, parent=os.getpid())
        try:
            child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                [sys.executable, "-c", _BOOT, _ROOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            raise SyncFailed(f"could not start the sync process: {_reason(exc)}") from exc
        with self._child_lock:
            self._child = child
        try:
            if self._stopping.is_set():  # stop() came while it was starting
                _close(child.stdin)
            else:
                _send(child, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            lines, failure = self._follow(child)
        except BaseException:
            child.kill()
            raise
        finally:
            _close(child.stdin)
            code = _reap(child)
            _close(child.stdout)
            with self._child_lock:
                self._child = None
        if lines is not None and code == 0:
            return lines
        if self._stopping.is_set():
            raise SyncStopped
        if failure is not None:
            raise failure
        if code < 0:
            raise SyncFailed(f"the sync process was killed by {signal.Signals(-code).name}")
        raise SyncFailed(f"the sync process ended with exit status {code} before it finished")

    def _follow(self, child: subprocess.Popen[bytes]) -> tuple[int | None, SyncFailed | None]:
        """Read the child's messages until it closes its output; answer its turns."""
        assert child.stdout is not None
        turns = _Turns(_writers_lock(self._pool))
        lines: int | None = None
        failure: SyncFailed | None = None
        try:
            while True:
                try:
                    message = pickle.load(child.stdout)  # noqa: S301 - our own child, on a private pipe
                except (EOFError, OSError, pickle.UnpicklingError):
                    return lines, failure
                kind = message[0]
                if kind == "turn":
                    _send(child, _GO if turns.take() else _GO_LONG)
                elif kind == "end":
                    turns.give_back()
                elif kind == "progress":
                    self._on_progress(message[1])
                elif kind == "call":
                    self._on_call(message[1], message[2], message[3])
                elif kind == "log":
                    _emit(message[1], child.pid)
                elif kind == "done":
                    lines = int(message[1])
                elif kind == "failed":
                    failure = SyncFailed(str(message[1]), str(message[2]) or None)
        finally:
            turns.give_back()
            if turns.held:
                log.info(
                    "directory sync: %d write turns, each holding the database p50 %.0f ms, p99 %.0f ms, "
                    "max %.0f ms; %.0f s waiting for a turn",
                    len(turns.held),
                    *(1000 * _quantile(turns.held, q) for q in (0.5, 0.99, 1.0)),
                    turns.waited,
                )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class _Turns:
    """The child's turns to write, taken under this process's writers' lock. While this process's
    own writers are busy (a turn found the lock taken within the last :data:`BUSY_MEMORY` s), a
    turn starts only :data:`YIELD` times the last transaction's length after it ended: the
    commands' writes come first, and the sync uses what is left."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._held = False
        self._began = 0.0
        self._next = 0.0  # monotonic time before which no turn starts
        self._busy_until = 0.0
        #: how long each turn held the database, and how long turns waited in all (seconds)
        self.held: list[float] = []
        self.waited = 0.0

    def take(self) -> bool:
        """Wait for the next turn and take it; True if this process's writers are busy."""
        asked = time.monotonic()
        wait = self._next - asked
        if wait > 0:
            time.sleep(wait)
        if not self._lock.acquire(blocking=False):
            self._busy_until = time.monotonic() + BUSY_MEMORY
            self._lock.acquire()
        self._held = True
        self._began = time.monotonic()
        self.waited += self._began - asked
        return self._began < self._busy_until

    def give_back(self) -> None:
        if not self._held:
            return
        self._held = False
        self._lock.release()
        now = time.monotonic()
        self.held.append(now - self._began)
        self._next = now + (now - self._began) * YIELD if now < self._busy_until else now


def _writers_lock(pool: ConnectionPool) -> threading.Lock:
    """The lock this process's writers take before ``BEGIN IMMEDIATE`` (see
    :func:`storage.db.write`), or a lock of this sync's own if the connection has none."""
    return writers_lock(pool.get()) or threading.Lock()


def _send(child: subprocess.Popen[bytes], data: bytes) -> None:
    """Write *data* to the child's input; a child that has gone is noticed by the reader."""
    assert child.stdin is not None
    with suppress(OSError, ValueError):
        child.stdin.write(data)
        child.stdin.flush()


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with suppress(OSError):
            stream.close()


def _reap(child: subprocess.Popen[bytes]) -> int:
    """The child's exit status, once it has left (killed if it lingers after closing its output)."""
    try:
        return child.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def _emit(data: dict[str, Any], pid: int) -> None:
    """A log record of the child, handled again here under its own logger."""
    logger = logging.getLogger(str(data["name"]))
    level = int(data["levelno"])
    if not logger.isEnabledFor(level):
        return
    record = logging.makeLogRecord(
        {
            "name": logger.name,
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": str(data["msg"]),
            "args": None,
            "exc_text": data.get("exc_text"),
            "created": float(data["created"]),
            "process": pid,
        }
    )
    logger.handle(record)


def _reason(exc: BaseException) -> str:
    """``ConnectError: …``: an exception in one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- the child --------------------------------------------------------------------------------------


class _Channel:
    """Pickled messages to the parent, whole and in order from any thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


class _Forward(logging.Handler):
    """Every log record to the parent, redacted here already."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self._channel = channel
        self.addFilter(RedactionFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.send(
                "log",
                {
                    "name": record.name,
                    "levelno": record.levelno,
                    "msg": record.getMessage(),
                    "exc_text": record.exc_text,
                    "created": record.created,
                },
            )
        except Exception:  # noqa: BLE001 - a log line must never end the sync
            self.handleError(record)


def _watch_parent(fd: int, parent: int, turns: queue.SimpleQueue[float]) -> None:
    """Hand each turn the parent gives (its time budget) to the writer; leave at once at the end
    of the input (the parent stops us, or has died) or when the parent's pid is no longer ours."""
    while True:
        ready, _, _ = select.select([fd], [], [], PARENT_CHECK)
        if os.getppid() != parent:
            os._exit(EXIT_STOPPED)
        if not ready:
            continue
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            os._exit(EXIT_STOPPED)
        for byte in data:
            if byte == _GO_LONG[0]:
                turns.put(IDLE_WRITE_SECONDS)
            elif byte == _GO[0]:
                turns.put(WRITE_SECONDS)


def _read_ahead(pages: Iterator[DevicePage]) -> Iterator[DevicePage]:
    """*pages*, fetched one page ahead on a thread: ThingSpace prepares the next page (and the
    JSON is parsed) while this one is written."""
    ahead: queue.Queue[DevicePage | BaseException | None] = queue.Queue(maxsize=1)

    def fetch() -> None:
        try:
            for page in pages:
                ahead.put(page)
            ahead.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            ahead.put(exc)

    threading.Thread(target=fetch, name="directory-pages", daemon=True).start()
    while True:
        item = ahead.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _sync(job: _Job, channel: _Channel, turns: queue.SimpleQueue[float]) -> int:
    settings = job.settings
    # one connection per thread: the pages are read (and a login may write the login gate) on
    # the read-ahead thread while this one writes the directory
    pool = ConnectionPool(settings.db_path, synchronous=settings.db_synchronous)
    db = pool.get()

    @contextmanager
    def turn() -> Iterator[float]:
        channel.send("turn")
        budget = turns.get()
        try:
            yield budget
        finally:
            channel.send("end")

    thingspace = ThingSpaceClient(
        **settings.thingspace_login(),
        observer=lambda operation, seconds, error: channel.send("call", operation, seconds, error),
        login_gate=SqliteLoginGate(pool.get, program="the bot's directory sync"),
    )
    try:
        return sync_directory(
            thingspace,
            db,
            complete=job.complete,
            on_progress=lambda p: channel.send("progress", p),
            write_turn=turn,
            read_ahead=_read_ahead,
        )
    finally:
        thingspace.close()
        pool.close()


def main() -> None:
    """The child: read the job, run the sync, report; see the module's docstring."""
    out = os.fdopen(os.dup(1), "wb")  # the channel to the parent ...
    os.dup2(2, 1)  # ... and anything printed goes to stderr instead
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    os.nice(NICE)  # the bot's own threads get the CPU first
    channel = _Channel(out)
    try:
        job: _Job = pickle.load(sys.stdin.buffer)  # noqa: S301 - our parent, on a private pipe
    except (EOFError, OSError, pickle.UnpicklingError):
        os._exit(EXIT_STOPPED)  # the parent stopped (or died) before it sent the job
    register_secrets(job.settings)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_Forward(channel))
    root.setLevel(job.settings.log_level.upper())
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    turns: queue.SimpleQueue[float] = queue.SimpleQueue()
    threading.Thread(
        target=_watch_parent, args=(sys.stdin.fileno(), job.parent, turns), name="parent-watch", daemon=True
    ).start()
    # each message is flushed as it is sent; the output closes as the process ends (closing it
    # first would let the parent close our input, and the watcher leave with EXIT_STOPPED)
    try:
        lines = _sync(job, channel, turns)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which logs it once
        channel.send("failed", redact(_reason(exc)), redact(traceback.format_exc()))
        os._exit(EXIT_FAILED)
    channel.send("done", lines)
    os._exit(0)
