"""What a device sends — an SMS or NIDD data — posted where the conversation is.

A device-originated message goes into the thread of the last SMS (for an SMS) or NIDD message
(for NIDD data) the bot sent that device within ``[sms] reply_window``, so "send it STATUS and
read what it answers" happens in one thread; with nothing sent in the window it goes to the ops
channel. Each message is stored (``storage.device_messages``; a message delivered twice is
stored and posted once), posted with the device's label and masked id, and audited (actor
``thingspace``).

:class:`DeviceMessages` is built by the composition root with the settings; the inbox worker
calls it for the ``sms-received`` and ``nidd-received`` callbacks, inside its write transaction
(no network calls here), and an MO inbox poller can call :meth:`DeviceMessages.deliver` the same
way.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlite_utils import Database

from bot.core.config import Settings
from bot.core.durations import format_duration
from bot.render import messaging, results
from bot.thingspace.events import CallbackEvent, CallbackKind
from bot.thingspace.ids import DeviceId
from storage import device_messages, directory, outbox
from storage.audit.events import THINGSPACE_ACTOR, AuditEvent, Outcome, Verb
from storage.audit.log import AuditLog

__all__ = ["DeviceMessages"]

log = logging.getLogger(__name__)

#: the kinds this handles, and the bot verb whose thread a reply belongs in
KINDS: Final = {CallbackKind.SMS_RECEIVED: ("sms", "sms"), CallbackKind.NIDD_RECEIVED: ("nidd", "nidd")}


@dataclass(frozen=True)
class DeviceMessages:
    settings: Settings

    def on_callback(self, db: Database, event: CallbackEvent, now: float) -> bool:
        """Handle *event* if it is a device-originated message; True when it was one."""
        found = KINDS.get(event.kind)
        if found is None:
            return False
        source, _verb = found
        if source == "sms":
            body, is_text = event.sms_text, True
        else:
            body, is_text = messaging.payload_text(event.nidd_data)
        dedupe = event.outcome_key if event.request_id else ""
        self.deliver(
            db,
            device_ids=event.device_ids,
            source=source,
            body=body,
            is_text=is_text,
            at=event.event_time,
            dedupe=dedupe,
            now=now,
        )
        return True

    def deliver(
        self,
        db: Database,
        *,
        device_ids: tuple[DeviceId, ...],
        source: str,
        body: str,
        is_text: bool,
        at: datetime | None,
        dedupe: str = "",
        now: float,
    ) -> bool:
        """Store and post one message; False when it was delivered before (same *dedupe*).

        Without a *dedupe* key, one is made of the device, the source, the time and the body."""
        entry = None
        for device_id in device_ids:
            entry = directory.lookup(db, device_id.kind, device_id.id)
            if entry is not None:
                break
        key = entry.key if entry is not None else (str(device_ids[0]) if device_ids else "unknown")
        moment = at or datetime.fromtimestamp(now, UTC)
        if not dedupe:
            seed = f"{source}|{key}|{moment.isoformat()}|{body}"
            dedupe = "mo:" + hashlib.sha256(seed.encode()).hexdigest()[:32]
        window = self.settings.sms_reply_window
        last = device_messages.last_sent(db, key, [source], since=now - window.total_seconds())
        thread = None
        channel = self.settings.ops_channel
        if last is not None:
            root = outbox.get(db, last.thread_key) if last.thread_key else None
            if root is not None and root.kind == "post":
                thread, channel = root.key, root.channel
        added = device_messages.add(
            db,
            dedupe=dedupe,
            device=key,
            source=source,
            body=body if is_text else f"hex:{body}",
            sent_at=moment.timestamp(),
            thread_request=last.request_id if thread is not None and last is not None else None,
            channel=channel,
            now=now,
        )
        if added is None:
            return False
        label = results.device_label(entry, key)
        in_reply_to = None
        if thread is not None and last is not None:
            sent = datetime.fromtimestamp(last.created_at, UTC)
            in_reply_to = f"the {'SMS' if source == 'sms' else 'NIDD message'} <@{last.actor}> sent at " + (
                messaging.when(sent, results.zone(self.settings.timezone))
            )
        text, body_blocks = messaging.device_message_post(
            source=source,
            label=label,
            body=body,
            is_text=is_text,
            at=moment,
            tz=results.zone(self.settings.timezone),
            in_reply_to=in_reply_to,
            window=format_duration(window),
        )
        if channel:
            outbox.enqueue_post(
                db, key=f"mo:{added}", channel=channel, text=text, blocks=body_blocks, thread_key=thread
            )
        else:
            log.warning(
                "no ops channel configured ([channels] ops): a device's %s was stored, not posted", source
            )
        AuditLog(db).record(
            AuditEvent(
                at=datetime.fromtimestamp(now, UTC),
                actor=THINGSPACE_ACTOR,
                channel=channel,
                verb=Verb.CALLBACK,
                targets=[key],
                outcome=Outcome.OK,
                request_id=last.request_id if thread is not None and last is not None else "",
                detail={
                    "kind": f"{source}-received",
                    "message": added,
                    "in_thread": thread is not None,
                    "bytes": len(body.encode()) if is_text else len(body) // 2,
                },
            )
        )
        return True
