"""``tsbot check``: is this installation ready? Configuration, Slack, ThingSpace, callbacks.

Each check prints ✓ or ✗ with what to do; the exit code is 1 if anything failed (2 if the
configuration cannot even be read). It logs in to ThingSpace once — a failed login is reported,
never retried (five failed logins lock the account).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import ConfigError, Settings
from bot.thingspace import shapes
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError

__all__ = ["add_arguments", "run", "run_checks"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-slack", action="store_true", help="do not call Slack auth.test")
    parser.add_argument("--skip-thingspace", action="store_true", help="do not log in to ThingSpace")


class Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0

    def ok(self, text: str) -> None:
        self.out.write(f"✓ {text}\n")

    def fail(self, text: str, fix: str) -> None:
        self.failed += 1
        self.out.write(f"✗ {text}\n    → {fix}\n")

    def warn(self, text: str) -> None:
        self.out.write(f"! {text}\n")


def _required(settings: Settings, report: Report) -> None:
    needed = {
        "SLACK_BOT_TOKEN": (
            settings.slack_bot_token,
            "the Bot User OAuth Token (xoxb-…) from the app's OAuth page",
        ),
        "SLACK_SIGNING_SECRET": (settings.slack_signing_secret, "Basic Information → Signing Secret"),
        "THINGSPACE_CLIENT_ID": (settings.thingspace_client_id, "the ThingSpace API key (App Key)"),
        "THINGSPACE_CLIENT_SECRET": (settings.thingspace_client_secret, "the ThingSpace API secret"),
        "THINGSPACE_USERNAME": (settings.thingspace_username, "the UWS (Connectivity Management) username"),
        "THINGSPACE_PASSWORD": (settings.thingspace_password, "the UWS password"),
        "THINGSPACE_ACCOUNT": (settings.thingspace_account, "the billing account, e.g. 0000123456-00001"),
        "TSBOT_PUBLIC_URL": (settings.public_url, "the https:// address ThingSpace calls back"),
        "TSBOT_CALLBACK_USERNAME": (settings.callback_username, "any username; ThingSpace echoes it"),
        "TSBOT_CALLBACK_PASSWORD": (
            settings.callback_password,
            "a long random password; ThingSpace echoes it",
        ),
    }
    missing = [name for name, (value, _) in needed.items() if not value]
    for name in missing:
        report.fail(f"{name} is empty", f"set it to {needed[name][1]}")
    if not missing:
        report.ok("all required settings are present")
    if settings.public_url and not settings.public_url.startswith("https://"):
        report.warn("TSBOT_PUBLIC_URL is not https://; ThingSpace and Slack need TLS in production")
    if not settings.grants.admin and not settings.grants.operator:
        report.warn("no admin or operator is granted in the configuration file: nobody can suspend or resume")


def _slack(settings: Settings, report: Report) -> None:
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=[])
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        report.fail(f"Slack auth.test failed: {exc.response.get('error')}", "check SLACK_BOT_TOKEN (xoxb-…)")
        return
    except OSError as exc:
        report.fail(
            f"Slack could not be reached at {settings.slack_api_url}: {type(exc).__name__}",
            "check the network and SLACK_API_URL",
        )
        return
    report.ok(f"Slack: authenticated as {answer.get('user')} in {answer.get('team')}")


def _thingspace(settings: Settings, report: Report) -> None:
    try:
        client = ThingSpaceClient(
            settings.thingspace_base_url,
            client_id=settings.thingspace_client_id,
            client_secret=settings.thingspace_client_secret,
            username=settings.thingspace_username,
            password=settings.thingspace_password,
            account=settings.thingspace_account,
        )
    except ThingSpaceError as exc:
        report.fail(f"ThingSpace client: {exc.user_message}", "fix the THINGSPACE_* settings")
        return
    with client:
        try:
            account = client.account_info()
        except ThingSpaceError as exc:
            report.fail(
                f"ThingSpace login or account lookup failed: {exc.user_message}",
                "check THINGSPACE_CLIENT_ID/SECRET, USERNAME/PASSWORD and ACCOUNT; the login was tried once "
                "(five failures lock the account)",
            )
            return
        report.ok(f"ThingSpace: logged in; account {account.name or settings.thingspace_account}")
        try:
            listeners = {item.service: item for item in client.list_callbacks()}
        except ThingSpaceError as exc:
            report.fail(
                f"could not list callback listeners: {exc.user_message}", "see the ThingSpace error above"
            )
            return
        expected = settings.public_url.rstrip("/") + "/thingspace/callbacks" if settings.public_url else ""
        missing = [s for s in shapes.CONSUMED_SERVICES if s not in listeners or listeners[s].url != expected]
        if missing:
            report.fail(
                f"callbacks not registered to this bot: {', '.join(missing)}",
                "run `tsbot callbacks register`",
            )
        else:
            report.ok("callbacks: every consumed service points at this bot")


def run_checks(settings: Settings, out: TextIO, *, slack: bool = True, thingspace: bool = True) -> int:
    report = Report(out)
    report.ok(f"configuration read{f' (file {settings.config_path})' if settings.config_path else ''}")
    _required(settings, report)
    steps: list[Callable[[Settings, Report], None]] = []
    if slack:
        steps.append(_slack)
    if thingspace:
        steps.append(_thingspace)
    for step in steps:
        step(settings, report)
    out.write("All checks passed.\n" if not report.failed else f"{report.failed} check(s) failed.\n")
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"✗ configuration: {exc}", file=sys.stderr)
        return 2
    return run_checks(settings, sys.stdout, slack=not args.skip_slack, thingspace=not args.skip_thingspace)
