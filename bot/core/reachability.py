"""Reachability state and watch alerts: what each callback changes, and what each tick raises.

Two entry points do all the work, both inside one write transaction and both taking ``now``:

* :func:`apply_event` — a DiagnosticsService callback (the inbox worker, :mod:`bot.inbox.worker`,
  hands each one over): confirms the monitor it names, records the
  observation in the device's history, moves its state forward, and re-arms its watch: a device
  that goes unreachable gets a ``due_at`` (when its rule fires if nothing else is heard); one
  that comes back starts counting towards the recovery of its open alerts.
* :func:`evaluate` — one tick of the scheduler: ended snoozes fire again, alerts whose device
  stayed reachable for ``alert_recover_after`` resolve, watches that are due raise alerts.

The rules (:func:`rule_due`):

* **unreachable** — the device has not been reachable for the watch's ``alert_after``;
* **missed-wakes** (``watch --wake-every``) — a sleepy device is unreachable between wakes by
  design; it alerts only when it was last seen more than ``missed_wakes + 1`` wake periods ago.

Time before the watch started does not count (nothing was monitoring the device then), so a
new watch never pages at once for an outage nobody was watching.

Hygiene: an alert's dedupe key is (device, condition). More than ``alert_group_threshold``
devices of one channel going down within ``alert_group_window`` get one grouped card (earlier
individual cards of that window fold into it). Flapping is damped: a device must stay reachable
for ``alert_recover_after`` before its alert resolves, and a device that goes down again within
``alert_realert_after`` of its last card gets that card reopened in place (a thread reply, not a
new message to the channel). Every card is an outbox row; every raise, recovery, acknowledgement
and snooze is an audit row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlite_utils import Database

from bot.core.config import Settings
from bot.core.redact import mask_id, mask_text
from bot.render import alert_cards, blocks, times
from bot.thingspace import shapes
from bot.thingspace.events import CallbackEvent, CallbackKind
from bot.thingspace.ids import DeviceId
from storage import alerts, directory, outbox, watches
from storage.alerts import Alert, AlertGroup
from storage.audit.events import AuditEvent, Outcome, Verb
from storage.audit.log import AuditLog
from storage.db import write
from storage.watches import Observation, ReachState, Watch

__all__ = [
    "DEMO_SETTINGS",
    "MONITOR_RETRY",
    "MONITOR_TTL",
    "Applied",
    "Tick",
    "acknowledge",
    "apply_event",
    "close_alerts",
    "device_key",
    "evaluate",
    "labels_for",
    "on_callback",
    "refresh_due",
    "rule_due",
    "snooze",
    "timezone_of",
]

log = logging.getLogger(__name__)

#: Expiry of the monitors the bot starts; the monitors job renews each one when less than a
#: quarter of it is left (ThingSpace allows up to 10 years; a week keeps forgotten ones short-lived).
MONITOR_TTL = timedelta(days=7)
#: Short thresholds for ``tsbot demo`` (its LocalStack ``settings_overrides``): after
#: ``reach ID down`` the alert card appears within half a minute, and recovery, grouping and
#: re-alerts can be tried in a few minutes.
DEMO_SETTINGS: dict[str, timedelta] = {
    "watch_alert_after": timedelta(seconds=20),
    "alert_evaluate_every": timedelta(seconds=5),
    "alert_recover_after": timedelta(seconds=20),
    "alert_group_window": timedelta(minutes=2),
    "alert_realert_after": timedelta(minutes=3),
    # a request whose callback was lost (console: lose 1) is asked about after 15 s, and one
    # ThingSpace still works on is said to be pending after 30 s
    "reconcile_after": timedelta(seconds=15),
    "no_result_after": timedelta(seconds=30),
}
#: After ThingSpace refused a monitor, wait this long before asking again.
MONITOR_RETRY = 15 * 60.0


def timezone_of(settings: Settings) -> tzinfo:
    try:
        return ZoneInfo(settings.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r; showing UTC", settings.timezone)
        return ZoneInfo("UTC")


# -- the rules (pure) ----------------------------------------------------------------------------


def rule_due(
    *,
    alert_after: float | None,
    wake_every: float | None,
    missed_wakes: int,
    watched_since: float,
    state: ReachState | None,
) -> tuple[float, float] | None:
    """When the rule fires and since when the device counts as down: ``(due_at, down_since)``;
    None while the device is reachable.

    Only time since the watch started counts: before it, nobody monitored the device.
    """
    if state is not None and state.reachable:
        return None
    if wake_every is not None:
        seen = state.last_reachable_at if state is not None and state.last_reachable_at is not None else None
        base = watched_since if seen is None else max(seen, watched_since)
        return base + (missed_wakes + 1) * wake_every, base
    since = state.since if state is not None else watched_since
    base = max(since, watched_since)
    return base + float(alert_after or 0), base


def _watch_due(watch: Watch, state: ReachState | None) -> tuple[float, float] | None:
    return rule_due(
        alert_after=watch.alert_after,
        wake_every=watch.wake_every,
        missed_wakes=watch.missed_wakes,
        watched_since=watch.created_at,
        state=state,
    )


def refresh_due(db: Database, device: str) -> float | None:
    """Re-arm the watch of *device* from its state and open alerts; returns the new ``due_at``.

    A device never heard from is due only once ThingSpace accepted a monitor for it: silence
    means something only when someone is listening (a monitor that failed to start must not
    page for every device it should have covered).
    """
    watch = watches.get_watch(db, device)
    if watch is None:
        return None
    state = watches.get_state(db, device)
    open_conditions = {a.condition for a in alerts.open_for_devices(db, [device]).get(device, [])}
    due = None
    if watch.condition not in open_conditions and (state is not None or watches.is_monitored(db, device)):
        due = _watch_due(watch, state)
    due_at = None if due is None else due[0]
    watches.set_due(db, device, due_at)
    return due_at


# -- callbacks -----------------------------------------------------------------------------------


def device_key(db: Database, ids: Sequence[DeviceId]) -> str:
    """The key a callback's device is known by: a watched id, else the directory's, else its own."""
    for device in ids:
        if watches.get_watch(db, str(device)) is not None:
            return str(device)
    for device in ids:
        entry = directory.lookup(db, device.kind, device.id)
        if entry is not None:
            return entry.key
    return str(ids[0])


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_event` did with one callback."""

    device: str
    observation: Observation | None


def on_callback(db: Database, event: CallbackEvent, now: float) -> None:
    """The inbox worker's handler for reachability (DiagnosticsService) callbacks."""
    apply_event(db, event, now=now)


def apply_event(db: Database, event: CallbackEvent, *, now: float) -> Applied | None:
    """Apply one DiagnosticsService callback (call inside a write transaction)."""
    if event.service != shapes.DIAGNOSTICS_SERVICE or not event.device_ids:
        return None
    key = device_key(db, event.device_ids)
    if event.kind is CallbackKind.MONITOR_FAILED:
        error = mask_text(event.fault_message or event.fault_code or event.status or "failed")
        if watches.fail_monitors(db, key, request_id=event.request_id, error=error, now=now):
            watches.set_monitor_retry(db, [key], retry_at=now + MONITOR_RETRY, error=error)
            refresh_due(db, key)
            log.warning("ThingSpace refused to monitor %s: %s", mask_id(key), error)
        return Applied(key, None)
    watches.attach_monitor_id(db, key, request_id=event.request_id, monitor_id=event.monitor_id, now=now)
    if event.kind not in (CallbackKind.REACHABLE, CallbackKind.UNREACHABLE):
        return Applied(key, None)
    at = min(event.event_time.timestamp(), now) if event.event_time is not None else now
    until = event.reachable_until.timestamp() if event.reachable_until is not None else None
    observation = watches.record_observation(
        db,
        key,
        reachable=event.kind is CallbackKind.REACHABLE,
        at=at,
        received_at=now,
        reachable_until=until,
        source="monitor" if event.monitor_id else "query",
    )
    if not observation.stale:
        _after_observation(db, key, observation.after, now)
    return Applied(key, observation)


def _after_observation(db: Database, device: str, state: ReachState, now: float) -> None:
    if state.reachable:
        alerts.set_recovering(db, device, since=state.since, now=now)
        watches.set_due(db, device, None)
        return
    # Down again before counting as recovered: flapping. (A sleepy device going back to sleep
    # after a wake is normal, so a missed-wakes alert keeps counting.)
    alerts.clear_recovering(db, device, condition="unreachable", now=now)
    refresh_due(db, device)


# -- rendering and queueing ----------------------------------------------------------------------


def labels_for(db: Database, devices: Iterable[str]) -> dict[str, str]:
    """Readable labels (``tracker-0042 (iccid …9708)``) from the device directory."""
    refs = []
    for device in dict.fromkeys(devices):
        kind, _, ident = device.partition(":")
        refs.append((kind, ident))
    found = directory.lookup_many(db, refs)
    out: dict[str, str] = {}
    for kind, ident in refs:
        entry = found.get((kind, ident))
        out[f"{kind}:{ident}"] = entry.display if entry else f"{kind} …{ident[-4:]}"
    return out


@dataclass
class Tick:
    """What one evaluation did (also what a button or an unwatch changed)."""

    snooze_ended: int = 0
    recovered: int = 0
    raised: int = 0
    reopened: int = 0
    grouped: int = 0
    groups_opened: int = 0
    messages: int = 0
    #: due alerts held back this tick: their channel's burst has not been quiet for group_delay yet
    held: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.snooze_ended or self.recovered or self.raised or self.reopened or self.messages)


@dataclass
class _Context:
    db: Database
    settings: Settings
    now: float
    tz: tzinfo
    tick: Tick = field(default_factory=Tick)
    audit: list[AuditEvent] = field(default_factory=list)
    dirty_groups: set[int] = field(default_factory=set)
    new_groups: set[int] = field(default_factory=set)
    group_replies: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    recovered_groups: set[int] = field(default_factory=set)
    _labels: dict[str, str] = field(default_factory=dict)
    _watches: dict[str, Watch | None] = field(default_factory=dict)

    def label(self, device: str) -> str:
        if device not in self._labels:
            self._labels.update(labels_for(self.db, [device]))
        return self._labels[device]

    def prefetch(self, devices: Sequence[str]) -> None:
        missing = [d for d in devices if d not in self._labels]
        if missing:
            self._labels.update(labels_for(self.db, missing))

    def watch(self, device: str) -> Watch | None:
        if device not in self._watches:
            self._watches[device] = watches.get_watch(self.db, device)
        return self._watches[device]

    # -- outbox

    def post(self, key: str, channel: str, text: str, body: list[dict[str, object]]) -> None:
        outbox.enqueue_post(self.db, key=key, channel=channel, text=text, blocks=body)
        self.tick.messages += 1

    def update(
        self, key: str, channel: str, text: str, body: list[dict[str, object]], *, link_key: str | None = None
    ) -> None:
        try:
            outbox.enqueue_update(self.db, target_key=key, text=text, blocks=body, link_key=link_key)
        except outbox.UnknownMessage:
            # the card's message is no longer in the outbox (purged): post it afresh
            if link_key is not None:
                text, body = alert_cards.without_link(text, body)
            fresh = f"{key}:re:{int(self.now * 1000)}"
            outbox.enqueue_post(self.db, key=fresh, channel=channel, text=text, blocks=body)
            alerts.replace_card_key(self.db, key, fresh)
        self.tick.messages += 1

    def reply(self, card_key: str, channel: str, key: str, text: str) -> None:
        try:
            outbox.enqueue_post(self.db, key=key, channel=channel, text=text, thread_key=card_key)
        except outbox.UnknownMessage:
            outbox.enqueue_post(self.db, key=key, channel=channel, text=text)
        self.tick.messages += 1

    def card_changed(self, alert: Alert) -> None:
        """Re-render wherever *alert* is shown."""
        if alert.group_id is not None:
            self.dirty_groups.add(alert.group_id)
        elif alert.card_key:
            text, body = alert_cards.alert_card(
                alert,
                label=self.label(alert.device),
                watch=self.watch(alert.device),
                now=self.now,
                tz=self.tz,
            )
            self.update(alert.card_key, alert.channel, text, body)

    def _list_all(self, group: AlertGroup, members: Sequence[Alert]) -> None:
        """ "Show all": when the card cannot list every device, its thread does, kept current (one
        message per 2,900 characters, at most 10)."""
        down = [m for m in members if m.state != "resolved"]
        if len(down) <= alert_cards.GROUP_LIST:
            return
        self.prefetch([m.device for m in down])
        for i, text in enumerate(
            alert_cards.group_listing(down, labels=self._labels, tz=self.tz, now=self.now)[:10]
        ):
            key = f"{group.card_key}:all:{i}"
            if outbox.get(self.db, key) is None:
                self.reply(group.card_key, group.channel, key, text)
            else:
                self.update(key, group.channel, text, [blocks.section(text)])

    def flush(self) -> None:
        for group_id in sorted(self.dirty_groups):
            group = alerts.get_group(self.db, group_id)
            if group is None:
                continue
            members = alerts.group_members(self.db, group_id)
            shown = [m.device for m in members if m.state != "resolved"][: alert_cards.GROUP_LIST]
            self.prefetch(shown)
            text, body = alert_cards.group_card(group, members, labels=self._labels, now=self.now, tz=self.tz)
            if group_id in self.new_groups:
                self.post(group.card_key, group.channel, text, body)
            else:
                self.update(group.card_key, group.channel, text, body)
                group = alerts.get_group(self.db, group_id) or group  # its card may have been re-posted
            for key, reply in self.group_replies.get(group_id, []):
                self.reply(group.card_key, group.channel, key, reply)
            self._list_all(group, members)
            if group_id in self.recovered_groups and all(m.state == "resolved" for m in members):
                key = f"{group.card_key}:all-recovered:{len(members)}:{int(self.now)}"
                self.reply(group.card_key, group.channel, key, text)
        if self.audit:
            AuditLog(self.db).record_many(self.audit)


def _context(db: Database, settings: Settings, now: float) -> _Context:
    return _Context(db=db, settings=settings, now=now, tz=timezone_of(settings))


# -- one evaluation tick -------------------------------------------------------------------------


def evaluate(db: Database, settings: Settings, *, now: float) -> Tick:
    """One tick: ended snoozes fire again, recoveries resolve, due watches raise (one transaction)."""
    ctx = _context(db, settings, now)
    with write(db):
        _expire_snoozes(ctx)
        _recover(ctx)
        _raise_due(ctx)
        ctx.flush()
    return ctx.tick


def _expire_snoozes(ctx: _Context) -> None:
    """Ended snoozes fire again, each with a thread reply that says where the device stands, and
    one audit row per channel (``alert.snooze``, outcome ``expired``).

    A device that came back during the snooze but has not stayed reachable for
    ``alert_recover_after`` yet (flap damping) is not "still not reachable": the reply says when its
    alert resolves. One whose recovery is due in this very tick gets no snooze reply (the recovery
    reply follows).
    """
    ended = alerts.expire_snoozes(ctx.db, now=ctx.now)
    ctx.tick.snooze_ended = len(ended)
    if not ended:
        return
    wait = ctx.settings.alert_recover_after.total_seconds()
    cutoff = ctx.now - wait

    def sort(items: list[Alert]) -> tuple[list[str], list[tuple[str, float]]]:
        down = [ctx.label(a.device) for a in items if a.recovering_since is None]
        back = [
            (ctx.label(a.device), a.recovering_since)
            for a in items
            if a.recovering_since is not None and a.recovering_since > cutoff
        ]
        return down, back

    by_group: dict[int, list[Alert]] = {}
    for alert in ended:
        if alert.group_id is not None:
            by_group.setdefault(alert.group_id, []).append(alert)
            ctx.dirty_groups.add(alert.group_id)
            continue
        ctx.card_changed(alert)
        down, back = sort([alert])
        if alert.card_key and (down or back):
            key = f"{alert.card_key}:snooze-end:{int(alert.snoozed_until or 0)}"
            text = alert_cards.snooze_ended_reply(down, back=back, recover_after=wait, tz=ctx.tz, now=ctx.now)
            ctx.reply(alert.card_key, alert.channel, key, text)
    for group_id, members in by_group.items():
        down, back = sort(members)
        if down or back:
            key = f"alert-group:{group_id}:snooze-end:{int(ctx.now)}"
            text = alert_cards.snooze_ended_reply(down, back=back, recover_after=wait, tz=ctx.tz, now=ctx.now)
            ctx.group_replies.setdefault(group_id, []).append((key, text))
    by_channel: dict[str, list[Alert]] = {}
    for alert in ended:
        by_channel.setdefault(alert.channel, []).append(alert)
    for channel, items in by_channel.items():
        ctx.audit.append(
            AuditEvent.system(
                Verb.ALERT_SNOOZE,
                outcome=Outcome.EXPIRED,
                channel=channel,
                targets=[a.device for a in items],
                detail={
                    "alerts": [a.id for a in items[:100]],
                    "count": len(items),
                    "groups": sorted({a.group_id for a in items if a.group_id is not None})[:100],
                    "snoozed_by": sorted({a.snoozed_by for a in items if a.snoozed_by})[:20],
                    "reachable_again": sum(a.recovering_since is not None for a in items),
                },
            )
        )


def _recover(ctx: _Context) -> None:
    cutoff = ctx.now - ctx.settings.alert_recover_after.total_seconds()
    done: list[Alert] = []
    for alert in alerts.due_recoveries(ctx.db, reachable_since_before=cutoff):
        resolved = alerts.resolve(
            ctx.db, alert.id, how="recovered", at=alert.recovering_since or ctx.now, now=ctx.now
        )
        if resolved is None:
            continue
        done.append(resolved)
        ctx.card_changed(resolved)
        if resolved.group_id is not None:
            ctx.recovered_groups.add(resolved.group_id)
        if resolved.group_id is None and resolved.card_key:
            key = f"{resolved.card_key}:recovered:{resolved.reopened}"
            ctx.reply(
                resolved.card_key,
                resolved.channel,
                key,
                alert_cards.recovered_reply(resolved, label=ctx.label(resolved.device)),
            )
        refresh_due(ctx.db, resolved.device)
    ctx.tick.recovered = len(done)
    by_channel: dict[str, list[Alert]] = {}
    for alert in done:
        by_channel.setdefault(alert.channel, []).append(alert)
    for channel, items in by_channel.items():
        ctx.audit.append(
            AuditEvent.system(
                Verb.ALERT_RECOVER,
                channel=channel,
                targets=[a.device for a in items],
                detail={
                    "alerts": [a.id for a in items[:100]],
                    "count": len(items),
                    "longest_outage_s": round(max(a.recovered_after or 0 for a in items)),
                },
            )
        )


def _raise_due(ctx: _Context) -> None:
    db, now = ctx.db, ctx.now
    due = watches.due_watches(db, now=now)
    if not due:
        return
    devices = [w.device for w in due]
    states = watches.states(db, devices)
    suspended = _suspended(db, devices)
    open_by_device = alerts.open_for_devices(db, devices)
    realert = ctx.settings.alert_realert_after.total_seconds()
    candidates: dict[str, list[tuple[Watch, float, float]]] = {}
    for watch in due:
        ctx._watches[watch.device] = watch
        if any(a.condition == watch.condition for a in open_by_device.get(watch.device, [])):
            watches.set_due(db, watch.device, None)
            continue
        if watch.device in suspended:  # suspended lines are unreachable by design: nobody is paged
            watches.set_due(db, watch.device, None)
            continue
        state = states.get(watch.device)
        if state is None and not watches.is_monitored(db, watch.device):
            watches.set_due(
                db, watch.device, None
            )  # its monitor failed or was stopped: silence means nothing
            continue
        rule = _watch_due(watch, state)
        if rule is None or rule[0] > now:  # the state moved on since due_at was set
            watches.set_due(db, watch.device, None if rule is None else rule[0])
            continue
        candidates.setdefault(watch.channel, []).append((watch, rule[1], rule[0]))
    delay = ctx.settings.alert_group_delay.total_seconds()
    window = ctx.settings.alert_group_window.total_seconds()
    fresh: dict[str, list[tuple[Watch, float]]] = {}
    for channel, items in candidates.items():
        newest, oldest = max(i[2] for i in items), min(i[2] for i in items)
        if now - newest < delay and now - oldest < window:
            # a burst may still be arriving: wait until it has been quiet for group_delay, so it
            # is posted once, grouped, rather than as single cards first (they stay due)
            ctx.tick.held += len(items)
            continue
        for watch, down_since, _due in items:
            watches.set_due(db, watch.device, None)
            last = alerts.last_alert(db, watch.device, watch.condition)
            if (
                last is not None
                and last.state == "resolved"
                and last.resolved_how == "recovered"
                and last.card_key
                and last.raised_at > now - realert
            ):
                reopened = alerts.reopen(db, last.id, down_since=down_since, now=now)
                if reopened is not None:
                    _reopened(ctx, reopened)
                    continue
            fresh.setdefault(channel, []).append((watch, down_since))
    for channel, raising in fresh.items():
        _raise_in_channel(ctx, channel, raising)


def _suspended(db: Database, devices: Sequence[str]) -> set[str]:
    """Which of *devices* the directory holds as suspended."""
    refs = [(kind, ident) for kind, _, ident in (d.partition(":") for d in devices)]
    found = directory.lookup_many(db, refs)
    return {f"{kind}:{ident}" for (kind, ident), entry in found.items() if entry.state == "suspend"}


def _reopened(ctx: _Context, alert: Alert) -> None:
    """Down again soon after recovering: the same card fires again (rate-limited re-alert)."""
    ctx.tick.reopened += 1
    ctx.card_changed(alert)
    reply = alert_cards.down_again_reply(alert, label=ctx.label(alert.device), tz=ctx.tz, now=ctx.now)
    key = f"alert:{alert.id}:down-again:{alert.reopened}"
    if alert.group_id is not None:
        ctx.group_replies.setdefault(alert.group_id, []).append((key, reply))
    elif alert.card_key:
        ctx.reply(alert.card_key, alert.channel, key, reply)
    ctx.audit.append(
        AuditEvent.system(
            Verb.ALERT_RAISE,
            channel=alert.channel,
            targets=[alert.device],
            detail={"alert": alert.id, "condition": alert.condition, "reopened": alert.reopened},
        )
    )


def _raise_in_channel(ctx: _Context, channel: str, items: list[tuple[Watch, float]]) -> None:
    db, now, settings = ctx.db, ctx.now, ctx.settings
    window_start = now - settings.alert_group_window.total_seconds()
    group: AlertGroup | None = alerts.open_group(db, channel=channel, added_since=window_start)
    if group is None:
        recent = alerts.recent_ungrouped(db, channel=channel, raised_since=window_start)
        if len(recent) + len(items) > settings.alert_group_threshold:
            group = alerts.create_group(db, channel=channel, now=now)
            ctx.new_groups.add(group.id)
            ctx.tick.groups_opened += 1
            alerts.add_to_group(db, group, [a.id for a in recent], now=now)
            for alert in recent:  # their own cards shrink to a pointer at the group
                if alert.card_key:
                    text, body = alert_cards.moved_to_group_card(
                        alert, label=ctx.label(alert.device), tz=ctx.tz, now=now
                    )
                    ctx.update(alert.card_key, alert.channel, text, body, link_key=group.card_key)
    raised: list[Alert] = []
    for watch, down_since in items:
        new_alert = alerts.insert_alert(
            db,
            device=watch.device,
            condition=watch.condition,
            channel=channel,
            down_since=down_since,
            now=now,
            group_id=None if group is None else group.id,
        )
        if new_alert is not None:
            raised.append(new_alert)
    if not raised:
        return
    ctx.tick.raised += len(raised)
    if group is not None:
        alerts.add_to_group(db, group, [a.id for a in raised], now=now)
        ctx.dirty_groups.add(group.id)
        ctx.tick.grouped += len(raised)
    else:
        ctx.prefetch([a.device for a in raised])
        for alert in raised:
            key = f"alert:{alert.id}"
            alerts.set_card(db, [alert.id], key)
            shown = Alert(**{**alert.__dict__, "card_key": key})
            text, body = alert_cards.alert_card(
                shown, label=ctx.label(alert.device), watch=ctx.watch(alert.device), now=now, tz=ctx.tz
            )
            ctx.post(key, channel, text, body)
    conditions: dict[str, int] = {}
    for alert in raised:
        conditions[alert.condition] = conditions.get(alert.condition, 0) + 1
    ctx.audit.append(
        AuditEvent.system(
            Verb.ALERT_RAISE,
            channel=channel,
            targets=[a.device for a in raised],
            detail={
                "count": len(raised),
                "conditions": conditions,
                "group": None if group is None else group.id,
                "alerts": [a.id for a in raised[:100]],
            },
        )
    )


# -- people acting on alerts ---------------------------------------------------------------------


def _targets(db: Database, alert_id: int | None, group_id: int | None) -> list[Alert]:
    if group_id is not None:
        return [m for m in alerts.group_members(db, group_id) if m.state != "resolved"]
    if alert_id is not None:
        found = alerts.get(db, alert_id)
        return [found] if found is not None and found.state != "resolved" else []
    return []


def _act_on_alerts(
    db: Database,
    settings: Settings,
    *,
    by: str,
    now: float,
    alert_id: int | None,
    group_id: int | None,
    channel: str,
    act: Callable[[int], Alert | None],
    verb: str,
    detail: Mapping[str, Any],
    reply: str = "",
) -> list[Alert]:
    """Apply *act* to one alert or every open alert of a group, update their cards, say *reply* in
    the card's thread (an edit notifies nobody), audit once."""
    ctx = _context(db, settings, now)
    with write(db):
        changed = []
        for alert in _targets(db, alert_id, group_id):
            done = act(alert.id)
            if done is not None:
                changed.append(done)
                ctx.card_changed(done)
        if changed and reply:
            first = changed[0]
            key = f"{verb}:{first.id}:{group_id or ''}:{int(now * 1000)}"
            if group_id is not None:
                ctx.group_replies.setdefault(group_id, []).append((key, reply))
            elif first.card_key:
                ctx.reply(first.card_key, first.channel, key, reply)
        if changed:
            ctx.audit.append(
                AuditEvent(
                    actor=by,
                    channel=channel or changed[0].channel,
                    verb=verb,
                    targets=[a.device for a in changed],
                    outcome=Outcome.OK,
                    detail={"alerts": [a.id for a in changed[:100]], "group": group_id, **detail},
                )
            )
        ctx.flush()
    return changed


def acknowledge(
    db: Database,
    settings: Settings,
    *,
    by: str,
    now: float,
    alert_id: int | None = None,
    group_id: int | None = None,
    channel: str = "",
) -> list[Alert]:
    """Acknowledge one alert or every open alert of a group; returns those that changed."""
    return _act_on_alerts(
        db,
        settings,
        by=by,
        now=now,
        alert_id=alert_id,
        group_id=group_id,
        channel=channel,
        act=lambda alert: alerts.acknowledge(db, alert, by=by, now=now),
        verb=Verb.ALERT_ACK,
        detail={},
        reply=f":eyes: Acknowledged by <@{by}> at {times.at(now, timezone_of(settings))}.",
    )


def snooze(
    db: Database,
    settings: Settings,
    *,
    by: str,
    hours: int,
    now: float,
    alert_id: int | None = None,
    group_id: int | None = None,
    channel: str = "",
) -> list[Alert]:
    """Snooze one alert or every open alert of a group for *hours*; returns those that changed."""
    until = now + hours * 3600
    return _act_on_alerts(
        db,
        settings,
        by=by,
        now=now,
        alert_id=alert_id,
        group_id=group_id,
        channel=channel,
        act=lambda alert: alerts.snooze(db, alert, by=by, until=until, now=now),
        verb=Verb.ALERT_SNOOZE,
        detail={"hours": hours, "until": round(until)},
        reply=(
            f":zzz: Snoozed for {hours} h by <@{by}> at {times.at(now, timezone_of(settings))}, "
            f"until {times.at(until, timezone_of(settings), now=now)}."
        ),
    )


def close_alerts(
    db: Database,
    settings: Settings,
    devices: Sequence[str],
    *,
    how: str,
    now: float,
    keep: Mapping[str, str] | None = None,
    by: str | None = None,
) -> list[Alert]:
    """Resolve the open alerts of *devices* (``how``: ``unwatched``, ``rule-changed``, or
    ``suspended`` — *by* someone through the bot), except those whose condition is
    ``keep[device]``. Call inside the caller's write transaction."""
    ctx = _context(db, settings, now)
    closed: list[Alert] = []
    for device, items in alerts.open_for_devices(db, devices).items():
        for alert in items:
            if keep is not None and keep.get(device) == alert.condition:
                continue
            done = alerts.resolve(db, alert.id, how=how, at=now, now=now, by=by)
            if done is not None:
                closed.append(done)
                ctx.card_changed(done)
                if how == "suspended" and done.group_id is None and done.card_key:
                    who = f" by <@{by}>" if by else ""
                    text = (
                        f":double_vertical_bar: {blocks.escape(ctx.label(device))} was suspended{who} at "
                        f"{times.at(now, ctx.tz)}; it is expected to be unreachable, so this alert is closed."
                    )
                    ctx.reply(done.card_key, done.channel, f"{done.card_key}:suspended:{int(now)}", text)
    ctx.flush()
    return closed
