"""Sandbox authentication: OAuth token, VZ-M2M-Token session, idle expiry and login lockout."""

from __future__ import annotations

import base64

import httpx

from tests.helpers.sandbox import ACCOUNT, Api, running_sandbox

LOGIN = "/m2m/v1/session/login"
LIST = "/m2m/v1/devices/actions/list"


def test_token_is_reissued_unchanged_within_the_hour() -> None:
    """The same OAuth token comes back within the hour with a shrinking expires_in, then a new one."""
    with running_sandbox(devices=20) as (_, url, clock), Api(url, login=False) as api:
        first = api.oauth().json()
        assert first["token_type"] == "Bearer"
        assert first["expires_in"] == 3600
        clock.advance(minutes=50)
        again = api.oauth().json()
        assert again["access_token"] == first["access_token"]
        assert again["expires_in"] == 600
        clock.advance(minutes=11)
        fresh = api.oauth().json()
        assert fresh["access_token"] != first["access_token"]
        assert fresh["expires_in"] == 3600


def test_token_endpoint_errors() -> None:
    """Wrong secret, no Basic header, a missing or unsupported grant_type each get their OAuth error."""
    with running_sandbox(devices=20) as (_, url, _clock), httpx.Client(base_url=url) as http:
        wrong = http.post(
            "/ts/v1/oauth2/token", data={"grant_type": "client_credentials"}, auth=("sandbox-client", "x")
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        missing = http.post("/ts/v1/oauth2/token", data={"grant_type": "client_credentials"})
        assert missing.status_code == 401
        assert missing.json()["fault"]["code"] == "900902"
        basic = "Basic " + base64.b64encode(b"sandbox-client:sandbox-secret").decode()
        no_grant = http.post("/ts/v1/oauth2/token", data={}, headers={"Authorization": basic})
        assert no_grant.status_code == 400
        assert no_grant.json() == {
            "error": "invalid_request",
            "error_description": "Missing grant_type parameter value",
        }
        password_grant = http.post(
            "/ts/v1/oauth2/token", data={"grant_type": "password"}, headers={"Authorization": basic}
        )
        assert password_grant.json()["error"] == "unsupported_grant_type"


def test_bearer_faults_use_the_wso2_envelope() -> None:
    """A missing bearer is fault 900902, a wrong or expired one 900901, both 401; an unknown path 900906."""
    with running_sandbox(devices=20) as (_, url, clock), Api(url) as api:
        no_bearer = api.http.post(LIST, json={}, headers={"VZ-M2M-Token": api.session})
        assert no_bearer.status_code == 401
        assert no_bearer.json()["fault"]["code"] == "900902"
        forged = api.http.post(
            LIST, json={}, headers={"Authorization": "Bearer nope", "VZ-M2M-Token": api.session}
        )
        assert forged.status_code == 401
        fault = forged.json()["fault"]
        assert fault["code"] == "900901"
        assert fault["message"] == "Invalid Credentials"
        assert "/m2m/v1" in fault["description"]
        clock.advance(minutes=61)
        expired = api.post(LIST, {"maxNumberOfDevices": 1})
        assert expired.status_code == 401
        assert expired.json()["fault"]["code"] == "900901"
        unknown = api.post("/m2m/v1/devices/actions/teleport", {})
        assert unknown.status_code == 400
        assert unknown.json()["fault"]["code"] == "900906"


def test_session_header_errors() -> None:
    """No VZ-M2M-Token is SessionToken.Format, a non-GUID is SessionToken.Invalid, an unknown GUID is Expired."""
    with running_sandbox(devices=20) as (_, url, _clock), Api(url) as api:
        bearer = {"Authorization": f"Bearer {api.token}"}
        missing = api.http.post(LIST, json={}, headers=bearer)
        assert missing.status_code == 400
        assert missing.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.SessionToken.Format"
        garbage = api.http.post(LIST, json={}, headers={**bearer, "VZ-M2M-Token": "not-a-guid"})
        assert garbage.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.SessionToken.Invalid"
        unknown = api.http.post(
            LIST, json={}, headers={**bearer, "VZ-M2M-Token": "bcce3ea6-fe4f-4952-bacf-eadd80718e83"}
        )
        assert unknown.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"


def test_session_expires_after_twenty_idle_minutes_and_slides_with_use() -> None:
    """Calls every 15 minutes keep a session alive for an hour; 21 idle minutes end it."""
    account = f"/m2m/v1/accounts/{ACCOUNT}"
    with running_sandbox(devices=20) as (_, url, clock), Api(url) as api:
        for _ in range(4):
            clock.advance(minutes=15)
            api.token = api.oauth().json()["access_token"]  # the OAuth token lasts only an hour
            assert api.get(account).status_code == 200
        clock.advance(minutes=21)
        expired = api.get(account)
        assert expired.status_code == 400
        assert expired.json()["errorCode"].endswith("REQUEST_FAILED.SessionToken.Expired")
        assert api.login().status_code == 200
        assert api.get(account).status_code == 200


def test_logout_ends_the_session() -> None:
    """Logout answers with the ended token, which is refused afterwards."""
    with running_sandbox(devices=20) as (_, url, _clock), Api(url) as api:
        ended = api.post("/m2m/v1/session/logout")
        assert ended.json() == {"sessionToken": api.session}
        after = api.post(LIST, {"accountName": ACCOUNT})
        assert after.json()["errorCode"].endswith("SessionToken.Expired")


def test_five_failed_logins_lock_the_user_even_for_the_right_password() -> None:
    """After five wrong passwords the right one fails too, with a locked error, until a reset."""
    with running_sandbox(devices=20) as (sandbox, url, _clock), Api(url, login=False) as api:
        for attempt in range(5):
            wrong = api.login(password="wrong")
            assert wrong.status_code == 400
            assert wrong.json()["errorCode"] == "UnifiedWebService.REQUEST_FAILED.Login.InvalidCredentials"
            assert f"{4 - attempt} attempts left" in wrong.json()["errorMessage"]
        locked = api.login()
        assert locked.status_code == 400
        assert locked.json()["errorCode"].endswith("REQUEST_FAILED.Login.UserLocked")
        assert "locked" in locked.json()["errorMessage"]
        assert len(sandbox.requests_received(path=LOGIN)) == 6
        sandbox.reset()
        assert api.login().status_code == 200


def test_a_good_login_resets_the_failure_count() -> None:
    """Failures must be consecutive: a successful login in between starts the count again."""
    with running_sandbox(devices=20) as (_, url, _clock), Api(url, login=False) as api:
        for _ in range(4):
            api.login(password="wrong")
        assert api.login().status_code == 200
        for _ in range(4):
            api.login(password="wrong")
        assert api.login().status_code == 200


def test_login_validates_its_body() -> None:
    """A login without a password is a 400 naming the missing field; malformed JSON is a 400 too."""
    with running_sandbox(devices=20) as (_, url, _clock), Api(url, login=False) as api:
        api.token = api.oauth().json()["access_token"]
        bearer = {"Authorization": f"Bearer {api.token}"}
        no_password = api.http.post(LOGIN, json={"username": "sandbox-user"}, headers=bearer)
        assert no_password.status_code == 400
        assert no_password.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.Password.Null"
        broken = api.http.post(
            LOGIN, content=b"{not json", headers={**bearer, "Content-Type": "application/json"}
        )
        assert broken.status_code == 400
        assert broken.json()["errorCode"] == "UnifiedWebService.INPUT_INVALID.Request.InvalidJson"
