"""``tsbot manifest``: the Slack app manifest to paste into "Create an app → From a manifest".

The manifest follows Slack's schema (``_metadata.major_version`` 1): one slash command ``/ts``,
App Home with the Home tab only, and interactivity, events and the command all pointed at
``{public}/slack/events``, where ``{public}`` is ``--public-url`` or ``TSBOT_PUBLIC_URL``. With
``--socket-mode`` Slack delivers over a WebSocket instead and no URL is needed.

Bot scopes, and why each is there (nothing else is asked for):

``commands``
    the ``/ts`` slash command.
``chat:write``
    ``chat.postMessage`` / ``chat.update`` / ``chat.postEphemeral``: results, progress
    messages, alert cards, ops notices.
``usergroups:read``
    ``usergroups.users.list``: grants may name user groups (``S…``); membership is looked up to
    decide a user's role (it fails closed when the lookup fails).
``files:write``
    ``files.getUploadURLExternal`` / ``files.completeUploadExternal``: the ``usage`` chart in its
    thread (without it the bot posts the day-by-day table instead).
``channels:history``, ``groups:history``
    ``conversations.history`` / ``.replies``, only after a crash or a lost answer while a post
    was in flight: the relay looks for its own message by the mark in its ``metadata`` and
    updates it instead of posting a second copy. Without them the second copy is posted,
    labelled ``ref …``.

Deliberately left out: ``chat:write.public`` (the bot posts only in channels it was invited to —
invite it to the alert and ops channels), ``users:read`` (roles are keyed by IDs, and
``should_escape`` makes Slack send mentions and channels as ``<@U…>`` / ``<#C…|name>``, so no name
lookups are needed), ``im:*`` (the Messages tab is off). ``views.publish`` (App Home),
``auth.test`` and the ``app_home_opened`` event need no scope.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from bot.core.config import ConfigError, Settings
from commands.registry import VERBS

__all__ = [
    "BOT_EVENTS",
    "BOT_SCOPES",
    "DEFAULT_NAME",
    "EVENTS_PATH",
    "ManifestError",
    "add_arguments",
    "build_manifest",
    "dump_manifest",
    "normalize_public_url",
    "run",
]

DEFAULT_NAME: Final = "ThingSpace Ops"
COMMAND: Final = "/ts"
EVENTS_PATH: Final = "/slack/events"
#: scope -> why the bot needs it (shown as a comment in the YAML output)
BOT_SCOPES: Final = {
    "commands": "the /ts slash command",
    "chat:write": "post and update results, progress, alert cards and ops notices",
    "usergroups:read": "resolve grants given to user groups (usergroups.users.list)",
    "files:write": "upload the usage chart into its thread (files.getUploadURLExternal)",
    "channels:history": "after a crash, find the bot's own post by its metadata instead of posting twice",
    "groups:history": "the same in private channels",
}
BOT_EVENTS: Final = ("app_home_opened",)  # render the Home tab; needs no scope

DESCRIPTION: Final = "Diagnose, suspend, resume, SMS and watch Verizon ThingSpace IoT lines from Slack."
LONG_DESCRIPTION: Final = (
    "tsbot lets the team that runs a fleet of cellular IoT devices on Verizon ThingSpace "
    "troubleshoot and act on lines without leaving Slack. /ts diag gives a plain-English verdict "
    "and a next step instead of raw fields; suspend and resume ask for confirmation (and a second "
    "approver for large batches) and report per-device results; watch raises one alert card when "
    "a device stops being reachable for longer than its sleep cycle, with Snooze, Acknowledge and "
    "Diagnose buttons. Every action is recorded in a tamper-evident audit log."
)
#: The slash command's hint in Slack's composer: every verb of the verb table, in its order
USAGE_HINT: Final = " | ".join(VERBS)
BACKGROUND_COLOR: Final = "#1d3a5f"
NAME_MAX: Final = 35  # display_information.name, per Slack's manifest schema


class ManifestError(ValueError):
    """The options cannot make a valid manifest; the message says what to change."""


def normalize_public_url(url: str) -> str:
    """``https://bot.example.com/`` -> ``https://bot.example.com``; reject what Slack would.

    Slack calls request URLs over HTTPS; plain ``http`` is accepted only for ``localhost`` and
    ``127.0.0.1`` (local stand-ins). A path prefix (behind a reverse proxy) is kept.
    """
    cleaned = url.strip()
    parts = urlsplit(cleaned)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ManifestError(f"public URL {cleaned!r} must look like https://bot.example.com")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1"):
        raise ManifestError(
            f"public URL {cleaned!r} must use https: Slack only calls request URLs over HTTPS "
            "(http is accepted for localhost only)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ManifestError(f"public URL {cleaned!r} must not carry a query, fragment or credentials")
    return cleaned.rstrip("/")


def build_manifest(
    public_url: str | None, *, name: str = DEFAULT_NAME, socket_mode: bool = False
) -> dict[str, Any]:
    """The manifest as a dict. Raises :class:`ManifestError` for a bad name or URL."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise ManifestError(f"app name must be 1 to {NAME_MAX} characters, not {len(name)}: {name!r}")
    events_url: str | None = None
    if not socket_mode:
        if not public_url:
            raise ManifestError(
                "no public URL: pass --public-url https://bot.example.com or set TSBOT_PUBLIC_URL "
                "(or use --socket-mode, which needs none)"
            )
        events_url = normalize_public_url(public_url) + EVENTS_PATH

    command: dict[str, Any] = {"command": COMMAND}
    if events_url is not None:
        command["url"] = events_url
    command |= {
        "description": "ThingSpace IoT lines: status, diagnostics, suspend/resume, SMS, watches",
        "usage_hint": USAGE_HINT,
        # mentions and channels arrive as <@U…> / <#C…|name>: IDs, without users:read
        "should_escape": True,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if events_url is not None:
        interactivity["request_url"] = events_url
        events = {"request_url": events_url, **events}

    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": DESCRIPTION,
            "long_description": LONG_DESCRIPTION,
            "background_color": BACKGROUND_COLOR,
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                # read-only: the bot's private notices (results it could not post in a channel)
                # show in its Messages tab; the bot reads no messages, so people cannot write back
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def _yaml_header() -> str:
    width = max(len(s) for s in BOT_SCOPES)
    lines = [
        "# Slack app manifest for tsbot: api.slack.com/apps -> Create New App -> From a manifest.",
        "# Bot scopes requested, and why:",
        *(f"#   {scope:<{width}}  {why}" for scope, why in BOT_SCOPES.items()),
    ]
    return "\n".join(lines) + "\n"


def dump_manifest(manifest: dict[str, Any], fmt: str = "yaml") -> str:
    """The manifest as YAML (with a comment on the scopes) or as JSON."""
    if fmt == "json":
        return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        body = yaml.safe_dump(
            manifest, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
        )
        return _yaml_header() + body
    raise ManifestError(f"format {fmt!r} is not yaml or json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="output format (default: yaml)"
    )
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="the bot's public HTTPS base URL (default: TSBOT_PUBLIC_URL); Slack calls URL/slack/events",
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"app and bot user display name, at most {NAME_MAX} characters (default: {DEFAULT_NAME!r})",
    )
    parser.add_argument(
        "--socket-mode",
        action="store_true",
        help="Slack delivers over Socket Mode (tsbot serve --socket-mode): no request URLs needed",
    )


def run(args: argparse.Namespace) -> int:
    """Print the manifest; exit 2 with a one-line reason when it cannot be built."""
    public_url: str | None = args.public_url
    try:
        if public_url is None and not args.socket_mode:
            public_url = Settings.from_env(os.environ).public_url
        manifest = build_manifest(public_url, name=args.name, socket_mode=args.socket_mode)
    except (ManifestError, ConfigError) as exc:
        print(f"tsbot manifest: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(dump_manifest(manifest, args.format))
    return 0
