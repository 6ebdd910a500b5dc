"""Turning typed targets into devices: ``kind:id``, bare ids and ``group:NAME``.

Resolution is local work (the device directory), so it happens before the ack. A device that
is not in the directory is still accepted by its full id — ThingSpace is the judge — but the
guard rails then know less about it, and the confirmation card says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from bot.render.blocks import escape
from bot.thingspace.ids import DeviceId, InvalidDeviceId, parse_device_id
from commands.grammar import TargetToken, UsageError
from storage import directory
from storage.directory import DirectoryDevice

__all__ = ["ResolvedDevice", "resolve", "resolve_keys"]


@dataclass(frozen=True)
class ResolvedDevice:
    device_id: DeviceId
    key: str
    entry: DirectoryDevice | None

    @property
    def label(self) -> str:
        if self.entry:
            return self.entry.display
        return self.device_id.masked()

    @property
    def shown(self) -> str:
        """The label for mrkdwn: escaped, since labels are custom fields anyone can edit."""
        return escape(self.label)


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
            name = token.group.strip()
            members = directory.group_members(db, name)
            if not members:
                known = ", ".join(f"{g} ({n})" for g, n in directory.groups(db)[:15]) or "none synced yet"
                raise UsageError(escape(f"There is no device group `{name}`. Groups: {known}."), verb=verb)
            for member in members:
                kind, _, value = member.key.partition(":")
                member_id = DeviceId.from_wire({"kind": kind, "id": value})
                found.setdefault(member.key, ResolvedDevice(member_id, member.key, member))
            continue
        try:
            device_id = parse_device_id(token.text)
        except InvalidDeviceId as exc:
            labelled = directory.by_label(db, token.text) if ":" not in token.text else []
            if len(labelled) != 1:
                if len(labelled) > 1:
                    raise UsageError(
                        escape(f"Several lines are labelled `{token.text}`; name one by kind:id."), verb=verb
                    ) from None
                raise UsageError(escape(str(exc)), verb=verb) from None
            # a label from the directory (``demo-nbiot``): the line it names
            named = labelled[0]
            kind, _, value = named.key.partition(":")
            found.setdefault(
                named.key, ResolvedDevice(DeviceId.from_wire({"kind": kind, "id": value}), named.key, named)
            )
            continue
        entry = directory.lookup(db, device_id.kind, device_id.id)
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
