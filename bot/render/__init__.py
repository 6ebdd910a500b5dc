"""What Slack shows: Block Kit building blocks and the one escape function
(:mod:`bot.render.blocks`), request results and progress (:mod:`bot.render.results`) and alert cards
(:mod:`bot.render.alert_cards`). Pure functions, core tier."""
