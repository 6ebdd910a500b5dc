"""``/ts sms-history TARGET [--since 7d]``: messages to and from a device, newest first.

The worker posts in the channel what the bot knows — the SMS it sent (with each one's delivery
receipt) and what the device sent (``storage.device_messages``) — then asks ThingSpace for the
line's SMS event history (SDK ``SMSEventHistoryRequest``; ThingSpace keeps three months). Those
events come by a DeviceService callback and land in the post's thread like any request's result;
when ThingSpace will not answer, the post says why.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Final

from bot.core.durations import format_duration, parse_duration
from bot.render import blocks, messaging, results
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.ids import DeviceId
from commands import audit
from commands.context import CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError
from commands.targets import resolve
from storage import device_messages, jobs, outbox, requests
from storage.jobs import Job

__all__ = ["run_sms_history", "start"]

DEFAULT_SINCE: Final = timedelta(days=7)
#: ThingSpace keeps three months of SMS events
KEPT: Final = timedelta(days=90)
SHOWN: Final = 30
_RECEIPTS: Final = {
    "pending": "waiting for ThingSpace",
    "sent": "handed to the network",
    "delivered": "delivered",
    "expired": "expired undelivered",
    "failed": "failed",
    "no-result": "no result",
}


def start(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    db = deps.db()
    raw = inv.options.get("since")
    since = DEFAULT_SINCE
    if raw is not None:
        try:
            since = parse_duration(str(raw))
        except ValueError:
            raise UsageError(
                f"--since takes a duration such as 24h or 7d, not “{str(raw)[:20]}”.", verb="sms-history"
            ) from None
    [device] = resolve(db, inv.targets, verb="sms-history", max_targets=1, single=True)
    payload = {
        "verb": "sms-history",
        "device": str(device.device_id),
        "key": device.key,
        "label": device.label,
        "since": since.total_seconds(),
        "user": req.user,
        "channel": req.channel,
        "response_url": req.response_url,
    }
    with audit.transaction(db):
        jobs.enqueue(
            db, key=f"lookup:sms-history:{req.user}:{time.time_ns()}", kind="lookup", payload=payload
        )
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb="sms-history",
            outcome=audit.Outcome.QUEUED,
            targets=[device.key],
            detail={"since_s": int(since.total_seconds())},
        )
    deps.wake()
    return Reply(
        f":hourglass_flowing_sand: Listing the messages to and from {device.shown} over the last "
        f"{format_duration(since)}… posted in this channel; ThingSpace's SMS events follow in its thread."
    )


def run_sms_history(deps: Deps, job: Job) -> None:
    payload = job.payload
    db = deps.db()
    now = deps.clock()
    since = float(payload["since"])
    key, label = str(payload["key"]), str(payload["label"])
    tz = results.zone(deps.settings.timezone)
    sent = device_messages.sent(db, key, ["sms"], since=now - since, limit=SHOWN)
    got = [m for m in device_messages.received(db, key, since=now - since, limit=SHOWN) if m.source == "sms"]
    rows: list[tuple[float, str]] = []
    for message in sent:
        at = messaging.when(datetime.fromtimestamp(message.created_at, UTC), tz)
        receipt = _RECEIPTS.get(message.status, message.status)
        rows.append(
            (
                message.created_at,
                f"• {at} → “{blocks.escape(message.text)}” by <@{message.actor}> · {receipt}",
            )
        )
    for answer in got:
        at = messaging.when(datetime.fromtimestamp(answer.sent_at or answer.received_at, UTC), tz)
        rows.append((answer.received_at, f"• {at} ← “{blocks.escape(answer.body)}” from the device"))
    rows.sort(key=lambda r: r[0], reverse=True)
    window = format_duration(timedelta(seconds=since))
    head = f":speech_balloon: *SMS to and from {blocks.escape(label)}* — last {window}"
    listing = "\n".join(text for _, text in rows[:SHOWN]) or "_No SMS to or from this line in the window._"
    root = f"sms-history:{job.id}"
    device_id = DeviceId.from_wire(
        dict(zip(("kind", "id"), str(payload["device"]).split(":", 1), strict=True))
    )
    latest = datetime.fromtimestamp(now, UTC)
    earliest = latest - min(timedelta(seconds=since), KEPT)
    note = ""
    request_id = ""
    try:
        accepted = deps.thingspace.sms_event_history(device_id, earliest, latest)
        request_id = accepted.request_id
        note = f"ThingSpace's SMS event history (request `{request_id}`) follows in this thread."
    except ThingSpaceError as exc:
        note = f":grey_question: ThingSpace's SMS event history cannot be had: {blocks.escape(exc.user_message)}."
    body = [blocks.section(head), blocks.section(blocks.truncate(listing, 2900)), blocks.context(note)]
    with audit.transaction(db):
        outbox.enqueue_post(
            db, key=root, channel=str(payload["channel"]), text=f"SMS to and from {label}", blocks=body
        )
        if request_id:
            requests.add_request(
                db,
                request_id=request_id,
                verb="sms-history",
                actor=str(payload["user"]),
                channel=str(payload["channel"]),
                devices=[key],
                thread_key=root,
                response_url=str(payload.get("response_url") or ""),
            )
        audit.record(
            db,
            actor=str(payload["user"]),
            channel=str(payload["channel"]),
            verb="sms-history",
            outcome=audit.Outcome.OK,
            targets=[key],
            request_id=request_id,
            detail={"sent": len(sent), "received": len(got), "events_asked": bool(request_id)},
        )
