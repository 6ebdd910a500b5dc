"""``/ts diag``: run the checks of a line in parallel and answer with a graded verdict card.

:func:`run_diag` is called by the lookup job on the worker (see :mod:`commands.lookup`). It asks
ThingSpace seven things at once, on a bounded thread pool, each under its own timeout:

========================  ==========================================================
check                     ThingSpace call
========================  ==========================================================
line details              ``get_device``: state, plan, billing cycle, ``connected``,
                          ``lastConnectionDate``, ``ipAddress``
extended diagnostics      ``Connected``, state, auto-resume date, identifiers
provisioning history      actions today, suspended days (in a row, last 12 months)
connection history        data sessions (Start/Stop) over the last :data:`SESSION_WINDOW`: open
                          or not, last activity, starts in the last hour, reconnect loops
usage history             daily usage over the last :data:`USAGE_WINDOW`
IMEI–ICCID check          the mismatch report for this line
account info              the account's plan list: the allowance of the line's plan
========================  ==========================================================

and reads locally the requests the bot is still waiting on for the line, the provisioning
actions the bot sent today, the directory's last known IMEI and the IMEI changes it recorded
(over :data:`IMEI_CHANGE_WINDOW`), and the line's watch (its wake cycle) and latest reachability
report, if it is watched. A check that fails (a ThingSpace error, its timeout) is named on the
card; :func:`commands.verdict.judge` gives the best verdict the other checks support.

Extended diagnostics and the mismatch report take only some kinds of identifier
(:data:`ACCEPTED_KINDS`). A target named by another kind (an EID, IMSI, MIN or ESN, say) that the
directory does not know is first looked up (``get_device``, which takes any kind), and the checks
then run with the line's ICCID; that lookup is also the line-details check, so it is not repeated.

Only what the real API carries is required (:func:`network_facts`): the line is *attached* when
ThingSpace reports it ``connected`` (device list or extended diagnostics) or a data session is
open; a *data session* is open when the connection history's newest event is a Start; the *last
connection* is the newest of ``lastConnectionDate`` and the history's last event. The proposed
diagnostics keys of :mod:`bot.thingspace.shapes` (``Attached``, ``LastConnectionDate``, ``Apn``,
``RatType``, ``SessionCount1h``, ...) are read only when present, as extras.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlite_utils import Database

from bot.core.redact import mask_id
from bot.render import blocks, times
from bot.thingspace import shapes
from bot.thingspace.errors import DeviceNotFound, ThingSpaceError
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import (
    Account,
    ConnectionEvent,
    Device,
    Diagnostics,
    ImeiIccidMismatch,
    UsageRecord,
    parse_datetime,
)
from commands import audit
from commands.context import Deps
from commands.guards import HISTORY_SPAN, LineLimits, limits_from_history
from commands.policy import may_run, user_role
from commands.verdict import ACCOUNT_CHECK, Evidence, Facts, Mismatch, PendingRequest, Verdict, judge
from storage import directory, requests, watches
from storage.directory import DirectoryDevice

__all__ = [
    "ACCEPTED_KINDS",
    "CHECKS",
    "CHECK_TIMEOUT",
    "IMEI_CHANGE_WINDOW",
    "MAX_PARALLEL",
    "CheckResult",
    "Diagnosis",
    "NetworkFacts",
    "card",
    "diagnose",
    "gather",
    "network_facts",
    "run_checks",
    "run_diag",
]

log = logging.getLogger(__name__)

#: Seconds each ThingSpace check may take before the card says it could not run.
CHECK_TIMEOUT: Final = 10.0
#: Threads one diagnosis may use at most (one per ThingSpace check: they all run at once).
MAX_PARALLEL: Final = 7
SESSION_WINDOW: Final = timedelta(days=7)
#: Enough for the 14-day sparkline and a whole billing cycle.
USAGE_WINDOW: Final = timedelta(days=32)
#: IMEI changes the directory recorded are shown for this long (settings ``diag_imei_change_window``).
IMEI_CHANGE_WINDOW: Final = timedelta(days=30)
#: The verbs whose requests count as "pending" for a line.
PENDING_VERBS: Final = ("suspend", "resume", "cancel-location", "sms")

#: check name -> what the card calls it
CHECKS: Final[dict[str, str]] = {
    "line": "line details",
    "diagnostics": "extended diagnostics",
    "history": "provisioning history",
    "sessions": "connection history",
    "usage": "usage history",
    "hardware": "IMEI–ICCID check",
    "account": ACCOUNT_CHECK,
}
#: check name -> the identifier kinds ThingSpace accepts for it (the other checks take any kind):
#: extended diagnostics per Verizon's "Get Device Extended Diagnostic Information"; the mismatch
#: report names lines by ICCID or MDN.
ACCEPTED_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "diagnostics": ("iccid", "imei", "mdn", "meid", "msisdn"),
    "hardware": ("iccid", "mdn"),
}


_ICONS: Final = {
    "healthy": ":large_green_circle:",
    "degraded": ":large_yellow_circle:",
    "down": ":red_circle:",
    "unknown": ":white_circle:",
}
_LEVEL_ICONS: Final = {
    "ok": ":white_check_mark:",
    "info": ":information_source:",
    "warn": ":warning:",
    "bad": ":x:",
    "unknown": ":grey_question:",
}


@dataclass(frozen=True)
class CheckResult:
    """The value of one check, or why it could not run."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    exception: ThingSpaceError | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = fn()
    return value, time.monotonic() - started


def run_checks(
    checks: Mapping[str, Callable[[], Any]],
    *,
    timeout: float | Mapping[str, float] = CHECK_TIMEOUT,
    max_parallel: int = MAX_PARALLEL,
) -> dict[str, CheckResult]:
    """Run the checks on a bounded pool; each gets ``timeout`` seconds (one value or per name).

    A check that raises a :class:`ThingSpaceError` or outlives its timeout comes back with an
    ``error`` (a short sentence for the card); a check still running is abandoned, never waited
    for (the ThingSpace client's own deadline ends it).
    """
    if not checks:
        return {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(checks))), thread_name_prefix="diag")
    started = time.monotonic()
    results: dict[str, CheckResult] = {}
    try:
        futures: dict[str, Future[tuple[Any, float]]] = {
            # each check in a copy of this context: the ThingSpace calls stay audited for the requester
            name: pool.submit(contextvars.copy_context().run, _timed, fn)
            for name, fn in checks.items()
        }
        for name, future in futures.items():
            limit = timeout if isinstance(timeout, int | float) else timeout.get(name, CHECK_TIMEOUT)
            remaining = max(0.0, started + limit - time.monotonic())
            try:
                value, seconds = future.result(timeout=remaining)
            except TimeoutError:
                future.cancel()
                results[name] = CheckResult(error=f"no answer within {limit:g} s", seconds=limit)
            except ThingSpaceError as exc:
                results[name] = CheckResult(
                    error=exc.user_message, seconds=time.monotonic() - started, exception=exc
                )
            except Exception:  # a bug in a check must not lose the whole card
                log.exception("diag check %s failed unexpectedly", name)
                results[name] = CheckResult(error="failed unexpectedly (see the bot's log)")
            else:
                results[name] = CheckResult(value=value, seconds=seconds)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


# -- the ThingSpace checks and the local reads ------------------------------------------------------


def thingspace_checks(deps: Deps, device_id: DeviceId, now: datetime) -> dict[str, Callable[[], Any]]:
    """The seven ThingSpace calls of a diagnosis, ready for :func:`run_checks`."""
    client = deps.thingspace
    return {
        "line": lambda: client.get_device(device_id),
        "diagnostics": lambda: client.extended_diagnostics(device_id),
        "history": lambda: limits_from_history(
            list(client.provisioning_history(device_id, now - HISTORY_SPAN, now)), now
        ),
        "sessions": lambda: list(client.connection_history(device_id, now - SESSION_WINDOW, now)),
        "usage": lambda: list(client.usage_history(device_id, now - USAGE_WINDOW, now)),
        "hardware": lambda: client.imei_iccid_mismatches(devices=[device_id]),
        "account": client.account_info,
    }


def accepted_everywhere(device_id: DeviceId) -> bool:
    """Whether every check takes this kind of identifier as it is."""
    return all(device_id.kind in kinds for kinds in ACCEPTED_KINDS.values())


def _check_id(device: Device) -> DeviceId:
    """The line's identifier that every check accepts (ICCID, else MDN), else its best one."""
    for kind in ("iccid", "mdn"):
        if device.ids.get(kind):
            return DeviceId.from_wire({"kind": kind, "id": device.ids[kind]})
    return device.device_id


def pending_requests(db: Database, key: str) -> list[PendingRequest]:
    """Requests the bot sent for this line that still wait for ThingSpace's result."""
    rows = requests.pending_for_device(db, key, PENDING_VERBS)
    return [PendingRequest(r[0], r[1], r[2], datetime.fromtimestamp(r[3], UTC)) for r in rows]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _cycle_start(device: Device | None, now: datetime) -> datetime:
    """Start of the current billing cycle: a month before its end, or the calendar month."""
    end = device.billing_cycle_end if device else None
    if end is None:
        return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(24):  # a stale end date moves forward a month at a time
        if end > now:
            break
        end = _add_months(end, 1)
    return _add_months(end, -1)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month])
    return moment.replace(year=year, month=month + 1, day=day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _mismatches(
    found: list[ImeiIccidMismatch] | None,
    ids: Mapping[str, str],
    entry: DirectoryDevice | None,
    changes: Sequence[directory.ImeiChange],
    now: datetime | None = None,
) -> list[Mismatch] | None:
    """What the hardware check found, most authoritative first; ``None`` when nothing is known.

    ThingSpace's mismatch report comes first. Without it, the bot's own directory: the IMEI
    ThingSpace reports now against the one the directory last synced (a change since that sync),
    then the changes the directory recorded at earlier syncs (``changes``, newest first).
    """
    out: list[Mismatch] = []
    for m in found or ():
        mine = not ids or (m.iccid and m.iccid == ids.get("iccid")) or (m.mdn and m.mdn == ids.get("mdn"))
        if mine:
            out.append(
                Mismatch(before=m.pre_imei, after=m.post_imei, when=m.sim_ota_date or m.activation_date)
            )
    if out:
        return out
    unreported = "; not in ThingSpace's mismatch report" if found is not None else ""
    known_imei = entry.ids.get("imei") if entry else None
    imei_now = ids.get("imei")
    if known_imei and imei_now and known_imei != imei_now:
        synced = entry.synced_at if entry else None
        since = f" of {times.at(synced, UTC, now=now)}" if synced else ""
        source = f"since the bot's directory sync{since}{unreported}"
        out.append(Mismatch(before=known_imei, after=imei_now, source=source))
    for change in changes:
        out.append(
            Mismatch(
                before=change.previous,
                after=change.imei,
                when=datetime.fromtimestamp(change.changed_at, UTC),
                source=f"recorded by the bot's directory sync{unreported}",
            )
        )
    if not out and found is None:
        return None
    return out


@dataclass(frozen=True)
class NetworkFacts:
    """What the line's network state reads as, from the real fields (and proposed extras)."""

    attached: bool | None
    attached_from: str
    connected: bool | None
    last_connection: datetime | None
    ip_address: str
    apn: str
    rat: str
    sessions_last_hour: int | None


def _newest(events: Sequence[ConnectionEvent]) -> ConnectionEvent | None:
    timed = [e for e in events if e.occurred_at is not None]
    return max(timed, key=lambda e: e.occurred_at or datetime.min.replace(tzinfo=UTC)) if timed else None


def network_facts(
    device: Device | None, diag: Diagnostics | None, events: Sequence[ConnectionEvent] | None
) -> NetworkFacts:
    """Attached, connected, last connection, IP (and the proposed extras) from what came back.

    ``connected`` is ThingSpace's flag (extended diagnostics ``Connected``, else the device list's
    ``connected``). Either meaning it may have (registered, or in a data session) needs the device
    attached, so ``True`` reads as attached; ``False`` says nothing about the attach state. A data
    session open in the connection history also means attached. ``Attached`` = false comes only
    from the proposed key, when present.
    """
    connected = diag.connected if diag is not None and diag.connected is not None else None
    if connected is None and device is not None:
        connected = device.connected
    newest = _newest(events) if events else None
    proposed = diag.flag(shapes.DIAG_KEY_ATTACHED) if diag is not None else None
    attached: bool | None = None
    attached_from = ""
    if proposed is not None:
        attached, attached_from = proposed, "extended diagnostics"
    elif connected is True:
        attached, attached_from = True, "ThingSpace reports it connected"
    elif newest is not None and newest.is_start:
        attached, attached_from = True, "a data session is open"
    seen = [
        m
        for m in (
            device.last_connection if device is not None else None,
            newest.occurred_at if newest is not None else None,
            diag.moment(shapes.DIAG_KEY_LAST_CONNECTION) if diag is not None else None,
        )
        if m is not None
    ]
    ip = device.ip_address if device is not None else ""
    if not ip and events:
        ip = next((e.ip_address for e in reversed(events) if e.ip_address), "")
    if not ip and diag is not None:
        ip = diag.get(shapes.DIAG_KEY_IP_ADDRESS) or ""
    shown = blocks.escape  # what ThingSpace sent reaches the card's mrkdwn only through escape
    return NetworkFacts(
        attached=attached,
        attached_from=attached_from,
        connected=connected,
        last_connection=max(seen) if seen else None,
        ip_address=shown(ip),
        apn=shown(diag.get(shapes.DIAG_KEY_APN) or "") if diag is not None else "",
        rat=shown(diag.get(shapes.DIAG_KEY_RAT) or "") if diag is not None else "",
        sessions_last_hour=_int(diag.get(shapes.DIAG_KEY_SESSIONS_1H)) if diag is not None else None,
    )


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` gathered: the facts, the seconds the checks took, the line's title."""

    facts: Facts
    seconds: float
    title: str
    key: str


def gather(
    deps: Deps,
    device_id: DeviceId,
    key: str,
    *,
    now: datetime | None = None,
    timeout: float | Mapping[str, float] = CHECK_TIMEOUT,
    imei_window: timedelta | None = None,
) -> tuple[Facts, float]:
    """Run every check and turn what came back into :class:`Facts` (and the seconds it took).

    Raises :class:`DeviceNotFound` when ThingSpace does not know the line at all.
    """
    found = diagnose(deps, device_id, key, now=now, timeout=timeout, imei_window=imei_window)
    return found.facts, found.seconds


def _lookup(db: Database, key: str) -> DirectoryDevice | None:
    kind, sep, value = key.partition(":")
    return directory.lookup(db, kind, value) if sep else None


def _title(entry: DirectoryDevice | None, device: Device | None, device_id: DeviceId) -> str:
    if entry is not None:
        return entry.display
    short = f"{device_id.kind} {mask_id(device_id.id)}"
    label = device.label if device is not None else ""
    return f"{label} ({short})" if label else short


def diagnose(
    deps: Deps,
    device_id: DeviceId,
    key: str,
    *,
    now: datetime | None = None,
    timeout: float | Mapping[str, float] = CHECK_TIMEOUT,
    imei_window: timedelta | None = None,
) -> Diagnosis:
    """:func:`gather`, also returning the card's title and the line's key (after any lookup)."""
    now = now or datetime.fromtimestamp(deps.clock(), UTC)
    window = imei_window
    if window is None:  # settings.diag_imei_change_window, once the configuration has it
        window = getattr(deps.settings, "diag_imei_change_window", None) or IMEI_CHANGE_WINDOW
    started = time.monotonic()
    looked_up: CheckResult | None = None
    if not accepted_everywhere(device_id):
        # an id some checks refuse: find the line first, then check it by its ICCID
        lookup = {"line": thingspace_checks(deps, device_id, now)["line"]}
        looked_up = run_checks(lookup, timeout=timeout)["line"]
        if isinstance(looked_up.exception, DeviceNotFound):
            raise looked_up.exception
        if looked_up.ok:
            device_id = _check_id(looked_up.value)
    checks = thingspace_checks(deps, device_id, now)
    if looked_up is not None:
        del checks["line"]
    results = run_checks(checks, timeout=timeout)
    if looked_up is not None:
        results["line"] = looked_up
    elapsed = time.monotonic() - started
    missing = results["line"].exception
    if isinstance(missing, DeviceNotFound):
        raise missing  # not this account's line: no card, the plain answer

    device: Device | None = results["line"].value if results["line"].ok else None
    diag: Diagnostics | None = results["diagnostics"].value if results["diagnostics"].ok else None
    limits: LineLimits | None = results["history"].value if results["history"].ok else None
    events: list[ConnectionEvent] | None = results["sessions"].value if results["sessions"].ok else None
    usage: list[UsageRecord] | None = results["usage"].value if results["usage"].ok else None
    found: list[ImeiIccidMismatch] | None = results["hardware"].value if results["hardware"].ok else None
    account: Account | None = results["account"].value if results["account"].ok else None

    db = deps.db()
    keys = [key]
    if device is not None and device.ids:
        canonical = directory.canonical_key(device.ids)
        if canonical != key:
            keys.append(canonical)
    entry = next((e for e in (_lookup(db, k) for k in keys) if e is not None), None)
    if entry is not None and entry.key not in keys:
        keys.append(entry.key)
    pending = [p for k in keys for p in pending_requests(db, k)]
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    counts = requests.actions_today(db, keys, day_start=day_start)
    bot_actions = max(counts.values()) if counts else None
    watch = next((w for w in (watches.get_watch(db, k) for k in keys) if w is not None), None)
    reach = next((r for r in (watches.get_state(db, k) for k in keys) if r is not None), None)
    changes = directory.imei_changes(db, entry.key, since=(now - window).timestamp()) if entry else []

    ids: dict[str, str] = {}
    if diag is not None:
        ids.update(diag.identifiers)
    if device is not None:
        ids.update(device.ids)
    state = (device.state if device else "") or (diag.state if diag else "") or None
    network = network_facts(device, diag, events)
    counted = [n for n in (limits.actions_today if limits else None, bot_actions) if n is not None]
    resume = diag.resume_date if diag else None
    if resume is None and device is not None:
        resume = parse_datetime(device.extended_attributes.get("ResumeDate"))
    plan = device.service_plan if device else (entry.plan if entry else "")
    shown = blocks.escape  # what ThingSpace sent reaches the card's mrkdwn only through escape
    facts = Facts(
        now=now,
        target=str(device_id),
        failed={CHECKS[name]: shown(results[name].error or "") for name in CHECKS if not results[name].ok},
        state=shown(state) if state is not None else None,
        plan=shown(plan),
        plan_allowance=account.plan_allowance(plan) if account is not None else None,
        actions_today=max(counted) if counted else None,
        resume_date=resume,
        last_suspended=diag.last_suspended if diag else None,
        suspended_days_year=limits.suspended_days_year if limits else None,
        suspended_days_continuous=limits.suspended_days_continuous if limits else None,
        pending=pending,
        attached=network.attached,
        attached_from=network.attached_from,
        apn=network.apn,
        rat=network.rat,
        sessions_last_hour=network.sessions_last_hour,
        connected=network.connected,
        last_connection=network.last_connection,
        ip_address=network.ip_address,
        events=events,
        session_window=SESSION_WINDOW,
        usage=usage,
        cycle_start=_cycle_start(device, now),
        mismatches=_mismatches(found, ids, entry, changes, now),
        watched=watch is not None,
        wake_every=timedelta(seconds=watch.wake_every) if watch and watch.wake_every else None,
        reachable=reach.reachable if reach else None,
        reachable_since=datetime.fromtimestamp(reach.since, UTC) if reach else None,
        reboot_sms=deps.settings.reboot_sms_text,
    )
    return Diagnosis(facts, elapsed, _title(entry, device, device_id), entry.key if entry else keys[-1])


# -- the card ----------------------------------------------------------------------------------------


def _evidence_lines(evidence: tuple[Evidence, ...]) -> list[str]:
    return [f"{_LEVEL_ICONS[e.level]} *{e.topic}:* {e.text}" for e in evidence]


#: confirm dialogs of the next-step buttons that change something or send an SMS: verb -> (title, text, ok)
_STEP_CONFIRM = {
    "sms": (
        "Send the reboot SMS?",
        "The SMS goes to {title} at once (ThingSpace queues it for up to 5 days).",
        "Send",
    ),
    "cancel-location": (
        "Cancel location?",
        "Opens the confirmation to detach {title}; nothing happens before you confirm it.",
        "Continue",
    ),
    "suspend": ("Suspend this line?", "Opens the confirmation to suspend {title}.", "Continue"),
    "resume": ("Resume this line?", "Opens the confirmation to resume {title}.", "Continue"),
    "watch": (
        "Watch this line?",
        "Starts a ThingSpace reachability monitor for {title} and alerts this channel.",
        "Watch",
    ),
}


def card(
    verdict: Verdict,
    title: str,
    *,
    checks: int,
    seconds: float,
    now: datetime,
    target: str = "",
    allowed: Callable[[str], bool] = lambda verb: True,
    shared_by: str = "",
    shareable: bool = True,
) -> list[dict[str, Any]]:
    """The verdict as Block Kit: headline, evidence, next-step buttons (only those whose verb the
    reader may run, per *allowed*; a confirm dialog on each that changes something), **Retry** on
    an unknown verdict, **Share to channel** unless this is the shared copy, and a footer."""
    body: list[dict[str, Any]] = [
        blocks.header(f"Diagnosis · {title}"),
        blocks.section(f"{_ICONS[verdict.grade]} *{verdict.grade.upper()}* · {verdict.summary}"),
    ]
    if verdict.also:
        body.append(blocks.section("\n".join(f"*Also:* {sentence}" for sentence in verdict.also)))
    chunk: list[str] = []
    size = 0
    for line in _evidence_lines(verdict.evidence):
        if chunk and size + len(line) + 1 > 2900:
            body.append(blocks.section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        body.append(blocks.section("\n".join(chunk)))
    buttons = []
    for step in verdict.steps:
        verb = step.command.split(" ", 1)[0]
        if not allowed(verb):
            continue
        confirm = _STEP_CONFIRM.get(verb)
        dialog = (confirm[0], confirm[1].format(title=blocks.escape(title)), confirm[2]) if confirm else None
        buttons.append(blocks.button(step.label, "ts:run", step.command, style=step.style, confirm=dialog))
    if verdict.grade == "unknown" and target:
        buttons.append(blocks.button("Retry", "ts:run", f"diag {target}", style="primary"))
    if target and shareable and not shared_by:
        buttons.append(blocks.button("Share to channel", "ts:share", f"diag {target}"))
    if buttons:
        body.append(blocks.actions(*buttons))
    if shared_by:
        body.append(blocks.context(f"Shared by <@{shared_by}>"))
    ran = checks - len(verdict.failed)
    took = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
    footer = f"{ran} of {checks} ThingSpace checks answered in {took} · {times.at(now, UTC, now=now)}"
    body.append(blocks.context(footer))
    return blocks.limit_blocks(body)


def run_diag(deps: Deps, device_id: DeviceId, payload: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Diagnose one line: ``(fallback text, blocks)`` for the response_url."""
    key = str(payload.get("key") or device_id)
    found = diagnose(deps, device_id, key)
    facts, seconds, title = found.facts, found.seconds, found.title
    verdict = judge(facts)
    log.info(
        "diag %s: %s in %.2f s (%d check(s) failed)",
        device_id.masked(),
        verdict.grade,
        seconds,
        len(verdict.failed),
    )
    db = deps.db()
    with audit.transaction(db):
        audit.record(
            db,
            actor=str(payload.get("user", "")),
            channel=str(payload.get("channel", "")),
            verb=audit.Verb.DIAG,
            outcome=verdict.grade,
            targets=list(dict.fromkeys([key, found.key])),
            detail={"failed": list(verdict.failed), "seconds": round(seconds, 2)},
        )
    text = f"{blocks.escape(title)}: {verdict.grade} · {verdict.summary}"
    user, channel = str(payload.get("user", "")), str(payload.get("channel", ""))
    role = user_role(deps, user, channel) if user else "admin"

    def allowed(verb: str) -> bool:
        spec = deps.verbs.get(verb)
        return spec is None or may_run(role, spec.role)

    return text, card(
        verdict,
        title,
        checks=len(CHECKS),
        seconds=seconds,
        now=facts.now,
        target=key,
        allowed=allowed,
        shared_by=user if payload.get("share") else "",
        shareable=not payload.get("in_channel"),
    )
