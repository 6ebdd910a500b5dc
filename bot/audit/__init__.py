"""Runtime audit duties: attributing ThingSpace calls to the person a job runs for
(:mod:`bot.audit.calls`) and recording the configuration at each start (:mod:`bot.audit.config_load`).
The audit log itself is :mod:`storage.audit`."""
