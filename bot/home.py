"""The App Home tab: the user's recent actions, what their role lets them do, and sections other
parts contribute (open alerts for watched devices, their watches).

Published with ``views.publish`` when the user opens the tab (``app_home_opened``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks
from commands.context import Deps
from commands.help import role_line
from commands.policy import verbs_for
from commands.router import user_role
from storage.audit import AuditLog
from storage.jobs import Job

log = logging.getLogger(__name__)

__all__ = ["HOME_SECTIONS", "home_view", "publish_home"]

#: Extra sections: ``fn(deps, user) -> list of blocks`` (e.g. alerts and watches).
HOME_SECTIONS: list[Callable[[Deps, str], list[dict[str, Any]]]] = []

RECENT = 10


def home_view(deps: Deps, user: str) -> dict[str, Any]:
    role = user_role(deps, user, "")
    body: list[dict[str, Any]] = [blocks.header("ThingSpace chat-ops"), blocks.section(role_line(role))]
    allowed = verbs_for(role)
    body.append(blocks.section("*What you can run*\n" + "\n".join(f"• `/ts {v.usage}`" for v in allowed)))
    for section in HOME_SECTIONS:
        body.extend(section(deps, user))
    rows = AuditLog(deps.db()).query(actor=user, limit=RECENT)
    body.append(blocks.divider())
    if rows:
        lines = []
        for row in rows:
            when = row.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
            targets = ", ".join(row.targets[:2]) + (
                f" +{len(row.targets) - 2}" if len(row.targets) > 2 else ""
            )
            lines.append(f"`{when}` *{row.verb}* {targets} → {row.outcome}")
        body.append(blocks.section("*Your recent actions*\n" + "\n".join(lines)))
    else:
        body.append(blocks.section("*Your recent actions*\nNone yet. Try `/ts help` in a channel."))
    return {"type": "home", "blocks": body[:100]}


def publish_home(deps: Deps, job: Job) -> None:
    """Worker job: publish the App Home of ``job.payload["user"]`` (queued by ``app_home_opened``)."""
    settings = deps.settings
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=[])
    user = str(job.payload["user"])
    try:
        client.views_publish(user_id=user, view=home_view(deps, user))
    except SlackApiError as exc:
        log.warning("could not publish the App Home: %s", exc.response.get("error"))
