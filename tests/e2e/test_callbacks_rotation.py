"""Rotating the callback password: the old one is accepted while TSBOT_CALLBACK_PASSWORD_PREVIOUS is set."""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.local_stack import CALLBACK_PASSWORD, CALLBACK_USER, LocalStack


def _callback(password: str) -> dict[str, object]:
    return {
        "username": CALLBACK_USER,
        "password": password,
        "requestId": "11111111-2222-3333-4444-555555555555",
        "deviceIds": [{"id": "89148000000800139708", "kind": "iccid"}],
        "deviceResponse": {"stateChange": {"state": "suspend"}},
        "status": "Success",
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
    }


def test_old_and_new_passwords_are_accepted_during_rotation(tmp_path: Path) -> None:
    """New and previous passwords get 200; any other password is refused."""
    overrides = {"callback_password_previous": "the-old-callback-password"}
    with LocalStack(tmp_path, devices=20, scheduler=False, settings_overrides=overrides) as stack:
        url = stack.bot_url + "/thingspace/callbacks"
        assert httpx.post(url, json=_callback(CALLBACK_PASSWORD)).status_code == 200
        assert (
            httpx.post(url, json={**_callback("the-old-callback-password"), "callbackCount": 2}).status_code
            == 200
        )
        assert httpx.post(url, json=_callback("some-other-password")).status_code == 401


def test_without_a_previous_password_only_the_current_one_works(tmp_path: Path) -> None:
    """Once the rotation is over (PREVIOUS unset), the old password is refused."""
    with LocalStack(tmp_path, devices=20, scheduler=False) as stack:
        url = stack.bot_url + "/thingspace/callbacks"
        assert httpx.post(url, json=_callback("the-old-callback-password")).status_code == 401
        assert httpx.post(url, json=_callback(CALLBACK_PASSWORD)).status_code == 200
