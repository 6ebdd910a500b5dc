"""Each start records the configuration it runs with (config.load): grants in full, non-secret
settings, a digest, and what changed since the previous load, with no credential in the row."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from bot.app import Runtime
from bot.audit.config_load import config_summary, record_config_load
from bot.core.config import Grants, Settings
from storage.audit.log import AuditLog, Verb, verify
from storage.schema import open_database

SECRETS = {
    "slack_bot_token": "xoxb-1111-2222-secretbot",
    "slack_signing_secret": "signing-secret-value",
    "slack_app_token": "xapp-1-secret-app-token",
    "thingspace_client_secret": "ts-client-secret-value",
    "thingspace_password": "ts-password-value",
    "thingspace_client_id": "ts-client-id-value",
    "thingspace_username": "ts-username-value",
    "callback_username": "callback-username-value",
    "callback_password": "callback-password-value",
    "callback_password_previous": "callback-previous-value",
}
GRANTS = Grants(admin=frozenset({"U012ADMIN"}), operator=frozenset({"S0ONCALL"}), viewer=frozenset({"C0NOC"}))


def settings(tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        db_path=str(tmp_path / "tsbot.db"),
        thingspace_base_url="http://127.0.0.1:9",
        thingspace_account="0000123456-00001",
        public_url="https://user:pw@bot.example.com/",
        grants=GRANTS,
        config_path="/etc/tsbot/tsbot.toml",
        **SECRETS,  # type: ignore[arg-type]
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_first_load_records_grants_and_settings_without_secrets(tmp_path: Path) -> None:
    """The first config.load row holds every grant, the non-secret settings and a digest; no credential."""
    db = open_database(tmp_path / "tsbot.db")
    row_id = record_config_load(db, settings(tmp_path))
    row = AuditLog(db).get(row_id)
    assert row is not None
    assert (row.verb, row.actor, row.outcome) == (Verb.CONFIG_LOAD, "system", "ok")
    assert row.detail["grants"] == {"viewer": ["C0NOC"], "operator": ["S0ONCALL"], "admin": ["U012ADMIN"]}
    assert row.detail["changes"] == {"first": True} and row.detail["previous_id"] is None
    assert row.detail["source"] == "/etc/tsbot/tsbot.toml"
    values = row.detail["settings"]
    assert values["approval_size"] == 25 and values["confirm_ttl"] == "300s"
    assert values["callback_rotation_open"] is True
    assert values["public_url"] == "https://bot.example.com/"  # credentials in a URL are dropped
    assert not set(SECRETS) & set(values)
    stored = json.dumps(row.to_dict())
    for secret in [*SECRETS.values(), "pw@"]:
        assert secret not in stored
    assert "no earlier load" in row.reason
    assert len(row.detail["digest"]) == 64
    assert verify(db).ok


def test_next_load_says_what_changed(tmp_path: Path) -> None:
    """A later load lists grants added and removed per role and settings changed (from, to)."""
    db = open_database(tmp_path / "tsbot.db")
    first = record_config_load(db, settings(tmp_path))
    changed = settings(
        tmp_path,
        grants=Grants(admin=frozenset({"U012ADMIN", "U0NEWADMIN"}), viewer=frozenset({"C0NOC"})),
        approval_size=50,
        audit_retention=timedelta(days=400),
        thingspace_password="a-new-password",
    )
    row = AuditLog(db).get(record_config_load(db, changed))
    assert row is not None
    assert row.detail["previous_id"] == first
    assert row.detail["changes"] == {
        "grants_added": {"admin": ["U0NEWADMIN"]},
        "grants_removed": {"operator": ["S0ONCALL"]},
        "settings_changed": {
            "approval_size": {"from": 25, "to": 50},
            "audit_retention": {"from": "0s", "to": "34560000s"},
        },
    }
    assert f"since row {first}: grants +U0NEWADMIN admin, -S0ONCALL operator" in row.reason
    assert "settings changed: approval_size, audit_retention" in row.reason
    assert "a-new-password" not in json.dumps(row.to_dict())  # a changed secret is not even hinted at


def test_unchanged_load_has_the_same_digest(tmp_path: Path) -> None:
    """Loading the same configuration again records it as unchanged, with the same digest."""
    db = open_database(tmp_path / "tsbot.db")
    log = AuditLog(db)
    first = log.get(record_config_load(db, settings(tmp_path)))
    again = log.get(record_config_load(db, settings(tmp_path, slack_bot_token="xoxb-9999-rotated")))
    assert first is not None and again is not None
    assert again.detail["changes"] == {} and again.reason.endswith(": unchanged")
    assert again.detail["digest"] == first.detail["digest"] == config_summary(settings(tmp_path))["digest"]


def test_each_runtime_start_records_one_load(tmp_path: Path) -> None:
    """Runtime.start records one config.load row per start; stop leaves the head file confirmed."""
    for grants in (GRANTS, replace(GRANTS, viewer=frozenset({"C0NOC", "C0MORE"}))):
        runtime = Runtime(
            settings(tmp_path, grants=grants), sync_directory_at_start=False, start_scheduler=False
        )
        runtime.start()
        runtime.stop()
    db = open_database(tmp_path / "tsbot.db", migrate=False)
    try:
        loads = AuditLog(db).query(verb=Verb.CONFIG_LOAD)
        assert [row.detail["changes"].get("grants_added") for row in loads] == [{"viewer": ["C0MORE"]}, None]
        head = json.loads((tmp_path / "tsbot.db.audit-head").read_text())
        assert head["id"] == head["base_id"]
        assert verify(db).ok
    finally:
        db.conn.close()
