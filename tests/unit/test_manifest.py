"""``tsbot manifest``: the Slack app manifest is valid, minimal in scopes, and the CLI fails clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli.main import main
from bot.cli.manifest import BOT_SCOPES, ManifestError, build_manifest, dump_manifest
from commands.registry import VERBS

# -- a structural validator transcribed from Slack's manifest schema (major_version 1) ----------
# Source: slackapi/manifest-schema, schemas/manifest.schema.1.0.0.json (the parts this bot uses,
# with every additionalProperties: false kept so an unknown key is an error).

URL = {"type": "string", "pattern": r"^https?://", "maxLength": 3500, "url": True}
BOOL = {"type": "boolean"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


SCHEMA = obj(
    {
        "_metadata": obj({"major_version": {"type": "integer"}, "minor_version": {"type": "integer"}}),
        "display_information": obj(
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 35},
                "description": {"type": "string", "minLength": 1, "maxLength": 140},
                "background_color": {"type": "string", "pattern": r"^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$"},
                "long_description": {"type": "string", "minLength": 175, "maxLength": 4000},
            },
            required=("name",),
        ),
        "features": obj(
            {
                "app_home": obj(
                    {
                        "home_tab_enabled": BOOL,
                        "messages_tab_enabled": BOOL,
                        "messages_tab_read_only_enabled": BOOL,
                    }
                ),
                "bot_user": obj(
                    {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "always_online": BOOL,
                    },
                    required=("display_name",),
                ),
                "slash_commands": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 50,
                    "items": obj(
                        {
                            "command": {"type": "string", "minLength": 2, "maxLength": 32, "pattern": r"^/"},
                            "url": {**URL, "maxLength": 3000},
                            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
                            "usage_hint": {"type": "string", "minLength": 1, "maxLength": 1000},
                            "should_escape": BOOL,
                        },
                        required=("command", "description"),
                    ),
                },
            }
        ),
        "oauth_config": obj(
            {
                "scopes": obj(
                    {
                        "bot": {
                            "type": "array",
                            "maxItems": 255,
                            "unique": True,
                            "items": {"type": "string", "maxLength": 50},
                        }
                    }
                )
            }
        ),
        "settings": obj(
            {
                "event_subscriptions": obj(
                    {
                        "request_url": URL,
                        "bot_events": {
                            "type": "array",
                            "maxItems": 100,
                            "unique": True,
                            "items": {"type": "string", "maxLength": 50},
                        },
                    }
                ),
                "interactivity": obj(
                    {"is_enabled": BOOL, "request_url": URL, "message_menu_options_url": URL},
                    required=("is_enabled",),
                ),
                "org_deploy_enabled": BOOL,
                "socket_mode_enabled": BOOL,
                "token_rotation_enabled": BOOL,
            }
        ),
    },
    required=("display_information",),
)

TYPES: dict[str, type | tuple[type, ...]] = {"object": dict, "array": list, "string": str, "boolean": bool}
#: Every bot scope this bot could justify; the manifest must ask for a subset.
ALLOWED_SCOPES = {
    "commands",
    "chat:write",
    "chat:write.public",
    "usergroups:read",
    "users:read",
    "files:write",
    "channels:history",
    "groups:history",
}


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Errors of *value* against *schema*, one per problem, each naming its path."""
    kind = schema["type"]
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, TYPES[kind])
    if not ok:
        return [f"{path}: expected {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if kind == "object":
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{path}: missing required {key!r}")
        for key, item in value.items():
            if key not in schema["properties"]:
                errors.append(f"{path}: unknown key {key!r}")
            else:
                errors += validate(item, schema["properties"][key], f"{path}.{key}")
    elif kind == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            errors.append(f"{path}: {len(value)} items is out of range")
        if schema.get("unique") and len(set(value)) != len(value):
            errors.append(f"{path}: items are not unique")
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    elif kind == "string":
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9):
            errors.append(f"{path}: length {len(value)} is out of range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("url") and not value.startswith(("https://", "http://localhost")):
            errors.append(f"{path}: {value!r} is neither https nor http://localhost")
    return errors


def urls_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for k, v in value.items() for u in ([v] if k in ("url", "request_url") else urls_in(v))]
    if isinstance(value, list):
        return [u for v in value for u in urls_in(v)]
    return []


# -- the validator itself -----------------------------------------------------------------------


def test_validator_catches_what_slack_would_reject() -> None:
    """The validator flags a long name, a command without '/', an http URL, an unknown key."""
    bad = build_manifest("https://bot.example.com")
    bad["display_information"]["name"] = "x" * 36
    bad["features"]["slash_commands"][0]["command"] = "ts"
    bad["settings"]["interactivity"]["request_url"] = "http://bot.example.com/slack/events"
    bad["settings"]["socket_mode"] = True
    del bad["features"]["bot_user"]["display_name"]
    errors = validate(bad, SCHEMA)
    assert len(errors) == 5, errors
    assert any("display_information.name: length 36" in e for e in errors)
    assert any("slash_commands[0].command" in e for e in errors)
    assert any("neither https nor http://localhost" in e for e in errors)
    assert any("unknown key 'socket_mode'" in e for e in errors)
    assert any("missing required 'display_name'" in e for e in errors)


# -- the manifest -------------------------------------------------------------------------------


def test_http_manifest_is_valid_and_points_at_slack_events() -> None:
    """The default manifest validates and sends the command, interactivity and events to /slack/events."""
    manifest = build_manifest("https://bot.example.com/")
    assert validate(manifest, SCHEMA) == []
    assert urls_in(manifest) == ["https://bot.example.com/slack/events"] * 3
    assert manifest["features"]["slash_commands"][0]["command"] == "/ts"
    hint = manifest["features"]["slash_commands"][0]["usage_hint"]
    assert hint.split(" | ") == list(VERBS)  # read from the verb table, like help
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    # the bot DMs a requester whose results it could not post; nobody can write to it
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_read_only_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["settings"]["org_deploy_enabled"] is False
    assert manifest["settings"]["token_rotation_enabled"] is False


def test_scopes_are_minimal_and_justified() -> None:
    """Scopes are a subset of the allowed set, exactly the documented ones, each with a reason."""
    scopes = build_manifest("https://bot.example.com")["oauth_config"]["scopes"]["bot"]
    assert set(scopes) <= ALLOWED_SCOPES
    assert scopes == [
        "commands",
        "chat:write",
        "usergroups:read",
        "files:write",
        "channels:history",
        "groups:history",
    ]
    assert all(BOT_SCOPES[s] for s in scopes)
    header = dump_manifest(build_manifest("https://bot.example.com")).split("_metadata")[0]
    for scope in scopes:
        assert re.search(rf"^#\s+{re.escape(scope)}\s+\S", header, re.MULTILINE)


def test_socket_mode_needs_no_url_and_sets_none() -> None:
    """With socket mode the manifest validates, has no request URL, and enables socket mode."""
    manifest = build_manifest(None, socket_mode=True)
    assert validate(manifest, SCHEMA) == []
    assert urls_in(manifest) == []
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"] == {"is_enabled": True}


def test_path_prefix_and_localhost_are_kept() -> None:
    """A reverse-proxy path prefix is kept; http is allowed for localhost only."""
    assert (
        urls_in(build_manifest("https://ops.example.com/tsbot/"))[0]
        == "https://ops.example.com/tsbot/slack/events"
    )
    manifest = build_manifest("http://localhost:3000")
    assert validate(manifest, SCHEMA) == []
    assert urls_in(manifest)[0] == "http://localhost:3000/slack/events"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://bot.example.com", "must use https"),
        ("bot.example.com", "must look like https://"),
        ("ftp://bot.example.com", "must look like https://"),
        ("https://bot.example.com/?x=1", "must not carry a query"),
        ("https://user:pw@bot.example.com", "credentials"),
        ("", "no public URL"),
    ],
)
def test_bad_public_urls_are_refused(url: str, message: str) -> None:
    """A URL Slack would not call is refused with a message saying what to use."""
    with pytest.raises(ManifestError, match=message):
        build_manifest(url)


def test_name_length_is_checked() -> None:
    """A name of 35 characters is accepted; 36 or blank is refused."""
    assert build_manifest("https://b.example.com", name="n" * 35)["display_information"]["name"] == "n" * 35
    for name in ("n" * 36, "   "):
        with pytest.raises(ManifestError, match="1 to 35 characters"):
            build_manifest("https://b.example.com", name=name)


def test_yaml_and_json_outputs_are_the_same_manifest() -> None:
    """Parsed YAML and parsed JSON outputs are equal to the built manifest."""
    manifest = build_manifest("https://bot.example.com")
    assert yaml.safe_load(dump_manifest(manifest, "yaml")) == manifest
    assert json.loads(dump_manifest(manifest, "json")) == manifest


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_reads_public_url_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tsbot manifest` uses TSBOT_PUBLIC_URL and prints valid YAML."""
    monkeypatch.setenv("TSBOT_PUBLIC_URL", "https://env.example.com")
    assert main(["manifest"]) == 0
    out, err = capsys.readouterr()
    manifest = yaml.safe_load(out)
    assert validate(manifest, SCHEMA) == []
    assert urls_in(manifest)[0] == "https://env.example.com/slack/events"
    assert err == ""


def test_cli_option_overrides_environment_and_json_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--public-url wins over TSBOT_PUBLIC_URL; --format json and --name are honoured."""
    monkeypatch.setenv("TSBOT_PUBLIC_URL", "https://env.example.com")
    assert (
        main(["manifest", "--format", "json", "--public-url", "https://opt.example.com", "--name", "NOC Bot"])
        == 0
    )
    manifest = json.loads(capsys.readouterr().out)
    assert urls_in(manifest)[0] == "https://opt.example.com/slack/events"
    assert manifest["display_information"]["name"] == "NOC Bot"
    assert manifest["features"]["bot_user"]["display_name"] == "NOC Bot"


def test_cli_without_public_url_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    """No URL and no socket mode: exit 2, one line on stderr naming the fix, nothing on stdout."""
    assert main(["manifest"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("tsbot manifest: no public URL")
    assert "TSBOT_PUBLIC_URL" in err and "--socket-mode" in err
    assert "Traceback" not in err


def test_cli_socket_mode_needs_no_url(capsys: pytest.CaptureFixture[str]) -> None:
    """`tsbot manifest --socket-mode` works without any URL."""
    assert main(["manifest", "--socket-mode"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert urls_in(manifest) == []


def test_cli_bad_inputs_exit_2_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An http URL, a long name and a broken config file each give exit 2 and a one-line reason."""
    assert main(["manifest", "--public-url", "http://bot.example.com"]) == 2
    assert "must use https" in capsys.readouterr().err
    assert main(["manifest", "--public-url", "https://b.example.com", "--name", "x" * 40]) == 2
    assert "1 to 35 characters" in capsys.readouterr().err
    broken = tmp_path / "tsbot.toml"
    broken.write_text("[grants\n", encoding="utf-8")
    monkeypatch.setenv("TSBOT_CONFIG", str(broken))
    assert main(["manifest"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "is not valid TOML" in err and "Traceback" not in err


def test_cli_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    """--format other than yaml|json is an argparse usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["manifest", "--format", "toml", "--public-url", "https://b.example.com"])
    assert exc.value.code == 2
    assert "invalid choice: 'toml'" in capsys.readouterr().err
