"""User-facing wordings used in more than one place, so they read the same everywhere."""

from __future__ import annotations

__all__ = ["something_went_wrong"]


def something_went_wrong(ref: str, consequence: str = "Nothing was changed") -> str:
    """Our own failure, told to the person who asked: never a traceback, always the reference the
    log holds, what it means for them (*consequence*), and what to do next."""
    return (
        f":warning: Something went wrong on our side (ref `{ref}`). {consequence}; try again, and give "
        "the ref to whoever runs the bot if it repeats."
    )
