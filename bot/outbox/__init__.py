"""The outbox relay: every Slack post, update and ``response_url`` reply is a database row first;
:mod:`bot.outbox.relay` sends them with per-channel pacing, ``Retry-After`` and restart safety."""
