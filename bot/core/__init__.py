"""The core tier that ``commands/`` may use: configuration, logging, metrics, durations,
identifier masking, the per-device outcome statuses, the reachability rules and the directory sync.
Nothing here starts a thread or holds a Slack client; see also :mod:`bot.thingspace` and
:mod:`bot.render`."""
