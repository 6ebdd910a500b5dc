"""The stand-in and driver against a real Bolt app on loopback: the path `tsbot demo` relies on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.starlette.handler import SlackRequestHandler
from slack_sdk import WebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.console import SlackDriver, SlackStandIn, render_message
from bot.serving import ServerThread
from tests.helpers.console import SECRET, TOKEN

CARD: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Suspend *…9708*?"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Confirm"},
                "action_id": "confirm",
                "style": "danger",
            },
            {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}, "action_id": "cancel"},
        ],
    },
]


def _bolt_app(standin: SlackStandIn) -> Starlette:
    app = App(
        signing_secret=SECRET,
        client=WebClient(token=TOKEN, base_url=standin.api_url),
        token_verification_enabled=False,
    )

    @app.command("/ts")
    def ts_command(ack: Ack, respond: Respond, command: dict[str, Any]) -> None:
        ack()
        respond(text=f"Confirm: {command['text']}", blocks=CARD)

    @app.action("confirm")
    def confirm(ack: Ack, respond: Respond, body: dict[str, Any], client: WebClient) -> None:
        ack()
        respond(text="Confirmed", replace_original=True)
        client.chat_postMessage(
            channel=body["channel"]["id"], text=f"<@{body['user']['id']}> suspended …9708"
        )

    handler = SlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


@pytest.fixture
def wired() -> Iterator[tuple[SlackStandIn, SlackDriver, list[str]]]:
    """Stand-in, Bolt app and driver wired over loopback; the list collects rendered events."""
    standin = SlackStandIn().start()
    printed: list[str] = []
    standin.on_event(lambda event: printed.append(render_message(event)))
    server = ServerThread(_bolt_app(standin)).start()
    driver = SlackDriver(server.url + "/slack/events", SECRET, standin)
    yield standin, driver, printed
    driver.close()
    server.stop()
    standin.stop()


def test_command_confirm_flow_through_bolt(wired: tuple[SlackStandIn, SlackDriver, list[str]]) -> None:
    """A signed /ts reaches Bolt, respond() posts the card, a click replaces it, and the demo prints each step."""
    standin, driver, printed = wired
    assert driver.command("suspend …9708", user="U0OPS1", channel="C0OPS").status_code == 200
    card = standin.wait_for(lambda m: m.text.startswith("Confirm:"))
    assert card.ephemeral and card.user == "U0OPS1"
    assert driver.click("Confirm", user="U0OPS1").status_code == 200
    standin.wait_for(lambda m: m.text == "<@U0OPS1> suspended …9708")
    replaced = standin.wait_for(lambda m: m.ts == card.ts and m.text == "Confirmed")
    assert [v.source for v in replaced.versions] == ["response_url", "response_url"]
    assert printed[0].startswith("#C0OPS › ") and "[ Confirm ] (danger)  [ Cancel ]" in printed[0]
    assert any("@U0OPS1 suspended …9708" in p for p in printed)


def test_forged_and_stale_requests_are_refused_by_bolt(
    wired: tuple[SlackStandIn, SlackDriver, list[str]],
) -> None:
    """Bolt refuses the driver's requests when the signature is wrong or the timestamp is old."""
    standin, driver, _ = wired
    body = b"command=%2Fts&text=help&user_id=U0OPS1&channel_id=C0OPS"
    forged = {**driver.sign(body), "X-Slack-Signature": "v0=" + "0" * 64}
    stale = driver.sign(body, timestamp=1_600_000_000)
    assert driver.post_raw(body, forged).status_code == 401
    assert driver.post_raw(body, stale).status_code == 401
    assert standin.messages() == []
