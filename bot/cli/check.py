"""``tsbot check``: is this installation ready? Configuration, Slack, ThingSpace, callbacks.

Each check prints ✓ or ✗ with what to do; the exit code is 1 if anything failed (2 if the
configuration cannot even be read). It logs in to ThingSpace at most once — a failed login is
reported, never retried (five failed logins lock the account) — and only through the login gate in
``TSBOT_DB`` that the running bot uses too: while that gate pauses logins after refused ones, the
check sends no login at all and says why, since when, and how to reopen. ``--reopen-logins`` clears
the pause for every process using the database, then tries the login once.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.config import ENV_VARS, REQUIRED_TO_SERVE, ConfigError, Settings
from bot.thingspace import shapes
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import (
    LoginCoolingDown,
    LoginFailed,
    LoginPause,
    ThingSpaceError,
    ThingSpaceResponseError,
    is_token_path,
)
from storage.login_gate import SqliteLoginGate
from storage.pool import ConnectionPool

__all__ = ["add_arguments", "run", "run_checks"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-slack", action="store_true", help="do not call Slack auth.test")
    thingspace = parser.add_mutually_exclusive_group()
    thingspace.add_argument("--skip-thingspace", action="store_true", help="do not log in to ThingSpace")
    thingspace.add_argument(
        "--reopen-logins",
        action="store_true",
        help="clear the pause on ThingSpace logins (set after refused logins, shared by every process "
        "using TSBOT_DB), then try the login once: after fixing the credentials at Verizon, or once "
        "Verizon Support has unlocked the user",
    )


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
    }
    if not settings.poll_results:  # only a bot ThingSpace calls back needs these
        needed["TSBOT_CALLBACK_USERNAME"] = (settings.callback_username, "any username; ThingSpace echoes it")
        needed["TSBOT_CALLBACK_PASSWORD"] = (
            settings.callback_password,
            "a long random password; ThingSpace echoes it",
        )
    missing = [name for name, (value, _) in needed.items() if not value]
    for name in missing:
        report.fail(f"{name} is empty", f"set it to {needed[name][1]}")
    if not missing:
        report.ok("all required settings are present")
    if settings.poll_results:
        why = '[thingspace] results = "poll"' if settings.results == "poll" else "TSBOT_PUBLIC_URL is empty"
        report.ok(
            f"results: polled ({why}): no callback listener is needed; the bot asks ThingSpace "
            f'(first after about {int(settings.first_reconcile.total_seconds())} s) — see README "Behind a firewall"'
        )
    else:
        report.ok(f"results: by callback to {settings.public_url.rstrip('/')}/thingspace/callbacks")
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


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h {minutes % 60} min ago"


def _settings_for(cause: ThingSpaceResponseError | None) -> str:
    if cause is not None and is_token_path(cause.path):
        return "THINGSPACE_CLIENT_ID / THINGSPACE_CLIENT_SECRET"
    return "THINGSPACE_USERNAME / THINGSPACE_PASSWORD"


def _refusal(cause: ThingSpaceResponseError | None) -> str:
    if cause is None:
        return ""
    what = "token request" if is_token_path(cause.path) else "login"
    return f" (the {what} was answered {cause.error_code or f'HTTP {cause.status}'}: {cause.message.rstrip('.')})"


def _why(pause: LoginCoolingDown) -> str:
    """Why logins are paused, for an operator (no secrets: ThingSpace's message is masked)."""
    refused = _refusal(pause.cause)
    if pause.pause is LoginPause.COOL_DOWN:
        return (
            f"ThingSpace refused these credentials once{refused}; one more try is allowed in "
            f"{round(pause.seconds_left)} s, and it is the last with these credentials"
        )
    if pause.pause is LoginPause.UNTIL_CHANGED:
        return (
            f"ThingSpace refused these credentials {pause.refusals} times{refused}; no process logs in "
            "again until they change or an operator reopens logins"
        )
    if pause.pause is LoginPause.LOCKED:
        return f"ThingSpace says the API user is locked{refused}"
    if pause.pause is LoginPause.TOO_MANY:
        return (
            f"ThingSpace refused {pause.refusals} logins in a row, with different credentials; "
            "Verizon locks the user after 5"
        )
    return "another process is logging in to ThingSpace with these credentials right now"


def _fix(pause: LoginCoolingDown | None, cause: ThingSpaceResponseError | None) -> str:
    """What to do next, after a refusal or while paused."""
    names = _settings_for(cause)
    reopen = "`tsbot check --reopen-logins`"
    if pause is None or pause.pause in (LoginPause.COOL_DOWN, LoginPause.UNTIL_CHANGED):
        return (
            f"fix {names}: logins reopen by themselves as soon as they change. If they are right after "
            f"all (e.g. corrected at Verizon), run {reopen} to clear the pause and try once"
        )
    if pause.pause is LoginPause.LOCKED:
        return f"ask Verizon Support to unlock the ThingSpace API user, then run {reopen}"
    if pause.pause is LoginPause.TOO_MANY:
        return (
            "confirm the username and password in the ThingSpace portal and set them, then run "
            f"{reopen} (it tries once; one more failure may lock the user)"
        )
    return "run `tsbot check` again in a few seconds"


def _report_pause(settings: Settings, report: Report, pause: LoginCoolingDown) -> None:
    lines = [f"ThingSpace logins are paused: {_why(pause)}"]
    if pause.since and pause.pause is not LoginPause.IN_PROGRESS:
        when = datetime.fromtimestamp(pause.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        by = f"; last refusal met by {pause.refused_by}" if pause.refused_by else ""
        lines.append(f"paused since {when} ({_ago(pause.paused_for or 0.0)}){by}")
    lines.append(f"no login was tried (the pause is shared by every process using {settings.db_path})")
    report.fail("\n    ".join(lines), _fix(pause, pause.cause))


def _open_gate(settings: Settings, report: Report) -> ConnectionPool | None:
    try:
        return ConnectionPool(settings.db_path, synchronous=settings.db_synchronous)
    except (sqlite3.Error, OSError, ValueError) as exc:
        report.fail(
            f"the database {settings.db_path} cannot be opened ({type(exc).__name__}: {exc}); "
            "the ThingSpace login was not tried",
            "fix TSBOT_DB: it also holds the login gate that keeps a bad password from locking the "
            "ThingSpace user",
        )
        return None


def _thingspace(settings: Settings, report: Report, *, reopen_logins: bool = False) -> None:
    pool = _open_gate(settings, report)
    if pool is None:
        return
    try:
        try:
            client = ThingSpaceClient(
                **settings.thingspace_login(), login_gate=SqliteLoginGate(pool.get, program="tsbot check")
            )
        except ThingSpaceError as exc:
            report.fail(f"ThingSpace client: {exc.user_message}", "fix the THINGSPACE_* settings")
            return
        with client:
            _thingspace_login(settings, report, client, reopen_logins=reopen_logins)
    finally:
        pool.close()


def _thingspace_login(
    settings: Settings, report: Report, client: ThingSpaceClient, *, reopen_logins: bool
) -> None:
    pause = client.auth.login_pause()
    if reopen_logins:
        if pause is not None:
            report.warn(f"reopening ThingSpace logins, which were paused: {_why(pause)}")
        client.auth.reset()
        report.warn(
            f"ThingSpace logins reopened for every process using {settings.db_path}; trying the login once"
        )
    elif pause is not None:
        _report_pause(settings, report, pause)
        return
    try:
        account = client.account_info()
    except LoginCoolingDown as exc:
        _report_pause(settings, report, exc)
        return
    except LoginFailed as exc:
        after = client.auth.login_pause()
        paused = (
            f"\n    the login was tried once and refused; logins are now paused for every process using "
            f"{settings.db_path}: {_why(after)}"
            if after is not None
            else ""
        )
        report.fail(
            f"ThingSpace login or account lookup failed: {exc.user_message}{paused}", _fix(after, exc)
        )
        return
    except ThingSpaceError as exc:
        report.fail(
            f"ThingSpace login or account lookup failed: {exc.user_message}",
            "check THINGSPACE_BASE_URL, THINGSPACE_ACCOUNT and the network (a login that got no answer "
            "is not counted as refused)",
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
    if settings.poll_results:
        return  # nothing is called back: the listeners are not this bot's concern
    expected = settings.public_url.rstrip("/") + "/thingspace/callbacks" if settings.public_url else ""
    missing = [s for s in shapes.CONSUMED_SERVICES if s not in listeners or listeners[s].url != expected]
    if missing:
        report.fail(
            f"callbacks not registered to this bot: {', '.join(missing)}",
            "run `tsbot callbacks register`",
        )
    else:
        report.ok("callbacks: every consumed service points at this bot")


#: the settings a ThingSpace login needs
_THINGSPACE_LOGIN = tuple(v for v in REQUIRED_TO_SERVE if v.startswith("THINGSPACE_"))


def _kept_callbacks(settings: Settings, report: Report) -> None:
    """Warn when authenticated callbacks the bot could not read are waiting (read-only; a
    database that does not exist yet, or predates the table, has none)."""
    path = Path(settings.db_path)
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            waiting = int(
                conn.execute("SELECT count(*) FROM unknown_callbacks WHERE state = 'waiting'").fetchone()[0]
            )
        finally:
            conn.close()
    except sqlite3.Error:
        return
    if waiting:
        report.warn(
            f"{waiting} authenticated ThingSpace callback(s) could not be read and are kept: "
            "see `tsbot callbacks unknown`, then `tsbot callbacks reprocess --all` after an upgrade"
        )


def run_checks(
    settings: Settings,
    out: TextIO,
    *,
    slack: bool = True,
    thingspace: bool = True,
    reopen_logins: bool = False,
) -> int:
    report = Report(out)
    report.ok(f"configuration read{f' (file {settings.config_path})' if settings.config_path else ''}")
    _required(settings, report)
    _kept_callbacks(settings, report)
    steps: list[Callable[[Settings, Report], None]] = []
    # No remote call with a setting missing (auth.test with an empty token, a login without a
    # password), and so no database created for the login gate either
    if slack and not settings.slack_bot_token:
        report.warn("Slack auth.test not tried: SLACK_BOT_TOKEN is empty")
    elif slack:
        steps.append(_slack)
    missing = [var for var in _THINGSPACE_LOGIN if not getattr(settings, ENV_VARS[var][0])]
    if thingspace and missing:
        report.warn(f"ThingSpace login not tried (no database opened either): {', '.join(missing)} empty")
    elif thingspace:
        steps.append(lambda s, r: _thingspace(s, r, reopen_logins=reopen_logins))
    for step in steps:
        step(settings, report)
    out.write("All checks passed.\n" if not report.failed else f"{report.failed} check(s) failed.\n")
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"✗ configuration: {exc}", file=sys.stderr)
        return 2
    return run_checks(
        settings,
        sys.stdout,
        slack=not args.skip_slack,
        thingspace=not args.skip_thingspace,
        reopen_logins=args.reopen_logins,
    )
