"""The seeded fleet: deterministic lines with identifiers, plans, groups and custom fields.

:class:`Fleet` makes each line on demand from ``(seed, index)``, so a fleet of up to
:data:`MAX_DEVICES` (1,000,000) lines starts in about a second and holds only the lines that were
changed or looked up by identifier; every identifier formula is reversible, so a lookup by ICCID,
IMEI, MDN, IMSI, EID or MEID finds its line without an index of the fleet.
``build_fleet(count, seed, anchor)`` returns the same devices for the same ``(count, seed)``
(identifiers, types, groups, custom fields, creation dates, conditions); ``anchor`` (the clock at
start-up) only positions recent activity. Device #0 is the documentation's example ICCID
``89148000000800139708``, an active always-on tracker. Devices #0–#14 are the *demo devices*, one
per diagnostic condition (see :mod:`bot.sandbox.conditions`), labelled ``demo-<condition>`` in
``CustomField1``; the rest get a label such as ``tracker-0042``.

Device types and their groups: trackers (LTE-M, always-on, ``trackers``), meters (NB-IoT, awake
two minutes every 12 h, ``meters``), vending machines (``vending``) and gateways (``gateways``).
Every device is also in one site group; ``plant-7`` holds about 40 % of the fleet (the bulk
suspend story), and a few of its lines fail their first provisioning action transiently.
No identifier other than device #0's ICCID contains ``9708``, so ``find 9708`` has one answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from bot.sandbox.activity import Mode, Timeline, always_on, sleepy, unit

__all__ = [
    "DEMO_CONDITIONS",
    "DEVICE_TYPES",
    "EXAMPLE_ICCID",
    "MAX_DEVICES",
    "PLANS",
    "WAKE_EVERY",
    "Device",
    "DeviceType",
    "build_fleet",
    "luhn",
]

EXAMPLE_ICCID: Final = "89148000000800139708"
MAX_DEVICES: Final = 1_000_000
WAKE_EVERY: Final = 12 * 3600  # seconds between a meter's wakes

#: Demo device index -> (condition, device type). Index 0 is the stolen-tracker story's line.
DEMO_CONDITIONS: Final[tuple[tuple[str, str], ...]] = (
    ("usage-spike", "tracker"),
    ("healthy", "tracker"),
    ("suspended", "vending"),
    ("pending", "tracker"),
    ("action-limit", "gateway"),
    ("hung", "vending"),
    ("reconnect-loop", "gateway"),
    ("no-traffic", "vending"),
    ("imei-mismatch", "tracker"),
    ("asleep", "meter"),
    ("down", "meter"),
    ("over-plan", "gateway"),
    ("wake-overdue", "meter"),
    ("imei-changed", "tracker"),
    ("diag-unavailable", "vending"),
    ("nbiot", "meter"),
    ("roaming", "tracker"),
)

#: plan code -> (display name, size in KB). ``m2m4G`` is a code in ThingSpace's own style, with no
#: size in it: only the account's plan list (``sizeKb``) tells its allowance (the over-plan line).
PLANS: Final[dict[str, tuple[str, int]]] = {
    "M2M-LTEM-1GB": ("LTE-M tracker 1 GB", 1_048_576),
    "M2M-NBIOT-10MB": ("NB-IoT meter 10 MB", 10_240),
    "M2M-4G-500MB": ("4G vending 500 MB", 512_000),
    "M2M-4G-5GB": ("4G gateway 5 GB", 5_242_880),
    "m2m4G": ("M2M 4G pooled", 1_048_576),
}


@dataclass(frozen=True, slots=True)
class DeviceType:
    name: str
    group: str
    plan: str
    rat: str
    apn: str
    tac: str
    volume: int  # bytes per hour (always-on) or per wake (sleepy)
    sleepy: bool = False
    eid: bool = False
    meid: bool = False


DEVICE_TYPES: Final[dict[str, DeviceType]] = {
    "tracker": DeviceType(
        "tracker", "trackers", "M2M-LTEM-1GB", "LTE-M", "trk.vzwentp", "35420811", 1_000_000, eid=True
    ),
    "meter": DeviceType(
        "meter", "meters", "M2M-NBIOT-10MB", "NB-IoT", "mtr.vzwentp", "86543204", 20_000, sleepy=True
    ),
    "vending": DeviceType(
        "vending", "vending", "M2M-4G-500MB", "LTE", "vnd.vzwentp", "35301709", 300_000, meid=True
    ),
    "gateway": DeviceType(
        "gateway", "gateways", "M2M-4G-5GB", "LTE", "gw.vzwentp", "35917406", 4_000_000, eid=True
    ),
}
_TYPE_WEIGHTS: Final = (("tracker", 30), ("meter", 35), ("vending", 20), ("gateway", 15))
_SITES: Final = (
    ("plant-7", 40),
    ("plant-3", 15),
    ("depot-1", 12),
    ("depot-2", 12),
    ("field-east", 11),
    ("field-west", 10),
)
_AREA: Final = {
    "plant-7": "908",
    "plant-3": "732",
    "depot-1": "201",
    "depot-2": "973",
    "field-east": "609",
    "field-west": "856",
}
_CUSTOMERS: Final = ("Acme Logistics", "Northwind Utilities", "Contoso Vending", "Fabrikam Energy")
_ACTIVATORS: Final = ("sandbox-user", "jdoe@fleetops.example", "provisioning-bot")
_FIRMWARE: Final = ("fw-2.4.1", "fw-2.5.0", "fw-3.0.2")
_RANDOM_CONDITIONS: Final = (
    ("healthy", 930),
    ("suspended", 30),
    ("down", 20),
    ("hung", 10),
    ("imei-mismatch", 10),
)


@dataclass(slots=True)
class Device:
    """One line. Identifiers and attributes are fixed by the seed; the rest is live state."""

    index: int
    number: int  # ThingSpace's numeric "DeviceId" (extendedAttributes), the largestDeviceIdSeen cursor
    type: DeviceType
    iccid: str
    mdn: str
    imsi: str
    imei: str
    meid: str | None
    eid: str | None
    original_imei: str
    spare_imei: str  # the IMEI an "imei-mismatch" condition swaps in
    site: str
    groups: list[str]
    custom: dict[str, str]
    created: datetime
    activated: datetime
    activated_by: str
    ip_address: str
    phase: int  # seconds: offset of the hourly session grid / wake cycle
    base_condition: str
    variant: float  # 0..1, spreads the timing of random (non-demo) conditions
    flaky: int = 0  # provisioning actions that will still fail transiently
    # -- live state, (re)built by bot.sandbox.conditions.apply_condition ------------------------
    condition: str = "healthy"
    state: str = "active"
    plan: str = ""
    timeline: Timeline = field(default_factory=list)
    actions: list[datetime] = field(default_factory=list)
    suspensions: list[list[datetime | None]] = field(default_factory=list)
    resume_date: datetime | None = None
    imei_change: tuple[str, str, datetime] | None = None
    stuck: bool = False  # "pending": provisioning requests stay Pending
    imei_swap_pending: bool = False  # "imei-changed": the spare IMEI comes in once the line is listed
    unavailable: bool = False  # "diag-unavailable": its per-line reads answer HTTP 500
    sms_days: dict[str, int] = field(default_factory=dict)
    #: "roaming": from this epoch second on, ``roaming_share`` of its data is international
    roaming_from: int | None = None
    roaming_share: float = 0.0
    #: the device answers an SMS (or NIDD data) with ``prefix + text`` after ``delay`` seconds;
    #: None: it does not answer (``POST /_sandbox/devices/{ref}/replies``)
    sms_reply: tuple[str, float] | None = None
    #: SMS delivered to and sent by the device: (epoch second, "MtSms" | "MoSms"), oldest first
    sms_log: list[tuple[int, str]] = field(default_factory=list)
    nidd_reply: tuple[str, float] | None = None
    #: provisioning history after the activation: (when, eventType, eventBy), oldest first
    history: list[tuple[datetime, str, str]] = field(default_factory=list)

    @property
    def msisdn(self) -> str:
        return "1" + self.mdn

    @property
    def label(self) -> str:
        return self.custom.get("CustomField1", "")

    def ids(self) -> dict[str, str]:
        """Every identifier by kind (the lookup index uses all of them)."""
        found = {
            "mdn": self.mdn,
            "msisdn": self.msisdn,
            "min": self.mdn,
            "imsi": self.imsi,
            "iccid": self.iccid,
            "imei": self.imei,
        }
        if self.meid:
            found["meid"] = self.meid
        if self.eid:
            found["eid"] = self.eid
        return found

    def healthy_mode(self) -> Mode:
        """This type's normal behaviour: hourly sessions, or a 12-hour wake cycle for meters."""
        if self.type.sleepy:
            return sleepy(WAKE_EVERY, self.phase, self.type.volume)
        return always_on(self.type.volume, self.phase)


def luhn(digits: str) -> str:
    """The Luhn check digit for ``digits`` (ICCIDs and IMEIs end with one)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def _perm(k: int, modulus: int, multiplier: int, offset: int) -> int:
    """A bijection of [0, modulus): scrambles sequence numbers into plausible serials."""
    return (k * multiplier + offset) % modulus


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    names = [name for name, _ in weighted]
    weights = [weight for _, weight in weighted]
    return rng.choices(names, weights)[0]


class _Serials:
    """Identifier serials for sequence number ``k``; seed-dependent offsets.

    Every formula is a bijection of ``k`` (see :meth:`candidates`), so an identifier maps back
    to the only sequence numbers that could have made it. IMEIs have six serial digits: from
    ``k = 1,000,000`` on, the type's TAC (and the spare IMEI's leading digits) move on by one
    per million so a million-line fleet has no duplicate IMEI.
    """

    def __init__(self, seed: int) -> None:
        self.offsets = [int(unit(seed, tag) * 10**12) for tag in range(8)]

    def make(self, k: int, area: str, tac: str) -> dict[str, str]:
        o = self.offsets
        block = k // 10**6
        tac = tac[:-1] + str((int(tac[-1]) + block) % 10)
        iccid_body = f"8914800000{_perm(k, 10**9, 387_420_489, o[0]):09d}"
        mdn = f"{area}{2_000_000 + _perm(k, 8_000_000, 1_234_567, o[1]):07d}"
        imei_body = f"{tac}{_perm(k, 10**6, 123_457, o[2]):06d}"
        spare_body = f"3{5 + block}{_perm(k, 10**6, 654_323, o[3]):06d}{_perm(k, 10**6, 123_457, o[2]):06d}"
        return {
            "iccid": iccid_body + luhn(iccid_body),
            "mdn": mdn,
            "imsi": f"311480{_perm(k, 10**9, 387_420_489, o[4]):09d}",
            "imei": imei_body + luhn(imei_body),
            "spare_imei": spare_body + luhn(spare_body),
            "eid": f"890490320000{_perm(k, 10**12, 387_420_489, o[5]):012d}00000000",
            "meid": f"A10000{_perm(k, 16**8, 2_654_435_761, o[6]):08X}",
            "ip": f"10.{64 + _perm(k, 64, 5, o[7]) % 64}.{(k // 250) % 250}.{k % 250 + 2}",
        }

    def candidates(self, kind: str, value: str) -> list[int]:
        """The sequence numbers whose ``kind`` identifier could be ``value`` (empty if none)."""
        o = self.offsets
        try:
            if kind == "iccid" and len(value) == 20 and value.startswith("8914800000"):
                return [_unperm(int(value[10:19]), 10**9, 387_420_489, o[0])]
            if kind == "imsi" and len(value) == 15 and value.startswith("311480"):
                return [_unperm(int(value[6:]), 10**9, 387_420_489, o[4])]
            if kind in ("mdn", "min", "msisdn"):
                digits = value[1:] if kind == "msisdn" and len(value) == 11 else value
                if len(digits) != 10 or int(digits[3:]) < 2_000_000:
                    return []
                return [_unperm(int(digits[3:]) - 2_000_000, 8_000_000, 1_234_567, o[1])]
            if kind == "imei" and len(value) == 15:
                low = _unperm(int(value[8:14]), 10**6, 123_457, o[2])
                return [low + block * 10**6 for block in range(10)]
            if kind == "eid" and len(value) == 32:
                return [_unperm(int(value[12:24]), 10**12, 387_420_489, o[5])]
            if kind == "meid" and len(value) == 14 and value.startswith("A10000"):
                return [_unperm(int(value[6:], 16), 16**8, 2_654_435_761, o[6])]
        except ValueError:
            return []
        return []


def _unperm(value: int, modulus: int, multiplier: int, offset: int) -> int:
    """The inverse of :func:`_perm`."""
    return ((value - offset) * pow(multiplier, -1, modulus)) % modulus


_STRIDE: Final = 4  # serial numbers tried per line (one containing "9708" is passed over)
_DICE: Final = 18  # seeded random bytes per line
_SPAN: Final = 700 * 86400  # creation dates fall in the 700 days before the last 30
_RANK_MULTIPLIER: Final = 2_654_435_761  # a prime: coprime with any fleet size
_FLAKY_IN_65536: Final = 180  # about 11 in 4,000 plant-7 lines fail their first action once


def _weighted(weighted: tuple[tuple[str, int], ...], roll: int, scale: int) -> str:
    """The entry of ``weighted`` that ``roll`` (0 <= roll < scale) falls on."""
    total = sum(weight for _, weight in weighted)
    point = roll * total // scale
    for name, weight in weighted:
        if point < weight:
            return name
        point -= weight
    return weighted[-1][0]


class Fleet:
    """The seeded fleet of ``count`` lines, made on demand from each line's index.

    Nothing is built per line up front: a line's identifiers, type, site, custom fields,
    creation date and condition follow from ``(seed, index)`` (18 seeded random bytes per line,
    18 MB for a million lines), and an identifier maps back to its index (:meth:`lookup`), so a
    million-line sandbox starts in seconds. Lines in :attr:`live` are the ones kept: taken with
    ``fleet[i]`` (by whoever may change them: actions, conditions, reachability, lookups by
    identifier); every other line is made afresh, as of ``anchor``, each time it is read
    (:meth:`peek`, iteration). The demo lines (#0–#16) are made exactly as before.
    """

    def __init__(
        self, count: int, seed: int, anchor: datetime, prepare: Callable[[Device], None] | None = None
    ) -> None:
        if not 1 <= count <= MAX_DEVICES:
            raise ValueError(f"devices must be between 1 and {MAX_DEVICES}, got {count}")
        self.count = count
        self.seed = seed
        self.anchor = anchor
        self.prepare = prepare
        self.day = anchor.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.serials = _Serials(seed)
        self.live: dict[int, Device] = {}
        demo = min(count, len(DEMO_CONDITIONS))
        self.demo_count = demo
        self._demo = _demo_lines(demo, seed, self.day, self.serials)
        self._demo_by_k = {k: d.index for d, k in self._demo}
        self._demo_created = {d.created for d, _ in self._demo}
        self._dice = random.Random(seed * 1_000_003 - 1).randbytes(_DICE * count)
        # creation order is a seeded shuffle of the lines, so a line's age does not follow its index
        self._ranks = max(1, count - demo)
        self._spacing = max(2, _SPAN // self._ranks)
        self._rank_offset = int(unit(seed, 5) * self._ranks)
        self._rank_inverse = pow(_RANK_MULTIPLIER % self._ranks, -1, self._ranks) if self._ranks > 1 else 0
        # at least one plant-7 line is flaky: of the first 200 non-demo plant-7 lines, the one with
        # the highest ICCID (so not the lines a test picks first when it sorts by key)
        plant = [i for i in range(demo, min(count, demo + 500)) if self.site(i) == "plant-7"][:200]
        self._first_plant = max(plant, key=lambda i: self._iccid(i)) if plant else None

    # -- a line's seeded attributes --------------------------------------------------------------
    def _roll(self, index: int, at: int, width: int = 2) -> int:
        start = index * _DICE + at
        return int.from_bytes(self._dice[start : start + width], "big")

    def _type(self, index: int) -> str:
        if index < self.demo_count:
            return self._demo[index][0].type.name
        return _weighted(_TYPE_WEIGHTS, self._roll(index, 0), 65536)

    def site(self, index: int) -> str:
        if index < self.demo_count:
            return self._demo[index][0].site
        return _weighted(_SITES, self._roll(index, 2), 65536)

    def base_condition(self, index: int) -> str:
        if index < self.demo_count:
            return self._demo[index][0].base_condition
        condition = _weighted(_RANDOM_CONDITIONS, self._roll(index, 4), 65536)
        if condition == "suspended" and self.site(index) == "plant-7":
            return "healthy"  # the bulk-suspend story starts from active lines
        return condition

    def static_groups(self, index: int) -> list[str]:
        return [DEVICE_TYPES[self._type(index)].group, self.site(index)]

    def created(self, index: int) -> datetime:
        if index < self.demo_count:
            return self._demo[index][0].created
        return self.day - timedelta(days=730, seconds=-self._created_offset(index))

    def _rank(self, index: int) -> int:
        """The line's place in creation order among the non-demo lines (a bijection)."""
        return ((index - self.demo_count) * _RANK_MULTIPLIER + self._rank_offset) % self._ranks

    def _ranked(self, rank: int) -> int:
        """The inverse of :meth:`_rank`."""
        return ((rank - self._rank_offset) * self._rank_inverse) % self._ranks + self.demo_count

    def _created_offset(self, index: int) -> int:
        """Seconds after the first creation date; strictly rising with the line's rank."""
        jitter = self._roll(index, 6) % max(1, self._spacing - 2)
        offset = self._rank(index) * self._spacing + jitter
        if self.day - timedelta(days=730, seconds=-offset) in self._demo_created:
            offset += 1
        return offset

    def _iccid(self, index: int) -> str:
        kind = DEVICE_TYPES[self._type(index)]
        return self._serials_for(index, _AREA[self.site(index)], kind.tac)["iccid"]

    def _serials_for(self, index: int, area: str, tac: str) -> dict[str, str]:
        """A non-demo line's identifiers: the first of its serial numbers with no "9708" in them."""
        made = self.serials.make(index * _STRIDE, area, tac)
        for attempt in range(1, _STRIDE):
            checked = [v for key, v in made.items() if key not in ("ip",)]
            if not any("9708" in value for value in checked):
                break
            made = self.serials.make(index * _STRIDE + attempt, area, tac)
        return made

    def static(self, index: int) -> Device:
        """Line ``index`` as seeded, before its condition is applied (a new object each time)."""
        if not 0 <= index < self.count:
            raise IndexError(index)
        if index < self.demo_count:
            return _copy(self._demo[index][0])
        type_name, site = self._type(index), self.site(index)
        kind = DEVICE_TYPES[type_name]
        made = self._serials_for(index, _AREA[site], kind.tac)
        created = self.created(index)
        custom = {
            "CustomField1": f"{type_name}-{index:04d}",
            "CustomField2": site,
            "CustomField3": _CUSTOMERS[self._roll(index, 8, 1) % len(_CUSTOMERS)],
            "CustomField5": _FIRMWARE[self._roll(index, 9, 1) % len(_FIRMWARE)],
        }
        if kind.sleepy:
            custom["CustomField4"] = f"feeder-{index // 57 + 1:02d}"
        elif type_name == "tracker":
            custom["CustomField4"] = f"route-{self._roll(index, 10, 1) % 39 + 1:02d}"
        flaky = site == "plant-7" and (index == self._first_plant or self._roll(index, 15) < _FLAKY_IN_65536)
        return _device(
            index,
            kind,
            made,
            site,
            custom,
            created,
            activated_hours=self._roll(index, 11, 1) % 47 + 1,
            activated_by=_ACTIVATORS[self._roll(index, 12, 1) % len(_ACTIVATORS)],
            phase=self._roll(index, 13) % (WAKE_EVERY if kind.sleepy else 3600),
            base_condition=self.base_condition(index),
            variant=unit(self.seed, index, 77),
            flaky=int(flaky),
        )

    # -- reading lines ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    def peek(self, index: int) -> Device:
        """Line ``index``: the kept one, or one made afresh (changes to it are not kept)."""
        found = self.live.get(index)
        if found is not None:
            return found
        device = self.static(index)
        if self.prepare is not None:
            self.prepare(device)
        return device

    def __getitem__(self, index: int) -> Device:
        """Line ``index``, kept from now on (so whatever changes it stays changed)."""
        if index < 0:
            index += self.count
        found = self.live.get(index)
        if found is None:
            found = self.live[index] = self.peek(index)
        return found

    def __iter__(self) -> Iterator[Device]:
        return (self.peek(index) for index in range(self.count))

    # -- finding lines ----------------------------------------------------------------------------
    def lookup(self, kind: str, value: str) -> int | None:
        """The index of the seeded line whose ``kind`` identifier is ``value`` as seeded, or None.

        A kept line whose identifier changed since is the caller's to check."""
        if kind == "iccid" and value == EXAMPLE_ICCID:
            return 0
        for k in self.serials.candidates(kind, value):
            index = self._demo_by_k.get(k)
            if index is None:
                index = k // _STRIDE
                if not self.demo_count <= index < self.count:
                    continue
            seeded = self.static(index)
            if kind == "imei":
                if value in (seeded.original_imei, seeded.spare_imei):
                    return index
            elif seeded.ids().get(kind) == value:
                return index
        return None

    def label_index(self, label: str) -> int | None:
        """The index of the seeded line labelled ``label`` (case-insensitive), or None."""
        text = label.strip().lower()
        for index in range(self.demo_count):
            if self._demo[index][0].label == text:
                return index
        name, _, number = text.rpartition("-")
        if name not in DEVICE_TYPES or not number.isdigit() or len(number) < 4:
            return None
        index = int(number)
        if not self.demo_count <= index < self.count or self._type(index) != name:
            return None
        if f"{name}-{index:04d}" != text:
            return None
        return index

    def first_numbered_after(self, largest: int) -> int:
        """The first index whose DeviceId is above ``largest`` (DeviceIds rise with the index)."""
        if largest < 70_000_000:
            return 0
        return min(self.count, (largest - 70_000_000) // 37 + 1)

    def created_order(self, after: datetime | None = None) -> Iterator[int]:
        """Indexes by creation date, from the first created after ``after``."""
        demo = sorted((d.created, d.index) for d, _ in self._demo if after is None or d.created > after)
        first = 0
        ranks = self.count - self.demo_count
        if after is not None:
            seconds = int((after - (self.day - timedelta(days=730))).total_seconds())
            first = max(0, min(ranks, seconds // self._spacing - 1))
            while first < ranks and self.created(self._ranked(first)) <= after:
                first += 1
        position = 0
        for rank in range(first, ranks):
            index = self._ranked(rank)
            when = self.created(index)
            while position < len(demo) and demo[position][0] < when:
                yield demo[position][1]
                position += 1
            yield index
        for _, index in demo[position:]:
            yield index

    def indexes_with(self, conditions: frozenset[str]) -> Iterator[int]:
        """Seeded lines whose base condition is one of ``conditions`` (a scan of the seed bytes)."""
        for index in range(self.count):
            if self.base_condition(index) in conditions:
                yield index

    def in_group(self, index: int, group: str) -> bool:
        found = self.live.get(index)
        return group in (found.groups if found is not None else self.static_groups(index))

    def group_names(self) -> set[str]:
        names = {kind.group for kind in DEVICE_TYPES.values()} | {site for site, _ in _SITES}
        for device in self.live.values():
            names.update(device.groups)
        return names


def _copy(device: Device) -> Device:
    return replace(
        device,
        groups=list(device.groups),
        custom=dict(device.custom),
        timeline=[],
        actions=[],
        suspensions=[],
        sms_days={},
        sms_log=[],
        history=[],
    )


def _demo_lines(count: int, seed: int, day: datetime, serials: _Serials) -> list[tuple[Device, int]]:
    """The demo lines (#0–#16), made as the sandbox always made them; with their serial numbers."""
    lines: list[tuple[Device, int]] = []
    used_created: set[datetime] = set()
    meter_ordinal = 0
    k = 0
    for index in range(count):
        rng = random.Random(seed * 1_000_003 + index)
        condition, type_name = DEMO_CONDITIONS[index]
        site = "plant-7" if condition == "action-limit" else ("depot-2" if index % 2 == 0 else "depot-1")
        kind = DEVICE_TYPES[type_name]
        while True:
            made = serials.make(k, _AREA[site], kind.tac)
            used = k
            k += 1
            checked = [v for key, v in made.items() if key not in ("ip", "spare_imei")]
            if index == 0:
                checked.remove(made["iccid"])
            if not any("9708" in value for value in checked) and "9708" not in made["spare_imei"]:
                break
        if index == 0:
            made["iccid"] = EXAMPLE_ICCID
        created = day - timedelta(days=30, seconds=rng.randrange(0, 700 * 86400))
        while created in used_created:
            created += timedelta(seconds=1)
        used_created.add(created)
        custom = {
            "CustomField1": f"demo-{condition}",
            "CustomField2": site,
            "CustomField3": _CUSTOMERS[rng.randrange(len(_CUSTOMERS))],
            "CustomField5": _FIRMWARE[rng.randrange(len(_FIRMWARE))],
        }
        if kind.sleepy:
            custom["CustomField4"] = f"feeder-{meter_ordinal // 20 + 1:02d}"
            meter_ordinal += 1
        elif type_name == "tracker":
            custom["CustomField4"] = f"route-{rng.randrange(1, 40):02d}"
        device = _device(
            index,
            kind,
            made,
            site,
            custom,
            created,
            activated_hours=rng.randrange(1, 48),
            activated_by=_ACTIVATORS[rng.randrange(len(_ACTIVATORS))],
            phase=rng.randrange(0, WAKE_EVERY if kind.sleepy else 3600),
            base_condition=condition,
            variant=unit(seed, index, 77),
        )
        lines.append((device, used))
    return lines


def _device(
    index: int,
    kind: DeviceType,
    made: Mapping[str, str],
    site: str,
    custom: dict[str, str],
    created: datetime,
    *,
    activated_hours: int,
    activated_by: str,
    phase: int,
    base_condition: str,
    variant: float,
    flaky: int = 0,
) -> Device:
    """One line from its identifiers (*made*) and what its generator drew for it; the large fleet
    (derived per index) and the small one (drawn in order) share it."""
    return Device(
        index=index,
        number=70_000_000 + index * 37,
        type=kind,
        iccid=made["iccid"],
        mdn=made["mdn"],
        imsi=made["imsi"],
        imei=made["imei"],
        meid=made["meid"] if kind.meid else None,
        eid=made["eid"] if kind.eid else None,
        original_imei=made["imei"],
        spare_imei=made["spare_imei"],
        site=site,
        groups=[kind.group, site],
        custom=custom,
        created=created,
        activated=created + timedelta(hours=activated_hours),
        activated_by=activated_by,
        ip_address=made["ip"],
        phase=phase,
        base_condition=base_condition,
        variant=variant,
        flaky=flaky,
        plan=kind.plan,
    )


def build_fleet(count: int, seed: int, anchor: datetime) -> list[Device]:
    """``count`` seeded lines for ``seed`` before their conditions (see :class:`Fleet`);
    creation dates are relative to ``anchor``'s day (UTC)."""
    fleet = Fleet(count, seed, anchor)
    return [fleet.static(index) for index in range(count)]
