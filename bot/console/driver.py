"""Plays Slack's part toward the bot: signed slash commands and button clicks over real HTTP.

The demo console and the tests share this driver, so both go through the bot's real dispatch
path (signature check, Bolt, listeners). Requests are built as Slack builds them: a slash
command is a form body; a click is a form body ``payload=<JSON block_actions>``; both are
signed ``v0`` with HMAC-SHA256 over ``v0:{timestamp}:{body}``. Response URLs come from the
:class:`~bot.console.standin.SlackStandIn`, so what the bot answers through them is recorded too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from bot.console.records import Button, Message
from bot.console.standin import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, SlackStandIn

__all__ = ["SlackDriver"]

FORM = "application/x-www-form-urlencoded"
#: The deprecated verification token Slack still sends in payloads; the bot must not rely on it.
VERIFICATION_TOKEN = "tsbot-demo-verification-token"  # noqa: S105 - a public demo value, not a secret


class SlackDriver:
    """Sends what Slack would send to ``events_url`` (the bot's ``/slack/events``)."""

    def __init__(
        self,
        events_url: str,
        signing_secret: str,
        standin: SlackStandIn,
        *,
        team_id: str = "T0TSBOT",
        timeout: float = 10.0,
    ) -> None:
        self.events_url = events_url
        self.standin = standin
        self.team_id = team_id
        self._secret = signing_secret.encode()
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- signing ------------------------------------------------------------------------------

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Headers Slack sends with ``body``: ``X-Slack-Signature``, ``X-Slack-Request-Timestamp``,
        ``Content-Type`` (form). ``timestamp`` defaults to now (pass an old one for stale tests).
        """
        ts = int(time.time()) if timestamp is None else int(timestamp)
        base = b"v0:" + str(ts).encode() + b":" + body
        digest = hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        return {
            "X-Slack-Signature": f"v0={digest}",
            "X-Slack-Request-Timestamp": str(ts),
            "Content-Type": FORM,
        }

    def post_raw(self, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """Post ``body`` with exactly ``headers`` (for forged, stale or malformed requests)."""
        return self._http.post(self.events_url, content=body, headers=dict(headers))

    def _post_signed(self, body: bytes) -> httpx.Response:
        return self.post_raw(body, self.sign(body))

    # -- slash commands -----------------------------------------------------------------------

    def command(self, text: str, *, user: str, channel: str, command: str = "/ts") -> httpx.Response:
        """Run ``{command} {text}`` as ``user`` in ``channel``; returns the bot's HTTP answer."""
        self._ensure_present(user, channel)
        form = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel,
            "channel_name": self.standin.channel_name(channel),
            "user_id": user,
            "user_name": self.standin.user_name(user),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self.standin.new_response_url(channel, user),
            "trigger_id": self.standin.new_trigger(user),
        }
        response = self._post_signed(urlencode(form).encode())
        if response.status_code == 200 and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                self.standin.record_command_reply(form["response_url"], body)
        return response

    # -- buttons ------------------------------------------------------------------------------

    def find_button(
        self, label: str, *, user: str, channel: str | None = None, ts: str | None = None
    ) -> tuple[Message, Button]:
        """The newest message ``user`` sees (optionally in ``channel`` / at ``ts``) with a button
        labelled ``label`` (case-insensitive), and that button.

        "Newest" is by latest activity, so a card updated after an older one wins. Raises
        ``LookupError`` listing the buttons there are when none matches.
        """
        wanted = label.strip().casefold()
        candidates = [
            m for m in self.standin.messages(channel) if m.visible_to(user) and (ts is None or m.ts == ts)
        ]
        available: list[str] = []
        for message in sorted(candidates, key=lambda m: m.seq, reverse=True):
            for button in message.buttons():
                if button.text.strip().casefold() == wanted:
                    return message, button
                available.append(f"{button.text!r} in #{message.channel} {message.ts}")
        where = f" in #{channel}" if channel else ""
        listing = "; ".join(available) if available else "none"
        raise LookupError(f"no button {label!r} visible to {user}{where}; buttons available: {listing}")

    def click(
        self, label: str, *, user: str, channel: str | None = None, ts: str | None = None
    ) -> httpx.Response:
        """Press the newest button labelled ``label`` that ``user`` can see; returns the bot's answer.

        Builds the ``block_actions`` payload Slack sends, with a fresh ``response_url`` bound to
        the clicked message. Raises ``LookupError`` (listing the available buttons) if none matches.
        """
        message, button = self.find_button(label, user=user, channel=channel, ts=ts)
        payload = self.block_actions_payload(message, button, user=user)
        return self._post_signed(urlencode({"payload": json.dumps(payload)}).encode())

    def choose(
        self, option: str, *, user: str, channel: str | None = None, ts: str | None = None
    ) -> httpx.Response:
        """Pick ``option`` (its text) in the newest menu (``static_select``) ``user`` can see that
        offers it; returns the bot's answer. Raises ``LookupError`` if no menu offers it."""
        candidates = [
            m for m in self.standin.messages(channel) if m.visible_to(user) and (ts is None or m.ts == ts)
        ]
        for message in sorted(candidates, key=lambda m: m.seq, reverse=True):
            for block in message.blocks:
                element = block.get("accessory") if block.get("type") == "section" else None
                elements = [element] if isinstance(element, dict) else list(block.get("elements") or [])
                for item in elements:
                    if not isinstance(item, dict) or item.get("type") != "static_select":
                        continue
                    for choice in item.get("options") or []:
                        if choice["text"]["text"] == option:
                            action = {
                                "type": "static_select",
                                "action_id": item["action_id"],
                                "block_id": block.get("block_id", ""),
                                "selected_option": choice,
                                "placeholder": item.get("placeholder"),
                                "action_ts": self._action_ts(),
                            }
                            payload = self._block_actions(message, action, user=user)
                            return self._post_signed(urlencode({"payload": json.dumps(payload)}).encode())
        raise LookupError(f"no menu offering {option!r} visible to {user}")

    def block_actions_payload(self, message: Message, button: Button, *, user: str) -> dict[str, Any]:
        """The ``block_actions`` payload Slack would send when ``user`` presses ``button``."""
        return self._block_actions(message, button.payload_action(self._action_ts()), user=user)

    def _block_actions(self, message: Message, action: dict[str, Any], *, user: str) -> dict[str, Any]:
        self._ensure_present(user, message.channel)
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": message.ephemeral,
        }
        if message.thread_ts is not None:
            container["thread_ts"] = message.thread_ts
        user_name = self.standin.user_name(user)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": self.team_id},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "container": container,
            "trigger_id": self.standin.new_trigger(user),
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": self.standin.channel_name(message.channel)},
            "state": {"values": {}},
            "response_url": self.standin.new_response_url(message.channel, user, message_ts=message.ts),
            "actions": [action],
        }
        if not message.ephemeral:
            body: dict[str, Any] = {
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "team": self.team_id,
                "ts": message.ts,
                "text": message.text,
                "blocks": [dict(b) for b in message.blocks],
            }
            if message.thread_ts is not None:
                body["thread_ts"] = message.thread_ts
            payload["message"] = body
        return payload

    def submit_modal(self, *, user: str, values: Mapping[str, str] | None = None) -> httpx.Response:
        """Submit the newest modal open for ``user``, its inputs filled from ``values`` (block_id ->
        text; an input not given keeps its initial value), as Slack's ``view_submission``. The modal
        closes unless the bot answers ``response_action: errors``. Raises ``LookupError`` if none is open."""
        modals = self.standin.open_modals(user)
        if not modals:
            raise LookupError(f"no modal is open for {user}")
        view = modals[-1]
        given = dict(values or {})
        state: dict[str, Any] = {}
        for block in view.get("blocks", []):
            element = block.get("element") if block.get("type") == "input" else None
            if not isinstance(element, Mapping):
                continue
            block_id = str(block.get("block_id", ""))
            value = given.get(block_id, element.get("initial_value"))
            state[block_id] = {
                str(element.get("action_id", "")): {"type": element.get("type"), "value": value}
            }
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "user": {"id": user, "username": self.standin.user_name(user), "team_id": self.team_id},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self.standin.new_trigger(user),
            "view": {
                "id": view["id"],
                "type": "modal",
                "team_id": self.team_id,
                "callback_id": view.get("callback_id", ""),
                "private_metadata": view.get("private_metadata", ""),
                "title": view.get("title"),
                "blocks": view.get("blocks", []),
                "state": {"values": state},
                "app_id": APP_ID,
            },
        }
        response = self._post_signed(urlencode({"payload": json.dumps(payload)}).encode())
        errors = False
        if response.status_code == 200 and response.content.strip():
            with contextlib.suppress(ValueError):
                errors = response.json().get("response_action") == "errors"
        if response.status_code == 200 and not errors:
            self.standin.close_modal(str(view["id"]))
        return response

    # -- helpers ------------------------------------------------------------------------------

    def _ensure_present(self, user: str, channel: str) -> None:
        """Whoever acts exists in the workspace, and so does the channel they act in."""
        self.standin.add_user(user)
        if not channel.startswith("D"):
            self.standin.add_channel(channel)

    @staticmethod
    def _trigger_id() -> str:
        return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"

    @staticmethod
    def _action_ts() -> str:
        return f"{time.time():.6f}"
