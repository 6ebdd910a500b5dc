"""Slack in: the Starlette routes in front of Bolt (:mod:`bot.slack.web`), the request shape
checks (:mod:`bot.slack.request_shape`), the Bolt app and its listeners (:mod:`bot.slack.bolt_app`),
Socket Mode (:mod:`bot.slack.socket_mode`) and the App Home tab (:mod:`bot.slack.home`)."""
