"""The App Home tab: what the user's role lets them do, their watches, open alerts on the devices
they watch, and their recent actions.

Published with ``views.publish`` when the user opens the tab (``app_home_opened``).
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core.durations import format_duration
from bot.render import blocks, times
from commands.context import Deps
from commands.help import role_line
from commands.policy import user_role, verbs_for
from storage import alerts, watches
from storage.audit.log import AuditLog
from storage.jobs import Job

log = logging.getLogger(__name__)

__all__ = ["home_view", "publish_home"]

RECENT = 10
WATCHES_SHOWN = 10
ALERTS_SHOWN = 10


def home_view(deps: Deps, user: str) -> dict[str, Any]:
    role = user_role(deps, user, "")
    body: list[dict[str, Any]] = [blocks.header("ThingSpace chat-ops"), blocks.section(role_line(role))]
    allowed = verbs_for(deps.verbs, role)
    body.append(blocks.section("*What you can run*\n" + "\n".join(f"• `/ts {v.usage}`" for v in allowed)))
    body.extend(_watch_sections(deps, user))
    rows = AuditLog(deps.db()).query(actor=user, limit=RECENT)
    body.append(blocks.divider())
    if rows:
        lines = []
        for row in rows:
            when = times.at(row.at, UTC, now=deps.clock())
            targets = ", ".join(row.targets[:2]) + (
                f" +{len(row.targets) - 2}" if len(row.targets) > 2 else ""
            )
            # targets are what was typed (an invalid command's included): shown literally
            lines.append(f"{when} *{row.verb}* {blocks.escape(targets)} → {row.outcome}")
        body.append(blocks.section("*Your recent actions*\n" + "\n".join(lines)))
    else:
        body.append(blocks.section("*Your recent actions*\nNone yet. Try `/ts help` in a channel."))
    return {"type": "home", "blocks": body[:100]}


def _watch_sections(deps: Deps, user: str) -> list[dict[str, Any]]:
    """The user's watches and the open alerts on the devices they watch."""
    db = deps.db()
    mine = watches.watches_by(db, user, limit=WATCHES_SHOWN + 1)
    out: list[dict[str, Any]] = [blocks.divider()]
    if not mine:
        out.append(
            blocks.section(
                "*Your watches*\nNone. `/ts watch TARGETS` alerts a channel when devices stay unreachable."
            )
        )
    else:
        lines = []
        for w in mine[:WATCHES_SHOWN]:
            rule = (
                f"wakes every {format_duration(timedelta(seconds=w.wake_every))}"
                if w.wake_every
                else (f"alert after {format_duration(timedelta(seconds=w.alert_after or 0))}")
            )
            lines.append(f"• `{w.device}` → <#{w.channel}> · {rule}")
        more = "\n…and more; `/ts watches` lists them all" if len(mine) > WATCHES_SHOWN else ""
        out.append(blocks.section("*Your watches*\n" + "\n".join(lines) + more))
    watched = [w.device for w in mine]
    open_by_device = alerts.open_for_devices(db, watched) if watched else {}
    firing = [a for found in open_by_device.values() for a in found]
    if firing:
        lines = [
            f"• `{a.device}` {a.condition} since {times.at(a.down_since, UTC, now=deps.clock())} · {a.state}"
            for a in firing[:ALERTS_SHOWN]
        ]
        out.append(
            blocks.section(f"*Open alerts on your watched devices ({len(firing)})*\n" + "\n".join(lines))
        )
    else:
        total = alerts.count_open(db)
        out.append(
            blocks.section(f"*Open alerts on your watched devices*\nNone. ({total:,} open in the workspace.)")
        )
    return out


def publish_home(deps: Deps, job: Job) -> None:
    """Worker job: publish the App Home of ``job.payload["user"]`` (queued by ``app_home_opened``)."""
    if deps.slack is None:
        raise RuntimeError("publishing the App Home needs a Slack client")
    user = str(job.payload["user"])
    try:
        deps.slack.views_publish(user_id=user, view=home_view(deps, user))
    except SlackApiError as exc:
        log.warning("could not publish the App Home: %s", exc.response.get("error"))
