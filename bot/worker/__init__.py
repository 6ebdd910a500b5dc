"""The command worker: runs the jobs (queue rows of :mod:`storage.jobs`) that commands wrote
before acknowledging Slack (:mod:`bot.worker.command_worker`)."""
