"""The README stays true: every verb, CLI command, environment variable and setting is documented,
and its two set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from bot.cli.main import SUBCOMMANDS
from bot.core.config import ENV_VARS, Settings
from commands.registry import VERBS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

#: Settings fields that come from the TOML file, and the key a person writes there.
TOML_KEYS = {
    "grants": "[grants]",
    "ops_channel": "ops",
    "alerts_channel": "alerts",
    "approval_size": "approval_size",
    "max_targets": "max_targets",
    "confirm_ttl": "confirm_ttl",
    "approval_ttl": "approval_ttl",
    "approver_mention": "approver_mention",
    "no_result_after": "no_result_after",
    "directory_sync_every": "sync_every",
    "directory_full_sync_every": "full_sync_every",
    "request_size": "request_size",
    "reboot_sms_text": "reboot_text",
    "sms_reply_window": "reply_window",
    "nidd_plans": "[nidd]",
    "timezone": "timezone",
    "digest_time": "digest_time",
    "alert_group_threshold": "group_threshold",
    "alert_group_window": "group_window",
    "alert_group_delay": "group_delay",
    "alert_recover_after": "recover_after",
    "alert_realert_after": "realert_after",
    "alert_evaluate_every": "evaluate_every",
    "watch_alert_after": "alert_after",
    "watch_missed_wakes": "missed_wakes",
    "audit_retention": "retention",
    "audit_archive_dir": "archive_dir",
    "scheduler_lease_ttl": "lease_ttl",
    "socket_stale_after": "stale_after",
    "reconcile_after": "reconcile_after",
    "results": "results = ",
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_is_documented(verb: str) -> None:
    """Each slash verb appears in the README as `/ts VERB`."""
    assert f"/ts {verb}" in README


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_cli_command_is_documented(command: str) -> None:
    """Each tsbot subcommand appears in the README."""
    assert f"tsbot {command}" in README


@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_every_environment_variable_is_documented(var: str) -> None:
    """Each environment variable appears in the configuration reference."""
    assert f"`{var}`" in README


def test_every_setting_is_documented() -> None:
    """Each Settings field is reachable from the README: by its environment variable or its TOML key."""
    by_env = {name for name, _ in ENV_VARS.values()}
    missing = []
    for f in fields(Settings):
        if f.name in by_env:
            continue
        key = TOML_KEYS.get(f.name)
        if key is None or (f"`{key}`" not in README and key not in README):
            missing.append(f.name)
    assert not missing, f"undocumented settings: {missing} (add them to the README and to TOML_KEYS)"


def test_quick_start_commands_match_ci() -> None:
    """The README's test command is what .ci/run runs."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "tsbot demo" in README
    match = re.search(r"```sh\n(python3 -m venv[^\n]*pytest[^\n]*)\n```", README)
    assert match, "the README must show the one-line test command"
    assert "pytest" in ci and "pip install" in ci


def test_changelog_section_exists() -> None:
    """The README keeps a changelog for the people who run the bot."""
    assert re.search(r"^## Changelog", README, re.MULTILINE)


def _architecture_section() -> str:
    match = re.search(r"^## Architecture\n(.*?)^## ", README, re.MULTILINE | re.DOTALL)
    assert match, "the README must have an Architecture section"
    return match.group(1)


def test_architecture_section_places_every_package_and_names_only_real_paths() -> None:
    """Every package of bot/ (and commands/, storage/) is placed in the README's architecture
    section, and every path the section names exists, so a move cannot leave it stale."""
    text = _architecture_section()
    named = set(re.findall(r"`((?:bot|commands|storage|tests)/[\w/]*(?:\.py)?)`", text))
    assert not sorted(p for p in named if not (ROOT / p).exists()), "paths that do not exist"
    parts = {"commands/", "storage/"}
    parts |= {f"bot/{p.name}/" for p in (ROOT / "bot").iterdir() if (p / "__init__.py").exists()}
    parts |= {f"bot/{p.name}" for p in (ROOT / "bot").glob("*.py") if not p.name.startswith("__")}
    assert not sorted(p for p in parts if f"`{p}`" not in text), "packages the section does not place"
