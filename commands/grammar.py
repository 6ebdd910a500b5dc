"""The slash grammar: ``/ts <verb> [targets] [--options]``, parsed into an :class:`Invocation`.

Everything wrong with the text raises :class:`UsageError`, whose message says what was wrong and
what is accepted; it is shown to the user as an ephemeral reply and nothing else happens.

Words and quotes, decisions:

* Words are separated by whitespace. ``"…"`` and ``'…'`` group words, and so do the curly
  quotes Slack clients type instead (``“…”``, ``‘…’``) — but only where they delimit: a quote
  opens at the start of a word (or right after ``=`` in ``--reason="…"``) and closes before
  whitespace or the end. An apostrophe inside or at the end of a word (``don’t``,
  ``owners’``) is text, and so is a single quote that is never closed; a double quote that is
  never closed is an error. Inside double quotes ``\\"`` and ``\\\\`` are a quote and a
  backslash; nothing else is escaped.
* Text is kept exactly as typed, curly quotes and apostrophes included (``someone’s`` stays
  so in a reason and in an SMS; the SMS length check counts it in the encoding it needs).
* ``--reason`` is at most :data:`MAX_REASON` characters; an empty or blank one means no reason.
* Quoted text is never a target. For ``sms`` and ``nidd`` the text starts at the first quoted
  word — every word before it is a target, labels such as ``demo-healthy`` included — or, with
  no quotes, at the first word that does not look like a device id; every other verb refuses
  quoted text.
* ``--reason`` takes the words after it up to the next option or device id, so
  ``--reason owner's report`` needs no quotes; other options take one word.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.render.blocks import escape, from_slack
from bot.thingspace.ids import BARE_KINDS, KIND_FORMATS, KINDS

__all__ = [
    "Invocation",
    "TargetToken",
    "UnknownVerb",
    "UsageError",
    "VerbInfo",
    "Word",
    "parse",
    "split_words",
    "suggest_verb",
    "unknown_verb_message",
]

#: What a verb takes after its name (``VerbSpec.arguments``): devices (``status TARGET``), free
#: text (``find TEXT``, ``request ID``, ``help [verb]``), or devices then a quoted message
#: (``sms TARGETS "TEXT"``).
TARGETS = "targets"
TEXT = "text"
TARGETS_AND_TEXT = "targets+text"

#: Options that are flags; every other option takes a value.
FLAGS = frozenset({"dry-run"})
#: Options whose value is free text: they take every following word up to the next option or
#: device id.
TEXT_OPTIONS = frozenset({"reason"})
#: Options that carry a message's data instead of quoted text (``nidd --base64 / --hex``)
DATA_OPTIONS = frozenset({"base64", "hex"})
#: the longest --reason kept (design: "--reason (at most 300 characters)")
MAX_REASON = 300

#: the one Slack link left in the text after :func:`bot.render.blocks.from_slack`: a phone number
_TEL_LINK = re.compile(r"<tel:([^<>|]*)(?:\|[^<>]*)?>")
_USER_REF = re.compile(r"^(?:<@|@)?([UW][A-Z0-9]{2,})(?:\|[^>]*)?>?$")
_CHANNEL_REF = re.compile(r"^(?:<#|#)?([CG][A-Z0-9]{2,})(?:\|[^>]*)?>?$")
#: a usage line whose targets are required (``status TARGET``, not ``history [TARGET]``)
_REQUIRED_TARGETS = re.compile(r"(?<!\[)\bTARGETS?\b")

_DOUBLE_QUOTES = '"\u201c\u201d'  # " “ ”
_SINGLE_QUOTES = "'\u2018\u2019"  # ' ‘ ’
_UNCLOSED = 'A quote is not closed. Put text with spaces in "double quotes".'
#: Characters no device id or group name contains and that a reader cannot see: C0 and C1
#: controls, zero-width characters, bidirectional marks, embeddings, overrides and isolates
#: (Unicode UAX #9), and the byte-order mark. A target with one is refused before anything is
#: recorded (SQLite's JSON functions, which index the audit log's targets, stop at U+0000).
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


class VerbInfo(Protocol):
    """What the grammar reads of a verb (a :class:`commands.context.VerbSpec` row)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str | None: ...
    @property
    def usage(self) -> str: ...
    @property
    def options(self) -> tuple[str, ...]: ...
    @property
    def arguments(self) -> str: ...


#: the verb table as the grammar sees it
Verbs = Mapping[str, VerbInfo]


class UsageError(Exception):
    """The command text is wrong; the message says what is accepted."""

    def __init__(self, message: str, *, verb: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.verb = verb


class UnknownVerb(UsageError):
    """The first word is not a verb. The message lists every verb; the router, which knows the
    user's role, answers with :func:`unknown_verb_message` over the verbs they may run."""

    def __init__(self, word: str, verbs: Verbs) -> None:
        super().__init__(unknown_verb_message(word, verbs))
        self.word = word


@dataclass(frozen=True)
class Word:
    """One word of the command text. ``quoted_from`` is where quoted text starts in ``text``
    (0 for ``"…"``, 9 for ``--reason="…"``), None if no part of the word was quoted."""

    text: str
    quoted_from: int | None = None

    @property
    def quoted(self) -> bool:
        return self.quoted_from is not None

    @property
    def is_option(self) -> bool:
        """``--name`` or ``--name=value`` typed as such (a quoted ``"--name"`` is text)."""
        return (
            self.text.startswith("--")
            and len(self.text) > 2
            and (self.quoted_from is None or self.quoted_from > 2)
        )


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
    """Slack may turn numbers into ``<tel:5551234567|555-123-4567>``: keep the plain value.
    Anything else in angle brackets was typed as such (:func:`bot.render.blocks.from_slack` has turned
    Slack's own links and mentions back into what was typed) and stays."""
    return _TEL_LINK.sub(lambda m: re.sub(r"[^0-9A-Za-z:_.-]", "", m.group(1)), token)


def _looks_like_target(token: str) -> bool:
    if ":" in token:
        kind = token.split(":", 1)[0].lower()
        return kind == "group" or kind in KINDS
    stripped = token.replace("-", "")
    return (
        len(stripped) >= 8
        and all(c in "0123456789abcdefABCDEF" for c in stripped)
        and any(c.isdigit() for c in stripped)
    )


def _word_is_target(word: Word) -> bool:
    """An unquoted word whose comma-separated pieces all look like targets."""
    if word.quoted or word.is_option:
        return False
    pieces = [p for p in _unlink(word.text).split(",") if p]
    return bool(pieces) and all(_looks_like_target(p) for p in pieces)


def _show(text: str, limit: int = 40) -> str:
    """The user's text inside an error message: one line, short, no backticks to break the code
    span, and escaped (:func:`bot.render.blocks.escape`) so it shows as typed."""
    text = " ".join(text.split()).replace("`", "'")
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def target_forms() -> str:
    """What a target may be, for error messages; the formats are :data:`KIND_FORMATS`."""
    kinds = " · ".join(f"{kind}: {fmt}" for kind, fmt in KIND_FORMATS.items())
    prefixed = " or ".join(k for k in KINDS if k not in BARE_KINDS)
    return (
        f"kind:id — {kinds} — or the id alone when only one kind fits ({prefixed} always needs "
        "its prefix), or group:NAME"
    )


def suggest_verb(word: str, verbs: Verbs) -> str | None:
    """The verb *word* was probably meant to be: the only verb it starts, else the closest by
    :func:`difflib.get_close_matches`; None when nothing is close."""
    word = word.strip().lower()
    if not word:
        return None
    starts = [v for v in verbs if v.startswith(word)]
    if len(word) >= 3 and len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(word, list(verbs), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_verb_message(word: str, table: Verbs, runnable: Collection[str] | None = None) -> str:
    """Why *word* is not a command, the verb it was probably meant to be, and the commands
    *runnable* by this user (every verb of *table* when None)."""
    verbs = [v for v in table if runnable is None or v in runnable]
    shown = _show(word)
    if not shown:
        first = "The command is empty."
    elif _looks_like_target(word):
        first = f"`{shown}` is a device, not a command: say what to do first"
        first += f", e.g. `/ts status {shown}`." if "status" in verbs else "."
    else:
        first = f"`{shown}` is not a command."
        guess = suggest_verb(word, table)
        if guess in verbs:
            first += f" Did you mean `{guess}`?"
        elif guess is not None:
            first += f" Did you mean `{guess}`? It needs the *{table[guess].role}* role."
    listed = "Commands you can run here" if runnable is not None else "Commands"
    return f"{first} {listed}: {', '.join(verbs)}. `/ts help` shows how to use them."


def split_words(raw: str) -> list[Word]:
    """Split the command text into :class:`Word` s (the module docstring has the quoting rules)."""
    words: list[Word] = []
    buf: list[str] = []
    quoted_from: int | None = None
    in_word = False
    i, n = 0, len(raw)
    # once a single quote is found never to close, none after it can: not scanning again keeps a
    # line of unclosed apostrophes linear
    singles_close_before = n
    while i < n:
        c = raw[i]
        if c.isspace():
            if in_word:
                words.append(Word("".join(buf), quoted_from))
                buf, quoted_from, in_word = [], None, False
            i += 1
            continue
        if (
            (c in _DOUBLE_QUOTES or c in _SINGLE_QUOTES)
            and quoted_from is None
            and (not buf or buf[-1] == "=")
        ):
            double = c in _DOUBLE_QUOTES
            end = _closing_quote(raw, i, double) if double or i < singles_close_before else None
            if end is None and double:
                raise UsageError(_UNCLOSED)
            if end is None:
                singles_close_before = i
            if end is not None:
                quoted_from = len(buf)
                inner = raw[i + 1 : end]
                buf.extend(re.sub(r'\\(["\\])', r"\1", inner) if double else inner)
                in_word = True
                i = end + 1
                continue
        if raw.startswith("<tel:", i) and (close := raw.find(">", i)) != -1:
            buf.extend(raw[i : close + 1])  # a phone link's label may have spaces: one word
            in_word = True
            i = close + 1
            continue
        buf.append(c)
        in_word = True
        i += 1
    if in_word:
        words.append(Word("".join(buf), quoted_from))
    return words


def _closing_quote(raw: str, start: int, double: bool) -> int | None:
    """Where the quote opened at *start* closes: a quote of the same family before whitespace or
    the end (inside double quotes, ``\\"`` and ``\\\\`` are skipped). None if it never closes."""
    quotes = _DOUBLE_QUOTES if double else _SINGLE_QUOTES
    j, n = start + 1, len(raw)
    while j < n:
        c = raw[j]
        if double and c == "\\" and j + 1 < n and raw[j + 1] in '"\\':
            j += 2
            continue
        if c in quotes and (j + 1 == n or raw[j + 1].isspace()):
            return j
        j += 1
    return None


def user_ref(value: str) -> str:
    """``<@U123|bob>``, ``@U123`` or ``U123`` -> ``U123``."""
    m = _USER_REF.match(value.strip())
    if not m:
        raise UsageError(f"{escape(repr(value))} is not a Slack user: mention them, e.g. --user @alice")
    return m.group(1)


def channel_ref(value: str) -> str:
    m = _CHANNEL_REF.match(value.strip())
    if not m:
        raise UsageError(
            f"{escape(repr(value))} is not a channel: name it with #, e.g. --channel #ops-alerts"
        )
    return m.group(1)


def parse(text: str, verbs: Verbs) -> Invocation:
    """Parse the text after ``/ts`` against the verb table *verbs*."""
    raw = from_slack(text).strip()  # what the person typed; shown only through blocks.escape
    if not raw:
        return Invocation(verb="help", raw=raw)
    words = split_words(raw)
    verb = words[0].text.lower()
    if verb not in verbs:
        raise UnknownVerb(words[0].text, verbs)
    spec = verbs[verb]
    options, rest, absorbed = _options(spec, words[1:])
    if spec.arguments == TEXT:
        text = " ".join(w.text if w.quoted else _unlink(w.text) for w in rest)
        return Invocation(verb=verb, text=text, options=options, raw=raw)
    targets, message = _targets(spec, rest, data_given=any(k in options for k in DATA_OPTIONS))
    _check_visible(verb, targets)
    if not targets and absorbed and _REQUIRED_TARGETS.search(spec.usage):
        reason = _show(str(options.get("reason", "")), 60)
        raise UsageError(
            f"`{verb}` names no device: every word after --reason (“{reason}”) was taken as the "
            "reason. Put the devices before --reason, as kind:id or group:NAME.",
            verb=verb,
        )
    return Invocation(verb=verb, targets=targets, options=options, text=message, raw=raw)


def _options(spec: VerbInfo, words: Sequence[Word]) -> tuple[dict[str, str | bool], list[Word], bool]:
    """Take the ``--options`` out of *words*: (options, the other words, whether a free-text
    option took more than one word)."""
    verb = spec.name
    options: dict[str, str | bool] = {}
    rest: list[Word] = []
    absorbed = False
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.is_option:
            rest.append(word)
            continue
        name, eq, value = word.text[2:].partition("=")
        name = name.lower()
        if name not in spec.options:
            accepted = ", ".join(f"--{o}" for o in spec.options) or "no options"
            raise UsageError(f"`{verb}` does not take --{_show(name)}. It accepts: {accepted}.", verb=verb)
        if name in FLAGS:
            if eq:
                raise UsageError(f"--{name} is a switch; write it without a value.", verb=verb)
            options[name] = True
            continue
        value_quoted = word.quoted
        if not eq:
            if i >= len(words) or words[i].is_option:
                raise UsageError(f"--{name} needs a value, e.g. `{spec.usage}`.", verb=verb)
            value, value_quoted = words[i].text, words[i].quoted
            i += 1
        if name in TEXT_OPTIONS and not value_quoted:
            while i < len(words) and not (words[i].quoted or words[i].is_option or _word_is_target(words[i])):
                value += " " + words[i].text
                absorbed = True
                i += 1
        if name == "reason":
            value = value.strip()  # empty or blank: no reason, everywhere
            if len(value) > MAX_REASON:
                raise UsageError(
                    f"--reason is {len(value):,} characters; at most {MAX_REASON} are kept with the action "
                    "(in the channel post and the audit log). Shorten it and run the command again.",
                    verb=verb,
                )
        options[name] = value
    return options, rest, absorbed


def _targets(
    spec: VerbInfo, words: Sequence[Word], *, data_given: bool = False
) -> tuple[list[TargetToken], str]:
    """The targets and, for a verb that takes a message (``sms``), the message. Quoted text is
    never a target."""
    verb = spec.name
    targets: list[TargetToken] = []
    #: with the message in quotes, every word before it is a target (a label such as
    #: ``demo-healthy`` too); unquoted, the message starts at the first word that is no device id
    first_quoted = next((j for j, w in enumerate(words) if w.quoted), None)
    if first_quoted is None and data_given:
        first_quoted = len(words)  # the data is an option (``nidd --hex``): every word is a target
    if (
        spec.arguments == TARGETS_AND_TEXT
        and first_quoted is None
        and len(words) == 1
        and not _word_is_target(words[0])
    ):
        # one word and nothing to send (``nidd demo-nbiot``): the message is what is missing
        raise _message_missing(spec, words[0])
    for j, word in enumerate(words):
        pieces = [p for p in _unlink(word.text).split(",") if p] if not word.quoted else []
        odd = next((p for p in pieces if not _looks_like_target(p)), None)
        if spec.arguments == TARGETS_AND_TEXT and first_quoted is not None and j < first_quoted:
            # a label is taken; a number too short or long for an id is still refused here
            odd = next((p for p in pieces if p.isdigit() and not _looks_like_target(p)), None)
        if spec.arguments != TARGETS_AND_TEXT:
            if word.quoted:
                raise _quoted_text(spec, word.text)
            targets.extend(TargetToken(p) for p in pieces)
            continue
        if word.quoted or odd is not None or not pieces:
            if not targets:
                raise _text_without_devices(verb, word, odd)
            return targets, " ".join(w.text for w in words[j:])
        targets.extend(TargetToken(p) for p in pieces)
    return targets, ""


def _check_visible(verb: str, targets: Sequence[TargetToken]) -> None:
    """Refuse a target holding a character nobody can see (:data:`_INVISIBLE`), naming it."""
    for target in targets:
        hidden = _INVISIBLE.search(target.text)
        if hidden is not None:
            shown = _show(_INVISIBLE.sub("", target.text))
            raise UsageError(
                f"`{shown}` contains an invisible character (U+{ord(hidden.group()):04X}), which no device "
                "id or group name has. Type the target again.",
                verb=verb,
            )


def _quoted_text(spec: VerbInfo, text: str) -> UsageError:
    verb = spec.name
    message = f"`{verb}` takes devices, not quoted text (“{_show(text)}”)."
    if "reason" in spec.options:
        message += f' To give a reason, write --reason "{_show(text)}".'
    return UsageError(message, verb=verb)


def _message_missing(spec: VerbInfo, word: Word) -> UsageError:
    """``nidd demo-nbiot`` / ``sms demo-healthy``: a device (or a label) and no message."""
    verb, shown = spec.name, _show(word.text)
    if verb == "nidd":
        first = (
            'The NIDD data is missing: give it after the devices as "TEXT" in quotes, or as '
            f'--base64 DATA or --hex DATA, e.g. `/ts nidd {shown} "ping"` or `/ts nidd {shown} --hex 70696e67`.'
        )
    else:
        what = "SMS text" if verb == "sms" else "text"
        first = (
            f'The {what} is missing: put it in quotes after the devices, e.g. `/ts {verb} {shown} "STATUS"`.'
        )
    return UsageError(f"{first} (`{shown}` was taken as the device.)", verb=verb)


def _text_without_devices(verb: str, word: Word, odd: str | None) -> UsageError:
    if word.quoted or odd is None:
        first = f"`{verb}` needs the devices first, then the text in quotes."
    else:
        what = {"sms": "the SMS", "nidd": "the NIDD data"}.get(verb, "the message")
        first = f"`{_show(odd)}` is not a device id, so {what} has nowhere to go."
    return UsageError(
        f"{first} A device is {target_forms()}. The text goes after the devices, in quotes.",
        verb=verb,
    )
