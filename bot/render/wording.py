"""User-facing wordings used in more than one place, so they read the same everywhere."""

from __future__ import annotations

__all__ = ["line_state", "something_went_wrong"]


def something_went_wrong(ref: str, consequence: str = "Nothing was changed") -> str:
    """Our own failure, told to the person who asked: never a traceback, always the reference the
    log holds, what it means for them (*consequence*), and what to do next."""
    return (
        f":warning: Something went wrong on our side (ref `{ref}`). {consequence}; try again, and give "
        "the ref to whoever runs the bot if it repeats."
    )


#: ThingSpace's line states as people say them, with the icon ``status`` shows
_STATE_WORDS = {"suspend": "suspended", "deactive": "deactivated", "gone": "no longer in the account"}
_STATE_ICONS = {
    "active": ":large_green_circle:",
    "suspend": ":double_vertical_bar:",
    "gone": ":heavy_minus_sign:",
}


def line_state(state: str | None) -> tuple[str, str]:
    """``(icon, word)`` for a line state (``suspend`` -> ``:double_vertical_bar:``, ``suspended``),
    the same on the status card and in ``find``. Unknown states are shown as ThingSpace names them."""
    state = state or "unknown"
    return _STATE_ICONS.get(state, ":white_circle:"), _STATE_WORDS.get(state, state)
