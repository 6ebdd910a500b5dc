"""Callback source addresses: TSBOT_CALLBACK_ALLOWED_IPS, and X-Forwarded-For believed only from
TSBOT_TRUSTED_PROXIES (uvicorn's proxy headers, as `tsbot serve` runs it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.app import Runtime
from bot.cli.serve import proxy_options
from bot.core.config import ConfigError, Settings
from bot.serving import ServerThread

PASSWORD = "a-long-callback-password"
THINGSPACE = "3.87.163.45"


def _body() -> dict[str, object]:
    return {
        "username": "tsbot",
        "password": PASSWORD,
        "requestId": "11111111-2222-3333-4444-555555555555",
        "deviceIds": [{"id": "89148000000800139708", "kind": "iccid"}],
        "deviceResponse": {"stateChange": {"state": "suspend"}},
        "status": "Success",
        "callbackCount": 1,
    }


def _serve(tmp_path: Path, **overrides: str) -> Iterator[str]:
    settings = Settings(
        slack_bot_token="xoxb-x",
        slack_signing_secret="s",
        thingspace_base_url="http://127.0.0.1:9",
        thingspace_account="0000123456-00001",
        callback_username="tsbot",
        callback_password=PASSWORD,
        db_path=str(tmp_path / "bot.db"),
        **overrides,
    )
    runtime = Runtime(settings, sync_directory_at_start=False, start_scheduler=False)
    server = ServerThread(runtime.web, **proxy_options(settings)).start()
    runtime.start()
    try:
        yield server.url + "/thingspace/callbacks"
    finally:
        server.stop()
        runtime.stop()


@pytest.fixture
def behind_trusted_proxy(tmp_path: Path) -> Iterator[str]:
    yield from _serve(
        tmp_path, callback_allowed_ips=f"{THINGSPACE},54.197.62.0/24", trusted_proxies="127.0.0.1"
    )


@pytest.fixture
def untrusted_peer(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path, callback_allowed_ips=THINGSPACE, trusted_proxies="10.9.9.9")


def test_allowed_source_through_a_trusted_proxy_is_accepted(behind_trusted_proxy: str) -> None:
    """The proxy (loopback) forwards ThingSpace's address; it is in the allowlist."""
    answer = httpx.post(behind_trusted_proxy, json=_body(), headers={"X-Forwarded-For": THINGSPACE})
    assert answer.status_code == 200
    network = httpx.post(behind_trusted_proxy, json=_body(), headers={"X-Forwarded-For": "54.197.62.209"})
    assert network.status_code == 200


def test_other_sources_are_refused_before_the_body_is_read(behind_trusted_proxy: str) -> None:
    """An address outside the allowlist gets 403, whatever its credentials."""
    answer = httpx.post(behind_trusted_proxy, json=_body(), headers={"X-Forwarded-For": "198.51.100.7"})
    assert answer.status_code == 403


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(untrusted_peer: str) -> None:
    """A peer that is not a trusted proxy cannot claim ThingSpace's address in X-Forwarded-For."""
    answer = httpx.post(untrusted_peer, json=_body(), headers={"X-Forwarded-For": THINGSPACE})
    assert answer.status_code == 403


def test_a_malformed_allowlist_is_refused_at_start() -> None:
    """A typo in TSBOT_CALLBACK_ALLOWED_IPS is a configuration error naming the entry."""
    with pytest.raises(ConfigError, match="not-an-ip"):
        Settings.from_env({"TSBOT_CALLBACK_ALLOWED_IPS": "3.87.163.45, not-an-ip"})
