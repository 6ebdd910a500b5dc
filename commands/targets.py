"""Turning typed targets into devices: ``kind:id``, bare ids and ``group:NAME``.

Resolution is local work (the device directory), so it happens before the ack. A device that
is not in the directory is still accepted by its full id — ThingSpace is the judge — but the
guard rails then know less about it, and the confirmation card says so.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from sqlite_utils import Database

from bot.render.blocks import escape
from bot.thingspace.ids import DeviceId, InvalidDeviceId, check_digit_problem, parse_device_id
from commands.grammar import TargetToken, UsageError
from storage import directory
from storage.directory import DirectoryDevice

__all__ = ["ResolvedDevice", "audit_targets", "group_size", "resolve", "resolve_keys", "targeted_size"]


class ResolvedDevice:
    """A typed target as a device: its key (``kind:id``), its directory entry if the directory
    has one, and the identifier to send ThingSpace.

    A ``group:`` member carries only what the guard rails and the card need (label, state,
    auto-resume date, read through the membership index); its identifier and entry are made
    when first asked for, so a 100,000-line group costs no parsing on the ack path."""

    __slots__ = ("_device_id", "_entry", "_member", "key")

    def __init__(
        self,
        device_id: DeviceId | None,
        key: str,
        entry: DirectoryDevice | None,
        member: tuple[str, str, str, str | None, str] | None = None,
    ) -> None:
        self._device_id = device_id
        self.key = key
        self._entry = entry
        #: (key, label, state, resume_date, plan) of a group member, as the membership index holds it
        self._member = member

    @property
    def device_id(self) -> DeviceId:
        if self._device_id is None:
            kind, _, value = self.key.partition(":")
            self._device_id = DeviceId.from_wire({"kind": kind, "id": value})
        return self._device_id

    @property
    def entry(self) -> DirectoryDevice | None:
        if self._entry is None and self._member is not None:
            self._entry = directory.member_entry(*self._member)
        return self._entry

    @property
    def from_group(self) -> bool:
        """Named through a ``group:`` target."""
        return self._member is not None

    @property
    def in_directory(self) -> bool:
        return self._entry is not None or self._member is not None

    @property
    def state(self) -> str:
        """The line state the directory holds (``""`` when not in the directory)."""
        if self._member is not None:
            return self._member[2]
        return self._entry.state if self._entry is not None else ""

    @property
    def resume_date(self) -> str | None:
        if self._member is not None:
            return self._member[3]
        return self._entry.resume_date if self._entry is not None else None

    @property
    def label(self) -> str:
        if self._member is not None:
            return directory.display(self._member[1], self.key)
        if self._entry:
            return self._entry.display
        return self.device_id.masked()

    @property
    def shown(self) -> str:
        """The label for mrkdwn: escaped, since labels are custom fields anyone can edit."""
        return escape(self.label)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResolvedDevice) and (other.key, other.entry) == (self.key, self.entry)

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"ResolvedDevice({self.key!r})"


def group_size(db: Database, name: str, *, verb: str, max_targets: int) -> int:
    """How many lines group *name* holds, from the membership index alone; a group that does not
    exist, or is larger than *max_targets*, is a :class:`UsageError`."""
    size = directory.group_count(db, name)
    if size == 0:
        names = directory.group_names(db)
        close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)
        known = ", ".join(names[:15]) + (", …" if len(names) > 15 else "") or "none synced yet"
        hint = f" Did you mean {' or '.join(f'`group:{c}`' for c in close)}?" if close else ""
        raise UsageError(escape(f"There is no device group `{name}`.{hint} Groups: {known}."), verb=verb)
    if size > max_targets:
        raise UsageError(
            escape(
                f"group:{name} has {size:,} devices; one command may name at most {max_targets:,}. "
                "Narrow the group, or split it."
            ),
            verb=verb,
        )
    return size


def targeted_size(db: Database, tokens: Sequence[TargetToken], *, verb: str, max_targets: int) -> int:
    """An upper bound of how many lines *tokens* name, read from indexes only (each group's
    count, one per other target): what decides whether a command is prepared after the ack."""
    return sum(
        group_size(db, t.group.strip(), verb=verb, max_targets=max_targets) if t.is_group else 1
        for t in tokens
    )


def _group(db: Database, name: str, verb: str, max_targets: int) -> list[ResolvedDevice]:
    """The lines of group *name*, through the membership index: counted first (a group larger
    than *max_targets* is refused before any line is read), then read as key, label, state and
    auto-resume date only — what the guard rails and the card need; the worker reads whole rows."""
    group_size(db, name, verb=verb, max_targets=max_targets)
    return [ResolvedDevice(None, row[0], None, row) for row in directory.group_member_rows(db, name)]


def resolve(
    db: Database, tokens: Sequence[TargetToken], *, verb: str, max_targets: int, single: bool = False
) -> list[ResolvedDevice]:
    if not tokens:
        what = "one device" if single else "one or more devices"
        raise UsageError(
            f"`{verb}` needs {what}: kind:id (e.g. iccid:89148000000800139708), a bare ICCID/IMEI, "
            "or group:NAME.",
            verb=verb,
        )
    found: dict[str, ResolvedDevice] = {}
    for token in tokens:
        if token.is_group:
            for member in _group(db, token.group.strip(), verb, max_targets):
                found.setdefault(member.key, member)
            continue
        try:
            device_id = parse_device_id(token.text)
        except InvalidDeviceId as exc:
            if exc.candidates:  # a bare number several kinds fit: taken if it names one line
                device_id = _one_line(db, token.text, exc, verb)
            else:
                labelled = directory.by_label(db, token.text) if ":" not in token.text else []
                if len(labelled) != 1:
                    if len(labelled) > 1:
                        raise UsageError(
                            escape(f"Several lines are labelled `{token.text}`; name one by kind:id."),
                            verb=verb,
                        ) from None
                    raise UsageError(escape(str(exc)), verb=verb) from None
                # a label from the directory (``demo-nbiot``): the line it names
                named = labelled[0]
                kind, _, value = named.key.partition(":")
                found.setdefault(
                    named.key,
                    ResolvedDevice(DeviceId.from_wire({"kind": kind, "id": value}), named.key, named),
                )
                continue
        entry = directory.lookup(db, device_id.kind, device_id.id)
        if entry is None:
            # a line the synced account does not list: a wrong check digit is a typo, said before
            # ThingSpace is asked (before the first directory sync the bot cannot tell, and asks)
            problem = check_digit_problem(device_id)
            if problem and directory.size(db) > 0:
                raise UsageError(escape(problem), verb=verb)
        key = entry.key if entry else str(device_id)
        if entry:
            kind, _, value = entry.key.partition(":")
            device_id = DeviceId.from_wire({"kind": kind, "id": value})
        found.setdefault(key, ResolvedDevice(device_id, key, entry))
        if len(found) > max_targets:
            break
    devices = list(found.values())
    if single and len(devices) != 1:
        raise UsageError(f"`{verb}` takes exactly one device; you named {len(devices)}.", verb=verb)
    if len(devices) > max_targets:
        raise UsageError(
            f"That is {len(devices):,} devices; one command may name at most {max_targets:,}. "
            "Split the list or narrow the group.",
            verb=verb,
        )
    return devices


def audit_targets(tokens: Sequence[TargetToken], devices: Sequence[ResolvedDevice]) -> list[str]:
    """The targets an audit entry written on the ack path names: each ``group:NAME`` as typed,
    and the lines named one by one (every line, when no group was typed)."""
    groups = [f"group:{t.group.strip().lower()}" for t in tokens if t.is_group]
    if not groups:
        return [d.key for d in devices]
    return groups + [d.key for d in devices if not d.from_group]


def _one_line(db: Database, text: str, exc: InvalidDeviceId, verb: str) -> DeviceId:
    """A bare number that fits several kinds (a 10-digit MDN or MIN, say) is taken when the
    directory knows exactly one line by it, whichever kinds; a prefix is asked for only when the
    kinds name different lines (or no line at all)."""
    value = text.strip()
    lines: dict[str, list[str]] = {}
    for kind in exc.candidates:
        entry = directory.lookup(db, kind, value)
        if entry is not None:
            lines.setdefault(entry.key, []).append(kind)
    if len(lines) == 1:
        (key,) = lines
        kind, _, ident = key.partition(":")
        return DeviceId.from_wire({"kind": kind, "id": ident})
    if len(lines) > 1:
        named = "; ".join(f"{' and '.join(kinds)} of {escape(key)}" for key, kinds in lines.items())
        raise UsageError(
            f"`{escape(value)}` names more than one line here ({named}); say which with a prefix, "
            f"e.g. `{exc.candidates[0]}:{escape(value)}`.",
            verb=verb,
        )
    raise UsageError(escape(str(exc)), verb=verb)


def resolve_keys(db: Database, keys: Sequence[str]) -> list[ResolvedDevice]:
    """Devices stored by key (``kind:id``, as pending actions and requests keep them), with their
    directory entries where the directory has them; order kept."""
    refs = [(kind, value) for kind, _, value in (k.partition(":") for k in keys)]
    found = directory.lookup_many(db, refs)
    out = []
    for key, (kind, value) in zip(keys, refs, strict=True):
        device_id = DeviceId.from_wire({"kind": kind, "id": value})
        out.append(ResolvedDevice(device_id, key, found.get((kind, device_id.id))))
    return out
