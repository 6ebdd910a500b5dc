"""Stage 2 of a ThingSpace callback: the inbox worker turns stored callbacks into request
outcomes, audit rows and Slack work (:mod:`bot.inbox.worker`); :mod:`bot.inbox.unanswered` settles
requests no callback answered."""
