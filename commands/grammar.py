"""The slash grammar: ``/ts <verb> [targets] [--options]``, parsed into an :class:`Invocation`.

Everything wrong with the text raises :class:`UsageError`, whose message says what was wrong and
what is accepted; it is shown to the user as an ephemeral reply and nothing else happens.
"""

from __future__ import annotations

import html
import re
import shlex
from dataclasses import dataclass, field

from commands.policy import VERBS

__all__ = ["Invocation", "TargetToken", "UsageError", "parse"]

#: Options that are flags; every other option takes a value.
FLAGS = frozenset({"dry-run"})

_SLACK_LINK = re.compile(r"<(?:tel:|mailto:)?([^<>|]*)(?:\|([^<>]*))?>")
_USER_REF = re.compile(r"^(?:<@|@)?([UW][A-Z0-9]{2,})(?:\|[^>]*)?>?$")
_CHANNEL_REF = re.compile(r"^(?:<#|#)?([CG][A-Z0-9]{2,})(?:\|[^>]*)?>?$")


class UsageError(Exception):
    """The command text is wrong; the message says what is accepted."""

    def __init__(self, message: str, *, verb: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.verb = verb


@dataclass(frozen=True)
class TargetToken:
    """A target as typed: ``group:NAME``, ``kind:id`` or a bare id (resolved later)."""

    text: str

    @property
    def is_group(self) -> bool:
        return self.text.lower().startswith("group:")

    @property
    def group(self) -> str:
        return self.text.split(":", 1)[1]


@dataclass(frozen=True)
class Invocation:
    verb: str
    targets: list[TargetToken] = field(default_factory=list)
    options: dict[str, str | bool] = field(default_factory=dict)
    text: str = ""
    raw: str = ""

    @property
    def dry_run(self) -> bool:
        return bool(self.options.get("dry-run"))

    @property
    def reason(self) -> str:
        value = self.options.get("reason", "")
        return value if isinstance(value, str) else ""


def _unlink(token: str) -> str:
    """Slack may turn numbers into ``<tel:5551234567|555-123-4567>``: keep the plain value."""

    def repl(m: re.Match[str]) -> str:
        inner = m.group(1)
        if token.startswith(("<@", "<#")):
            return m.group(0)
        return (
            re.sub(r"[^0-9A-Za-z:_.-]", "", inner)
            if inner.startswith(("+", "1")) or inner.isdigit()
            else inner
        )

    return _SLACK_LINK.sub(repl, token)


def _looks_like_target(token: str) -> bool:
    if ":" in token:
        kind = token.split(":", 1)[0].lower()
        return kind in {"group", "iccid", "mdn", "msisdn", "imei", "imsi", "meid", "esn", "eid", "min"}
    stripped = token.replace("-", "")
    return (
        len(stripped) >= 8
        and all(c in "0123456789abcdefABCDEF" for c in stripped)
        and any(c.isdigit() for c in stripped)
    )


def user_ref(value: str) -> str:
    """``<@U123|bob>``, ``@U123`` or ``U123`` -> ``U123``."""
    m = _USER_REF.match(value.strip())
    if not m:
        raise UsageError(f"{value!r} is not a Slack user: mention them, e.g. --user @alice")
    return m.group(1)


def channel_ref(value: str) -> str:
    m = _CHANNEL_REF.match(value.strip())
    if not m:
        raise UsageError(f"{value!r} is not a channel: name it with #, e.g. --channel #ops-alerts")
    return m.group(1)


def parse(text: str) -> Invocation:
    """Parse the text after ``/ts``."""
    raw = html.unescape(text).strip()  # Slack escapes &, < and > in what people type
    if not raw:
        return Invocation(verb="help", raw=raw)
    try:
        tokens = shlex.split(raw.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'"))
    except ValueError:
        raise UsageError('A quote is not closed. Put text with spaces in "double quotes".') from None
    verb = tokens[0].lower()
    if verb not in VERBS:
        known = ", ".join(VERBS)
        raise UsageError(f"`{tokens[0]}` is not a command. Commands: {known}. Try `/ts help`.")
    spec = VERBS[verb]
    options: dict[str, str | bool] = {}
    rest: list[str] = []
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--") and len(token) > 2:
            name, eq, value = token[2:].partition("=")
            name = name.lower()
            if name not in spec.options:
                accepted = ", ".join(f"--{o}" for o in spec.options) or "no options"
                raise UsageError(f"`{verb}` does not take --{name}. It accepts: {accepted}.", verb=verb)
            if name in FLAGS:
                if eq:
                    raise UsageError(f"--{name} is a switch; write it without a value.", verb=verb)
                options[name] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(tokens) or tokens[i].startswith("--"):
                        raise UsageError(f"--{name} needs a value, e.g. `{spec.usage}`.", verb=verb)
                    value = tokens[i]
                options[name] = value
        else:
            rest.append(token)
        i += 1
    if verb in {"find", "request"}:
        return Invocation(verb=verb, text=" ".join(rest), options=options, raw=raw)
    if verb == "help":
        return Invocation(verb=verb, text=" ".join(rest).lower(), raw=raw)
    targets: list[TargetToken] = []
    leftover: list[str] = []
    for j, token in enumerate(rest):
        pieces = [p for p in _unlink(token).split(",") if p]
        if verb == "sms" and not all(_looks_like_target(p) for p in pieces):
            leftover = rest[j:]
            break
        targets.extend(TargetToken(p) for p in pieces)
    message = " ".join(leftover)
    return Invocation(verb=verb, targets=targets, options=options, text=message, raw=raw)
