"""``/ts watch``, ``/ts unwatch``, ``/ts watches`` and the buttons of alert cards.

``watch TARGETS [--alert-after 2h] [--wake-every 6h] [--channel #c]`` records the watches (local
work, before the ack) and queues a worker job that asks ThingSpace to monitor the devices'
reachability (:func:`bot.scheduler.reachability_tasks.sync_monitors`). Without ``--wake-every`` a device is
alerted when unreachable longer than ``--alert-after`` (default ``[alerts] alert_after``); with
it, the device is sleepy and alerted only after missing more than ``[alerts] missed_wakes``
expected wakes. Watching a device again changes its rule or channel. ``unwatch`` removes the
watches, closes their open alerts and queues the stop of their monitors.

Buttons on alert cards (see :mod:`bot.render.alert_cards`): Acknowledge needs the viewer role (the role
of ``watches``), Snooze the operator role (the role of ``watch``: it silences a channel's
alert), Diagnose the role of ``diag``. The clicker is re-authorised on every click; refusals and
every acknowledgement and snooze are audited.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlite_utils import Database

from bot.core import reachability
from bot.core.durations import format_duration, parse_duration
from bot.render import alert_cards
from bot.render.blocks import escape
from bot.thingspace.client import REACHABILITY_KINDS
from commands import audit
from commands.context import ActionHandler, ActionRequest, CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError, channel_ref
from commands.policy import may_run, user_role
from commands.targets import resolve
from storage import alerts, jobs, watches
from storage.watches import WatchSpec

__all__ = [
    "MAX_PERIOD",
    "MIN_PERIOD",
    "on_ack",
    "on_diagnose",
    "on_snooze",
    "unwatch",
    "watch",
    "watches_list",
]

MIN_PERIOD = timedelta(seconds=10)
MAX_PERIOD = timedelta(days=30)
SHOW = 10


def _period(inv: Invocation, name: str) -> timedelta | None:
    raw = inv.options.get(name)
    if raw is None:
        return None
    try:
        value = parse_duration(str(raw))
    except ValueError as exc:
        raise UsageError(f"--{name}: {exc}", verb=inv.verb) from None
    if not MIN_PERIOD <= value <= MAX_PERIOD:
        raise UsageError(
            f"--{name} must be between {format_duration(MIN_PERIOD)} and {format_duration(MAX_PERIOD)}, "
            f"not {format_duration(value)}.",
            verb=inv.verb,
        )
    return value


def _count(n: int) -> str:
    return f"{n:,} device" + ("" if n == 1 else "s")


def _rule_text(alert_after: float | None, wake_every: float | None, missed_wakes: int) -> str:
    if wake_every is not None:
        return (
            f"sleepy: expected to wake every {format_duration(timedelta(seconds=wake_every))}, "
            f"alert after {missed_wakes + 1} missed wakes"
        )
    return f"alert when unreachable for {format_duration(timedelta(seconds=alert_after or 0))}"


def _queue_monitor_sync(db: Database, req: CommandRequest, verb: str) -> None:
    jobs.enqueue(
        db,
        key=f"watch-monitors:{verb}:{req.user}:{time.time_ns()}",
        kind="watch-monitors",
        payload={"user": req.user, "channel": req.channel, "response_url": req.response_url, "verb": verb},
    )


def watch(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    db = deps.db()
    settings = deps.settings
    now = deps.clock()
    alert_after = _period(inv, "alert-after")
    wake_every = _period(inv, "wake-every")
    if alert_after is not None and wake_every is not None:
        raise UsageError(
            "Give --alert-after or --wake-every, not both: --alert-after is for devices that should "
            "always be reachable, --wake-every for sleepy ones (they alert after missed wakes).",
            verb=audit.Verb.WATCH,
        )
    raw_channel = inv.options.get("channel")
    channel = channel_ref(str(raw_channel)) if raw_channel else (settings.alerts_channel or req.channel)
    devices = resolve(db, inv.targets, verb="watch", max_targets=settings.max_targets)
    unsupported = [d for d in devices if d.device_id.kind not in REACHABILITY_KINDS]
    if unsupported:
        first = unsupported[0]
        raise UsageError(
            f"ThingSpace monitors reachability only by {', '.join(REACHABILITY_KINDS)}; "
            f"{escape(first.label)} is named by its {first.device_id.kind}"
            + (f" (and {len(unsupported) - 1:,} more)" if len(unsupported) > 1 else "")
            + ". Name those devices by one of these identifiers.",
            verb=audit.Verb.WATCH,
        )
    after_s = None if wake_every is not None else (alert_after or settings.watch_alert_after).total_seconds()
    wake_s = None if wake_every is None else wake_every.total_seconds()
    missed = settings.watch_missed_wakes
    rule = _rule_text(after_s, wake_s, missed)
    keys = [d.key for d in devices]
    existing = watches.watched(db, keys)
    detail = {
        "devices": len(keys),
        "already_watched": len(existing),
        "channel": channel,
        "alert_after_s": after_s,
        "wake_every_s": wake_s,
    }
    if inv.dry_run:
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=audit.Verb.WATCH,
                outcome=audit.Outcome.DRY_RUN,
                targets=keys,
                reason=inv.reason,
                detail=detail,
            )
        ttl = format_duration(reachability.MONITOR_TTL)
        text = (
            f"*Dry run — nothing was changed.* Would watch {_count(len(keys))} in <#{channel}> ({rule})"
            + (f"; {len(existing):,} already watched would get this rule" if existing else "")
            + f". Would call `POST /m2m/v1/diagnostics/basic/devicereachability` (expiry {ttl})."
        )
        return Reply(text)
    states = watches.states(db, keys)
    specs = []
    for device in devices:
        old = existing.get(device.key)
        state = states.get(device.key)
        # never heard from: due once its monitor is accepted (see reachability.refresh_due)
        due = None
        if state is not None:
            due = reachability.rule_due(
                alert_after=after_s,
                wake_every=wake_s,
                missed_wakes=missed,
                watched_since=old.created_at if old else now,
                state=state,
            )
        specs.append(
            WatchSpec(
                device=device.key,
                kind=device.device_id.kind,
                ident=device.device_id.id,
                channel=channel,
                alert_after=after_s,
                wake_every=wake_s,
                missed_wakes=missed,
                due_at=None if due is None else due[0],
            )
        )
    condition = "missed-wakes" if wake_s is not None else "unreachable"
    with audit.transaction(db):
        added, changed = watches.upsert_watches(db, specs, by=req.user, now=now)
        closed = []
        if existing:
            changed_keys = list(existing)
            closed = reachability.close_alerts(
                db,
                settings,
                changed_keys,
                how="rule-changed",
                now=now,
                keep=dict.fromkeys(changed_keys, condition),
            )
            for key in changed_keys:
                reachability.refresh_due(db, key)
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=audit.Verb.WATCH,
            outcome=audit.Outcome.OK,
            targets=keys,
            reason=inv.reason,
            detail={**detail, "added": added, "changed": changed, "alerts_closed": len(closed)},
        )
        _queue_monitor_sync(db, req, "watch")
    deps.wake()
    parts = [f"{added:,} new"] if added else []
    if changed:
        parts.append(f"{changed:,} updated")
    text = (
        f":eyes: Watching {_count(len(keys))} ({', '.join(parts)}) — alerts go to <#{channel}>; {rule}. "
        f"Asking ThingSpace to monitor their reachability (monitors expire after "
        f"{format_duration(reachability.MONITOR_TTL)} and are renewed automatically)."
    )
    if closed:
        text += f" {len(closed):,} open alert(s) of the old rule were closed."
    return Reply(text)


def unwatch(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    db = deps.db()
    now = deps.clock()
    devices = resolve(db, inv.targets, verb="unwatch", max_targets=deps.settings.max_targets)
    keys = [d.key for d in devices]
    existing = watches.watched(db, keys)
    open_alerts = sum(len(v) for v in alerts.open_for_devices(db, list(existing)).values())
    if inv.dry_run or not existing:
        with audit.transaction(db):
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=audit.Verb.UNWATCH,
                outcome=audit.Outcome.DRY_RUN if inv.dry_run else audit.Outcome.REFUSED,
                targets=keys,
                reason=inv.reason,
                detail={"watched": len(existing), "open_alerts": open_alerts},
            )
        if not existing:
            return Reply(
                f"None of the {_count(len(keys))} you named is watched; nothing changed. `/ts watches` lists what is."
            )
        return Reply(
            f"*Dry run — nothing was changed.* Would stop watching {_count(len(existing))}, close "
            f"{open_alerts:,} open alert(s) and stop their ThingSpace monitors "
            "(`DELETE /m2m/v1/diagnostics/basic/devicereachability`)."
        )
    with audit.transaction(db):
        removed = watches.remove_watches(db, list(existing))
        watches.mark_stop(db, removed, now=now)
        closed = reachability.close_alerts(db, deps.settings, removed, how="unwatched", now=now)
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=audit.Verb.UNWATCH,
            outcome=audit.Outcome.OK,
            targets=removed,
            reason=inv.reason,
            detail={
                "removed": len(removed),
                "not_watched": len(keys) - len(removed),
                "alerts_closed": len(closed),
            },
        )
        _queue_monitor_sync(db, req, "unwatch")
    deps.wake()
    text = f":no_bell: Stopped watching {_count(len(removed))}"
    if len(keys) > len(removed):
        text += f" ({len(keys) - len(removed):,} named were not watched)"
    if closed:
        text += f"; closed {len(closed):,} open alert(s)"
    return Reply(text + ". Their ThingSpace monitors are being stopped.")


def watches_list(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    """What is watched: per channel, or the details of the devices named."""
    db = deps.db()
    now = deps.clock()
    tz = reachability.timezone_of(deps.settings)
    if inv.targets:
        devices = resolve(db, inv.targets, verb="watches", max_targets=SHOW)
        keys = [d.key for d in devices]
        found = watches.watched(db, keys)
        states = watches.states(db, keys)
        open_by = alerts.open_for_devices(db, keys)
        lines = []
        for d in devices:
            w = found.get(d.key)
            if w is None:
                lines.append(f"• {escape(d.label)}: not watched")
                continue
            state = alert_cards.state_line(states.get(d.key), tz, now)
            rule = _rule_text(w.alert_after, w.wake_every, w.missed_wakes)
            alerting = ", ".join(f"{a.condition} alert {a.state}" for a in open_by.get(d.key, []))
            monitor = "monitor: " + (
                f"not started ({escape(w.monitor_error)})" if w.monitor_error else _monitor_word(db, d.key)
            )
            lines.append(
                f"• {escape(d.label)} → <#{w.channel}>: {rule}; {state}; {monitor}"
                + (f"; :rotating_light: {alerting}" if alerting else "")
            )
        return Reply("\n".join(lines))
    counts = watches.channel_counts(db)
    if not counts:
        return Reply(
            "Nothing is watched yet. `/ts watch TARGETS` starts watching; `/ts help watch` explains."
        )
    total = sum(c.watched for c in counts)
    lines = [f"*{_count(total)} watched*"]
    for c in counts:
        sleepy = f" ({c.sleepy:,} sleepy)" if c.sleepy else ""
        firing = alerts.count_open(db, channel=c.channel)
        lines.append(
            f"• <#{c.channel}>: {c.watched:,} watched{sleepy} · {c.unreachable:,} unreachable now · "
            f"{firing:,} open alert(s)"
        )
    open_now = alerts.open_alerts(db, limit=SHOW)
    if open_now:
        labels = reachability.labels_for(db, [a.device for a in open_now])
        lines.append("*Open alerts*")
        for a in open_now:
            lines.append(f"• {escape(labels[a.device])} — {a.condition}, {a.state} (<#{a.channel}>)")
    return Reply("\n".join(lines))


def _monitor_word(db: Database, device: str) -> str:
    rows = watches.monitors_of(db, device)
    live = [m for m in rows if m.state in ("requested", "active")]
    if not live:
        return "none yet"
    newest = live[-1]
    return "active" if newest.state == "active" else "requested, not confirmed yet"


# -- buttons ---------------------------------------------------------------------------------------


def _target(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def _authorise(deps: Deps, req: ActionRequest, verb: str, action: str, channel: str) -> Reply | None:
    """The clicker's role in *channel*: the alert's own channel, never the one the click names."""
    role = user_role(deps, req.user, channel)
    needed = deps.role_needed(verb)
    if may_run(role, needed):
        return None
    db = deps.db()
    with audit.transaction(db):
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=action,
            outcome=audit.Outcome.DENIED,
            detail={"role": role, "needed": needed, "button": req.action_id},
        )
    word = {"alert.ack": "acknowledge", "alert.snooze": "snooze", "diag": "diagnose"}.get(action, action)
    return Reply(
        f":no_entry: You can't {word} this alert: it needs the *{needed}* role.",
        replace_original=False,
    )


def _refused(deps: Deps, req: ActionRequest, action: str, outcome: str, why: str, text: str) -> Reply:
    """A click that changes nothing still leaves exactly one audit entry, then says why."""
    db = deps.db()
    with audit.transaction(db):
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=action,
            outcome=outcome,
            detail={"why": why, "button": req.action_id, "value": req.value[:80]},
        )
    return Reply(text, replace_original=False)


def _stale_button(deps: Deps, req: ActionRequest, action: str) -> Reply:
    return _refused(deps, req, action, "invalid", "stale button", "That button is not valid any more.")


def _gone(deps: Deps, req: ActionRequest, kind: str, action: str) -> Reply:
    what = "alerts of this card are" if kind == "group" else "alert is"
    text = f"Nothing to do: the {what} already resolved or in that state."
    return _refused(deps, req, action, "refused", "already resolved or in that state", text)


ButtonHandler = Callable[[Deps, ActionRequest], Reply | None]


def _alert_button(
    kind: str, verb: str, audit_verb: str, act: Callable[..., Sequence[object]]
) -> ButtonHandler:
    """A card button on one alert or a grouped card: validate, re-authorize the clicker, act."""

    def handler(deps: Deps, req: ActionRequest) -> Reply | None:
        target = _target(req.value)
        if target is None:
            return _stale_button(deps, req, audit_verb)
        db = deps.db()
        card = alerts.get(db, target) if kind == "alert" else alerts.get_group(db, target)
        if card is None:
            return _gone(deps, req, kind, audit_verb)
        refused = _authorise(deps, req, verb, audit_verb, card.channel)
        if refused:
            return refused
        changed = act(
            db,
            deps.settings,
            by=req.user,
            now=deps.clock(),
            alert_id=target if kind == "alert" else None,
            group_id=target if kind == "group" else None,
            channel=card.channel,
        )
        if not changed:
            return _gone(deps, req, kind, audit_verb)
        deps.wake()
        return None

    return handler


def on_ack(kind: str) -> ButtonHandler:
    """Acknowledge (``kind`` ``alert`` or ``group``): anyone who may read the watches."""
    return _alert_button(kind, "watches", "alert.ack", reachability.acknowledge)


def on_snooze(kind: str, hours: int) -> ButtonHandler:
    """Snooze for *hours* (``kind`` ``alert`` or ``group``): operators."""
    return _alert_button(kind, "watch", "alert.snooze", functools.partial(reachability.snooze, hours=hours))


def on_diagnose(deps: Deps, req: ActionRequest) -> Reply | None:
    """Diagnose the alert's device; the card's thread gets the answer."""
    target = _target(req.value)
    alert = alerts.get(deps.db(), target) if target is not None else None
    if alert is None or not alert.card_key:
        return _refused(deps, req, "diag", "invalid", "alert gone", "That alert no longer exists.")
    refused = _authorise(deps, req, "diag", "diag", alert.channel)
    if refused:
        return refused
    db = deps.db()
    with audit.transaction(db):
        jobs.enqueue(
            db,
            key=f"alert-diag:{alert.id}:{req.user}:{time.time_ns()}",
            kind="alert-diag",
            payload={
                "device": alert.device,
                "key": alert.device,
                "card_key": alert.card_key,
                "channel": alert.channel,
                "user": req.user,
            },
        )
    deps.wake()
    label = escape(reachability.labels_for(db, [alert.device])[alert.device])
    return Reply(
        f":hourglass_flowing_sand: Running diagnostics for {label}; the answer will be in the alert's thread.",
        replace_original=False,
    )


def alert_buttons() -> dict[str, ActionHandler]:
    """The alert cards' buttons: ``ts:<kind>`` -> handler, for the router's button table."""
    table: dict[str, ActionHandler] = {"alert-diag": on_diagnose}
    for kind in ("alert", "group"):
        table[f"{kind}-ack"] = on_ack(kind)
        for name, hours in alert_cards.SNOOZE_CHOICES.items():
            table[f"{kind}-snooze-{name}"] = on_snooze(kind, hours)
    return table
