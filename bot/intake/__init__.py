"""Stage 1 of a ThingSpace callback: ``POST /thingspace/callbacks`` authenticated, committed to
the inbox, then answered 2xx (:mod:`bot.intake.route`)."""
