"""The seeded fleet: deterministic lines with identifiers, plans, groups and custom fields.

``build_fleet(count, seed, anchor)`` always returns the same devices for the same ``(count, seed)``
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
from dataclasses import dataclass, field
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
MAX_DEVICES: Final = 100_000
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
    """Identifier serials for sequence number ``k``; seed-dependent offsets."""

    def __init__(self, seed: int) -> None:
        self.offsets = [int(unit(seed, tag) * 10**12) for tag in range(8)]

    def make(self, k: int, area: str, tac: str) -> dict[str, str]:
        o = self.offsets
        iccid_body = f"8914800000{_perm(k, 10**9, 387_420_489, o[0]):09d}"
        mdn = f"{area}{2_000_000 + _perm(k, 8_000_000, 1_234_567, o[1]):07d}"
        imei_body = f"{tac}{_perm(k, 10**6, 123_457, o[2]):06d}"
        spare_body = f"35{_perm(k, 10**6, 654_323, o[3]):06d}{_perm(k, 10**6, 123_457, o[2]):06d}"
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


def build_fleet(count: int, seed: int, anchor: datetime) -> list[Device]:
    """``count`` devices for ``seed``; creation dates are relative to ``anchor``'s day (UTC)."""
    if not 1 <= count <= MAX_DEVICES:
        raise ValueError(f"devices must be between 1 and {MAX_DEVICES}, got {count}")
    day = anchor.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    serials = _Serials(seed)
    devices: list[Device] = []
    used_created: set[datetime] = set()
    meter_ordinal = 0
    k = 0
    for index in range(count):
        rng = random.Random(seed * 1_000_003 + index)
        if index < len(DEMO_CONDITIONS):
            condition, type_name = DEMO_CONDITIONS[index]
            site = "plant-7" if condition == "action-limit" else ("depot-2" if index % 2 == 0 else "depot-1")
            label = f"demo-{condition}"
        else:
            type_name = _pick(rng, _TYPE_WEIGHTS)
            site = _pick(rng, _SITES)
            condition = _pick(rng, _RANDOM_CONDITIONS)
            if condition == "suspended" and site == "plant-7":
                condition = "healthy"  # the bulk-suspend story starts from active lines
            label = f"{type_name}-{index:04d}"
        kind = DEVICE_TYPES[type_name]
        while True:
            made = serials.make(k, _AREA[site], kind.tac)
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
            "CustomField1": label,
            "CustomField2": site,
            "CustomField3": _CUSTOMERS[rng.randrange(len(_CUSTOMERS))],
            "CustomField5": _FIRMWARE[rng.randrange(len(_FIRMWARE))],
        }
        if kind.sleepy:
            custom["CustomField4"] = f"feeder-{meter_ordinal // 20 + 1:02d}"
            meter_ordinal += 1
        elif type_name == "tracker":
            custom["CustomField4"] = f"route-{rng.randrange(1, 40):02d}"
        devices.append(
            Device(
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
                activated=created + timedelta(hours=rng.randrange(1, 48)),
                activated_by=_ACTIVATORS[rng.randrange(len(_ACTIVATORS))],
                ip_address=made["ip"],
                phase=rng.randrange(0, WAKE_EVERY if kind.sleepy else 3600),
                base_condition=condition,
                variant=unit(seed, index, 77),
                plan=kind.plan,
            )
        )
    _mark_flaky(devices, seed)
    return devices


def _mark_flaky(devices: list[Device], seed: int) -> None:
    """About 0.3 % of plant-7 (at least one line) fails its first provisioning action once."""
    plant = [d for d in devices if d.site == "plant-7" and d.index >= len(DEMO_CONDITIONS)]
    if not plant:
        return
    wanted = max(1, round(len(plant) * 11 / 4000))
    for device in random.Random(seed * 7919).sample(plant, min(wanted, len(plant))):
        device.flaky = 1
