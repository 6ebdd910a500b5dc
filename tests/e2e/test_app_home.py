"""The App Home tab, published when a user opens it (an Events API request over real HTTP)."""

from __future__ import annotations

import json

from tests.helpers.bot import SlackOnlyBot


def _open_home(bot: SlackOnlyBot, user: str) -> int:
    body = json.dumps(
        {
            "token": "x",
            "team_id": "T0TSBOT",
            "api_app_id": "A0TSBOT",
            "type": "event_callback",
            "event_id": f"Ev{user}",
            "event_time": 1,
            "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"},
        }
    ).encode()
    headers = bot.driver.sign(body)
    headers["Content-Type"] = "application/json"
    return bot.driver.post_raw(body, headers).status_code


def test_home_shows_role_actions_and_recent_history(slack_bot: SlackOnlyBot) -> None:
    """An operator sees their role, what they may run, and their own recent actions."""
    slack_bot.driver.command("suspend iccid:89148000003339904729 --dry-run", user="U0OPS1", channel="C0OPS")
    assert _open_home(slack_bot, "U0OPS1") == 200
    call = slack_bot.standin.wait_for_call(lambda c: c.method == "views.publish", timeout=5)
    view = json.dumps(call.params)
    assert "operator" in view
    assert "/ts suspend" in view and "/ts cancel-location" not in view
    assert "suspend" in view and "dry-run" in view


def test_home_for_someone_without_a_role(slack_bot: SlackOnlyBot) -> None:
    """A user with no grant is told how to get one."""
    assert _open_home(slack_bot, "U0NOBODY") == 200
    call = slack_bot.standin.wait_for_call(lambda c: c.method == "views.publish", timeout=5)
    assert "no role" in json.dumps(call.params)


def test_home_lists_the_users_watches_and_their_open_alerts(slack_bot: SlackOnlyBot) -> None:
    """An operator who set up a watch sees it, and an open alert on that device, on their Home tab."""
    import time

    from storage import alerts
    from storage.db import write

    answer = slack_bot.driver.command(
        "watch iccid:89148000003339904729 --alert-after 2h", user="U0OPS1", channel="C0OPS"
    )
    assert answer.status_code == 200
    db = slack_bot.runtime.pool.get()
    with write(db):
        alerts.insert_alert(
            db,
            device="iccid:89148000003339904729",
            condition="unreachable",
            channel="C0OPS",
            down_since=time.time() - 7200,
            now=time.time(),
        )
    assert _open_home(slack_bot, "U0OPS1") == 200
    call = slack_bot.standin.wait_for_call(lambda c: c.method == "views.publish", timeout=5)
    view = json.dumps(call.params)
    assert "Your watches" in view and "iccid:89148000003339904729" in view and "alert after 2 h" in view
    assert "Open alerts on your watched devices (1)" in view and "unreachable since" in view
