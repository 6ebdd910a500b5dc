"""Slash-command verbs: grammar, permissions, confirmation and one module per command family."""
