"""Requests from the installed workspace only.

A request signed with the app's signing secret may still come from another workspace (the app
installed there too, or a click relayed from a shared channel of another organisation). Slack
asks apps to check ``team_id`` as well as the signature ("Verifying requests from Slack",
docs.slack.dev). The workspace is ``SLACK_TEAM_ID`` when set, else what ``auth.test`` answers for
the bot token, asked once at start off the request path (and again every minute until Slack
answers). Until it is known, requests are judged by their signature alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

__all__ = ["WorkspaceGuard", "team_of"]

log = logging.getLogger(__name__)


def team_of(body: Mapping[str, Any]) -> str:
    """The workspace a Slack request names: ``team_id`` (commands, events), ``team.id`` or the
    user's ``team_id`` (interactions); ``""`` when it names none."""
    team = body.get("team_id")
    if isinstance(team, str) and team:
        return team
    nested = body.get("team")
    if isinstance(nested, Mapping) and isinstance(nested.get("id"), str) and nested["id"]:
        return str(nested["id"])
    user = body.get("user")
    if isinstance(user, Mapping) and isinstance(user.get("team_id"), str):
        return str(user["team_id"])
    return ""


class WorkspaceGuard:
    """Which workspace requests must come from; :meth:`learn` asks Slack when it is not set."""

    def __init__(self, team_id: str = "") -> None:
        self._team = team_id.strip()
        self._stop = threading.Event()

    @property
    def team(self) -> str:
        return self._team

    def allows(self, body: Mapping[str, Any]) -> bool:
        """False for a request that names another workspace than the installed one."""
        if not self._team:
            return True
        team = team_of(body)
        return not team or team == self._team

    def learn(self, client: WebClient, *, retry_every: float = 60.0) -> threading.Thread | None:
        """Ask ``auth.test`` for the workspace in a background thread (None if already known)."""
        if self._team:
            return None
        thread = threading.Thread(target=self._ask, args=(client, retry_every), name="workspace", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _ask(self, client: WebClient, retry_every: float) -> None:
        while not self._stop.is_set():
            try:
                team = client.auth_test().get("team_id")
            except (SlackApiError, OSError) as exc:
                log.warning(
                    "could not learn the Slack workspace from auth.test (%s); retrying", type(exc).__name__
                )
            else:
                if isinstance(team, str) and team:
                    self._team = team
                    log.info("requests are accepted from Slack workspace %s only", team)
                    return
            self._stop.wait(retry_every)
