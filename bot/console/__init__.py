"""The local Slack: a stand-in for the Web API and ``response_url``, a driver, and a renderer.

``tsbot demo`` and the tests use the same three parts, so a demo run exercises the bot's real
dispatch path:

- :class:`SlackStandIn` answers the bot's Web API calls and ``response_url`` posts, records them,
  and can be told to fail (:meth:`SlackStandIn.inject`);
- :class:`SlackDriver` sends the bot signed slash commands and button clicks, as Slack does;
- :func:`render_message` prints a message as terminal text.
"""

from __future__ import annotations

from bot.console.driver import SlackDriver
from bot.console.records import Button, Call, Message, MessageVersion, StandInEvent
from bot.console.render import mrkdwn_to_text, render_blocks, render_message
from bot.console.standin import SlackStandIn

__all__ = [
    "Button",
    "Call",
    "Message",
    "MessageVersion",
    "SlackDriver",
    "SlackStandIn",
    "StandInEvent",
    "mrkdwn_to_text",
    "render_blocks",
    "render_message",
]
