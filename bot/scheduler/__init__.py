"""The scheduler: APScheduler running the scheduled tasks (:mod:`bot.scheduler.tasks`,
:mod:`bot.scheduler.reachability_tasks`) in the one process that holds the lease
(:mod:`bot.scheduler.lease`), built by :mod:`bot.scheduler.build`."""
