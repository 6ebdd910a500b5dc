"""Settings: the only interpreter of the environment and of the TOML configuration file.

:meth:`Settings.from_env` turns ``os.environ`` (and the file named by ``TSBOT_CONFIG``) into one
frozen object; everything else receives it. Every field is documented in the README's
configuration reference, which a test checks.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core.durations import MAX_DURATION, parse_duration

__all__ = ["ENV_VARS", "ConfigError", "Grants", "Settings", "ThingSpaceLogin"]

ROLES = ("viewer", "operator", "admin")

#: Environment variable -> (Settings field, default). Each is documented in the README's
#: "Configuration reference"; the names are part of the bot's contract with its operators.
ENV_VARS: dict[str, tuple[str, str]] = {
    "SLACK_BOT_TOKEN": ("slack_bot_token", ""),
    "SLACK_SIGNING_SECRET": ("slack_signing_secret", ""),
    "SLACK_APP_TOKEN": ("slack_app_token", ""),
    "SLACK_API_URL": ("slack_api_url", "https://slack.com/api/"),
    "SLACK_TEAM_ID": ("slack_team_id", ""),
    "THINGSPACE_BASE_URL": ("thingspace_base_url", "https://thingspace.verizon.com/api"),
    "THINGSPACE_CLIENT_ID": ("thingspace_client_id", ""),
    "THINGSPACE_CLIENT_SECRET": ("thingspace_client_secret", ""),
    "THINGSPACE_USERNAME": ("thingspace_username", ""),
    "THINGSPACE_PASSWORD": ("thingspace_password", ""),
    "THINGSPACE_ACCOUNT": ("thingspace_account", ""),
    "TSBOT_PUBLIC_URL": ("public_url", ""),
    "TSBOT_CALLBACK_USERNAME": ("callback_username", ""),
    "TSBOT_CALLBACK_PASSWORD": ("callback_password", ""),
    "TSBOT_CALLBACK_PASSWORD_PREVIOUS": ("callback_password_previous", ""),
    "TSBOT_CALLBACK_ALLOWED_IPS": ("callback_allowed_ips", ""),
    "TSBOT_TRUSTED_PROXIES": ("trusted_proxies", "127.0.0.1"),
    "TSBOT_DB": ("db_path", "./tsbot.db"),
    "TSBOT_HOST": ("host", "127.0.0.1"),
    "TSBOT_PORT": ("port", "3000"),
    "TSBOT_CONFIG": ("config_path", ""),
    "TSBOT_LOG_LEVEL": ("log_level", "INFO"),
    "TSBOT_DB_SYNCHRONOUS": ("db_synchronous", "FULL"),
}

#: Secrets that ``tsbot serve`` refuses to start without (``tsbot demo`` supplies its own).
REQUIRED_TO_SERVE = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "THINGSPACE_CLIENT_ID",
    "THINGSPACE_CLIENT_SECRET",
    "THINGSPACE_USERNAME",
    "THINGSPACE_PASSWORD",
    "THINGSPACE_ACCOUNT",
)
#: ``[thingspace] results``: ThingSpace calls back, or the bot asks
RESULT_MODES = ("callbacks", "poll")
#: With results polled, the first question about a new request comes this soon
POLL_FIRST_ASK = timedelta(seconds=5)

#: Log levels ``TSBOT_LOG_LEVEL`` accepts.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """The environment or the configuration file is unusable; the message says what to fix."""


@dataclass(frozen=True)
class Grants:
    """Role -> Slack IDs (users ``U``/``W``, user groups ``S``, channels ``C``/``G``)."""

    viewer: frozenset[str] = frozenset()
    operator: frozenset[str] = frozenset()
    admin: frozenset[str] = frozenset()

    def ids_for(self, role: str) -> frozenset[str]:
        ids: frozenset[str] = getattr(self, role)
        return ids

    def mentions_groups(self) -> bool:
        return any(i.startswith("S") for role in ROLES for i in self.ids_for(role))


class ThingSpaceLogin(TypedDict):
    """The ``ThingSpaceClient`` arguments that come from the settings: ``ThingSpaceClient(**login)``."""

    base_url: str
    client_id: str
    client_secret: str
    username: str
    password: str
    account: str


@dataclass(frozen=True)
class Settings:
    # -- environment (see ENV_VARS) --
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    #: the workspace the app is installed in (T…); empty: learned from Slack's auth.test at start
    slack_team_id: str = ""
    thingspace_base_url: str = "https://thingspace.verizon.com/api"
    thingspace_client_id: str = ""
    thingspace_client_secret: str = ""
    thingspace_username: str = ""
    thingspace_password: str = ""
    thingspace_account: str = ""
    public_url: str = ""
    callback_username: str = ""
    callback_password: str = ""
    #: also accepted while a callback password rotation is under way (empty: none)
    callback_password_previous: str = ""
    #: comma-separated addresses or networks allowed to POST callbacks (empty: any)
    callback_allowed_ips: str = ""
    #: comma-separated proxy addresses whose X-Forwarded-For is believed (uvicorn's forwarded_allow_ips)
    trusted_proxies: str = "127.0.0.1"
    db_path: str = "./tsbot.db"
    host: str = "127.0.0.1"
    port: int = 3000
    config_path: str = ""
    log_level: str = "INFO"
    db_synchronous: str = "FULL"
    # -- configuration file (TOML) --
    grants: Grants = field(default_factory=Grants)
    #: [channels] ops: notices about changes made outside the bot and auto-resume warnings
    ops_channel: str = ""
    #: [channels] alerts: where watch alerts go when `watch` names no channel
    alerts_channel: str = ""
    #: [limits] approval_size: bulk actions above this many devices need a second approver
    approval_size: int = 25
    #: [limits] max_targets: the most devices one command may name
    max_targets: int = 10_000
    #: [limits] request_size: a bulk action is sent to ThingSpace in requests of at most this many
    #: lines (ThingSpace takes at most 10,000 per request)
    request_size: int = 10_000
    #: [limits] confirm_ttl: how long a Confirm button stays valid
    confirm_ttl: timedelta = timedelta(minutes=5)
    #: [limits] approval_ttl: how long an approval card waits for a second person
    approval_ttl: timedelta = timedelta(hours=1)
    #: [limits] approver_mention: a user group (S…) mentioned on approval cards, "" for none
    approver_mention: str = ""
    #: [limits] no_result_after: when an accepted request with no result is said to have none yet
    #: (and, if ThingSpace cannot be asked about it, reported as "no result")
    no_result_after: timedelta = timedelta(minutes=30)
    #: [thingspace] reconcile_after: a request callbacks have not settled by then is asked about
    reconcile_after: timedelta = timedelta(seconds=60)
    #: [thingspace] results: "callbacks" (ThingSpace calls TSBOT_PUBLIC_URL back) or "poll" (the
    #: bot asks; no inbound endpoint). Poll is also used whenever TSBOT_PUBLIC_URL is empty.
    results: str = "callbacks"
    #: [directory] sync_every: how often the device directory is refreshed from ThingSpace
    directory_sync_every: timedelta = timedelta(hours=1)
    #: [directory] full_sync_every: how often a sync reads the whole account (and marks lines that
    #: left it); the syncs in between read only lines added since the last one
    directory_full_sync_every: timedelta = timedelta(hours=24)
    #: [sms] reboot_text: the text the "Send reboot SMS" button sends
    reboot_sms_text: str = "REBOOT"
    #: [sms] reply_window: a device's SMS (or NIDD data) is posted in the thread of the last one
    #: the bot sent it within this long; later, or with none sent, in the ops channel
    sms_reply_window: timedelta = timedelta(hours=24)
    #: [nidd] plans: the service plans (code or name) of lines that take NIDD; empty: any plan
    #: whose code or name says NB-IoT, NBIOT or NIDD
    nidd_plans: tuple[str, ...] = ()
    #: [alerts] timezone: time zone for digests and dates shown in Slack
    timezone: str = "UTC"
    #: [alerts] digest_time: local time of the daily digest (HH:MM)
    digest_time: str = "09:00"
    #: [alerts] group_threshold: more devices than this going down in one channel within
    #: group_window are grouped into one card
    alert_group_threshold: int = 5
    alert_group_window: timedelta = timedelta(minutes=10)
    #: [alerts] group_delay: a due alert waits until its channel has had no new one this long, so
    #: a burst is posted once, as one grouped card
    alert_group_delay: timedelta = timedelta(seconds=5)
    #: [alerts] recover_after: a device must stay reachable this long to count as recovered
    alert_recover_after: timedelta = timedelta(minutes=15)
    #: [alerts] realert_after: the shortest time between two alerts for one device
    alert_realert_after: timedelta = timedelta(hours=1)
    #: [alerts] evaluate_every: how often the reachability rules are evaluated
    alert_evaluate_every: timedelta = timedelta(minutes=1)
    #: [alerts] alert_after: the default of `watch --alert-after` (unreachable this long → alert)
    watch_alert_after: timedelta = timedelta(hours=2)
    #: [alerts] missed_wakes: a sleepy device (`watch --wake-every`) is alerted when it has
    #: missed more than this many expected wakes
    watch_missed_wakes: int = 2
    #: [audit] retention: audit rows older than this are exported and removed (0 = keep forever)
    audit_retention: timedelta = timedelta(0)
    #: [audit] archive_dir: where retention writes its export files
    audit_archive_dir: str = ""
    #: [scheduler] lease_ttl: how long the scheduler lease lasts unrenewed; a second process on
    #: the same database takes the scheduled jobs over this long after the holder died
    scheduler_lease_ttl: timedelta = timedelta(seconds=60)
    #: [socket_mode] stale_after: with --socket-mode, reconnect when the socket delivered nothing this long
    socket_stale_after: timedelta = timedelta(minutes=10)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from *environ* (the CLI passes ``os.environ``) and the TOML file it names."""
        env = environ
        values: dict[str, Any] = {}
        for var, (name, default) in ENV_VARS.items():
            values[name] = env.get(var, default).strip()
        try:
            values["port"] = int(values["port"])
        except ValueError:
            raise ConfigError(f"TSBOT_PORT must be a port number, not {values['port']!r}") from None
        if values["log_level"].upper() not in LOG_LEVELS:
            raise ConfigError(
                f"TSBOT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {values['log_level']!r}"
            )
        values.update(load_config_file(values["config_path"]))
        settings = cls(**values)
        settings.callback_networks()  # refuse a malformed allowlist at start-up
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used by ``tsbot demo`` and tests)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return Settings(**data)

    def callback_networks(self) -> list[IPv4Network | IPv6Network]:
        """``TSBOT_CALLBACK_ALLOWED_IPS`` parsed; raises ConfigError naming a bad entry."""
        networks: list[IPv4Network | IPv6Network] = []
        for entry in (e.strip() for e in self.callback_allowed_ips.split(",")):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    f"TSBOT_CALLBACK_ALLOWED_IPS: {entry!r} is not an IP address or network (e.g. 3.87.163.45 or 10.0.0.0/8)"
                ) from None
        return networks

    @property
    def poll_results(self) -> bool:
        """Whether results come by asking ThingSpace (no callback listener): ``[thingspace]
        results = "poll"`` or an empty ``TSBOT_PUBLIC_URL``."""
        return self.results == "poll" or not self.public_url.strip()

    @property
    def first_reconcile(self) -> timedelta:
        """How long after ThingSpace accepted a request it is first asked about: about 5 s when
        results are polled, ``reconcile_after`` otherwise."""
        return min(self.reconcile_after, POLL_FIRST_ASK) if self.poll_results else self.reconcile_after

    def thingspace_login(self) -> ThingSpaceLogin:
        """The ``THINGSPACE_*`` settings as :class:`ThingSpaceLogin` (base URL, credentials, account)."""
        return ThingSpaceLogin(
            base_url=self.thingspace_base_url,
            client_id=self.thingspace_client_id,
            client_secret=self.thingspace_client_secret,
            username=self.thingspace_username,
            password=self.thingspace_password,
            account=self.thingspace_account,
        )

    def missing_to_serve(self) -> list[str]:
        """Names of the required secrets that are empty."""
        return [var for var in REQUIRED_TO_SERVE if not getattr(self, ENV_VARS[var][0])]

    @classmethod
    def secrets_from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Only the environment's values, unchecked and without the file: what logging set-up
        registers for redaction when the configuration itself cannot be read."""
        env = environ
        names = {f.name for f in fields(cls)} - {"port"}
        values: dict[str, Any] = {
            name: env.get(var, default).strip() for var, (name, default) in ENV_VARS.items() if name in names
        }
        return cls(**values)


def _duration(table: Mapping[str, Any], key: str, where: str, *, allow_zero: bool = False) -> timedelta:
    raw = table[key]
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if not math.isfinite(raw) or not 0 <= raw <= MAX_DURATION.total_seconds():
            raise ConfigError(
                f"{where}.{key}: {raw!r} seconds is not a duration of 0 to {MAX_DURATION.days} days"
            )
        if raw > 0 or allow_zero:
            return timedelta(seconds=raw)
    try:
        return parse_duration(str(raw), allow_zero=allow_zero)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}: {exc}") from None


def _at_least(table: Mapping[str, Any], key: str, where: str, least: timedelta) -> timedelta:
    value = _duration(table, key, where)
    if value < least:
        raise ConfigError(
            f"{where}.{key} must be at least {int(least.total_seconds())} s, not {table[key]!r}"
        )
    return value


def _positive_int(table: Mapping[str, Any], key: str, where: str) -> int:
    raw = table[key]
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise ConfigError(f"{where}.{key} must be a positive whole number, not {raw!r}")
    return raw


def _check_alert_clock(out: Mapping[str, Any], source: str) -> None:
    """The digest's time zone must be a known IANA name and its time ``HH:MM``."""
    if "timezone" in out:
        try:
            ZoneInfo(out["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{source}: [alerts] timezone {out['timezone']!r} is not a time zone; "
                "use an IANA name such as UTC or America/New_York"
            ) from None
    if "digest_time" in out:
        hour, sep, minute = str(out["digest_time"]).partition(":")
        if not (sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60):
            raise ConfigError(
                f"{source}: [alerts] digest_time {out['digest_time']!r} is not a time of day; use HH:MM, e.g. 09:00"
            )


def load_config_file(path: str) -> dict[str, Any]:
    """Read the TOML configuration file into Settings field values (empty path: nothing)."""
    if not path:
        return {}
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"TSBOT_CONFIG names {path}, which does not exist") from None
    except OSError as exc:
        raise ConfigError(f"TSBOT_CONFIG names {path}, which cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, source=path)


class _Table(dict[str, Any]):
    """A TOML table that remembers the keys the parser looked for: those are its settings, so
    any other key is a typo (:func:`_unknown_keys`). New settings need no list kept in step."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.known: set[str] = set()

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.known.add(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self.known.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.known.add(key)
        return super().get(key, default)


def _hint(word: str, candidates: Iterable[str], shape: str = "{}") -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f" (did you mean {shape.format(close[0])}?)" if close else ""


def _unknown_keys(data: Mapping[str, Any], tables: Mapping[str, _Table], source: str) -> None:
    """Refuse top-level names that are not tables and keys no table reads, saying what was meant."""
    problems: list[str] = []
    for name in sorted(set(data) - {"grants"} - set(tables)):
        home = [t for t, table in sorted(tables.items()) if name in table.known]
        if home:
            problems.append(f"{name} must be inside its table: write it under [{home[0]}]")
        else:
            known = ", ".join(sorted([*tables, "grants"]))
            problems.append(
                f"unknown table [{name}]{_hint(name, [*tables, 'grants'], '[{}]')}; tables are {known}"
            )
    for table_name, table in sorted(tables.items()):
        for key in sorted(set(table) - table.known):
            elsewhere = [t for t, other in sorted(tables.items()) if t != table_name and key in other.known]
            hint = f" (it belongs under [{elsewhere[0]}])" if elsewhere else _hint(key, table.known)
            problems.append(f"unknown setting {table_name}.{key}{hint}")
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)}")


def parse_config(data: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Validate the parsed TOML and map it to Settings fields."""
    out: dict[str, Any] = {}
    known_tables = {
        "grants",
        "channels",
        "limits",
        "directory",
        "sms",
        "nidd",
        "alerts",
        "audit",
        "scheduler",
        "socket_mode",
        "thingspace",
    }
    for name in known_tables & set(data):
        if not isinstance(data[name], Mapping):
            raise ConfigError(
                f"{source}: {name} must be a table ([{name}] on a line of its own, then its settings)"
            )
    # every table but [grants] (whose keys are roles, checked below) records the keys it reads
    tables = {name: _Table(data.get(name, {})) for name in sorted(known_tables - {"grants"})}
    given = data
    data = {**data, **tables}

    grants = data.get("grants", {})
    role_ids: dict[str, frozenset[str]] = {}
    for role, ids in grants.items():
        if role not in ROLES:
            raise ConfigError(
                f"{source}: [grants] has unknown role {role!r}{_hint(role, ROLES)}; roles are {', '.join(ROLES)}"
            )
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ConfigError(f"{source}: [grants] {role} must be a list of Slack IDs")
        for slack_id in ids:
            if not slack_id or slack_id[0] not in "UWSCG" or not slack_id.isalnum():
                raise ConfigError(
                    f"{source}: [grants] {role}: {slack_id!r} is not a Slack ID "
                    "(users start with U or W, user groups with S, channels with C or G)"
                )
        role_ids[role] = frozenset(ids)
    out["grants"] = Grants(**role_ids)

    channels = data.get("channels", {})
    for key, name in (("ops", "ops_channel"), ("alerts", "alerts_channel")):
        if key in channels:
            out[name] = str(channels[key])

    limits = data.get("limits", {})
    for key, name in (("approval_size", "approval_size"), ("max_targets", "max_targets")):
        if key in limits:
            out[name] = _positive_int(limits, key, "limits")
    if "request_size" in limits:
        size = _positive_int(limits, "request_size", "limits")
        if size > 10_000:
            raise ConfigError(
                f"{source}: [limits] request_size is {size:,}; ThingSpace takes at most 10,000 lines per request"
            )
        out["request_size"] = size
    if "approver_mention" in limits:
        group = str(limits["approver_mention"]).strip()
        if group and not (group[0] == "S" and group.isalnum() and group.isupper()):
            raise ConfigError(
                f"{source}: [limits] approver_mention must be a user group ID like S0ONCALL "
                f"(in Slack: the group's profile, ⋯ → Copy group ID), not {group!r}"
            )
        out["approver_mention"] = group
    for key, name in (
        ("confirm_ttl", "confirm_ttl"),
        ("approval_ttl", "approval_ttl"),
        ("no_result_after", "no_result_after"),
    ):
        if key in limits:
            out[name] = _duration(limits, key, "limits")

    directory = data.get("directory", {})
    if "sync_every" in directory:
        out["directory_sync_every"] = _duration(directory, "sync_every", "directory")
    if "full_sync_every" in directory:
        out["directory_full_sync_every"] = _duration(directory, "full_sync_every", "directory")

    sms = data.get("sms", {})
    if "reboot_text" in sms:
        out["reboot_sms_text"] = str(sms["reboot_text"])
    if "reply_window" in sms:
        out["sms_reply_window"] = _duration(sms, "reply_window", "sms")

    nidd = data.get("nidd", {})
    if "plans" in nidd:
        plans = nidd["plans"]
        if not isinstance(plans, list) or not all(isinstance(p, str) and p.strip() for p in plans):
            raise ConfigError(
                f'{source}: [nidd] plans must be a list of plan codes, e.g. plans = ["M2M-NBIOT-10MB"]'
            )
        out["nidd_plans"] = tuple(p.strip() for p in plans)

    alerts = data.get("alerts", {})
    if "timezone" in alerts:
        out["timezone"] = str(alerts["timezone"])
    if "digest_time" in alerts:
        out["digest_time"] = str(alerts["digest_time"])
    if "group_threshold" in alerts:
        out["alert_group_threshold"] = _positive_int(alerts, "group_threshold", "alerts")
    if "missed_wakes" in alerts:
        out["watch_missed_wakes"] = _positive_int(alerts, "missed_wakes", "alerts")
    for key, name in (
        ("group_window", "alert_group_window"),
        ("group_delay", "alert_group_delay"),
        ("recover_after", "alert_recover_after"),
        ("realert_after", "alert_realert_after"),
        ("evaluate_every", "alert_evaluate_every"),
        ("alert_after", "watch_alert_after"),
    ):
        if key in alerts:
            out[name] = _duration(alerts, key, "alerts")
    _check_alert_clock(out, source)

    audit = data.get("audit", {})
    if "retention" in audit:
        out["audit_retention"] = _duration(audit, "retention", "audit", allow_zero=True)
    if "archive_dir" in audit:
        out["audit_archive_dir"] = str(audit["archive_dir"])

    scheduler = data.get("scheduler", {})
    if "lease_ttl" in scheduler:
        out["scheduler_lease_ttl"] = _at_least(scheduler, "lease_ttl", "scheduler", timedelta(seconds=3))

    thingspace = data.get("thingspace", {})
    if "reconcile_after" in thingspace:
        out["reconcile_after"] = _at_least(thingspace, "reconcile_after", "thingspace", timedelta(seconds=1))
    if "results" in thingspace:
        if thingspace["results"] not in RESULT_MODES:
            raise ConfigError(
                f"{source}: [thingspace] results must be one of {', '.join(RESULT_MODES)}, "
                f"not {thingspace['results']!r}"
            )
        out["results"] = thingspace["results"]

    socket_mode = data.get("socket_mode", {})
    if "stale_after" in socket_mode:
        out["socket_stale_after"] = _at_least(socket_mode, "stale_after", "socket_mode", timedelta(minutes=1))

    _unknown_keys(given, tables, source)
    return out
