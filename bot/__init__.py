"""tsbot: Slack chat-ops for Verizon ThingSpace fleets."""

__version__ = "0.1.0"
