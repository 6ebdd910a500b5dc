"""The sandbox's world: the fleet and its indexes, asynchronous requests, listeners, timers.

:class:`SandboxState` is shared by the HTTP handlers (uvicorn's thread), the callback sender's
ticker and the Python control API, so every public method takes ``self.lock``. Devices are
indexed by every identifier kind (and by label), so each request costs O(its own devices).
The operations themselves live in :mod:`bot.sandbox.actions`, :mod:`bot.sandbox.reachability`
and :mod:`bot.sandbox.views`; this module holds what they share.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from bot.sandbox.auth import Credentials
from bot.sandbox.callback_sender import API_PATH, Delivery, Listener
from bot.sandbox.clock import Clock, iso
from bot.sandbox.conditions import apply_condition
from bot.sandbox.errors import (
    ACCOUNT_NOT_FOUND,
    DEVICE_NOT_FOUND,
    MAX_REQUESTS_EXCEEDED,
    REQUEST_UNDEFINED,
    SERVICE_PREFIX,
    field_invalid,
    field_null,
    thingspace_error,
)
from bot.sandbox.fleet import DEMO_CONDITIONS, Device, Fleet
from bot.sandbox.ids import ALL_KINDS, check_device_id, device_entries, normalize
from bot.sandbox.rules import RESUME_NOTICE, resume_line
from bot.sandbox.timers import Timers
from bot.thingspace.shapes import (
    EXTERNAL_CHANGE,
    EXTERNAL_PROVISIONING_CHANGES,
    RESUME_TRACKING,
    RESUME_TRACKING_NOTIFICATION,
)

__all__ = ["MAX_DEVICES_PER_REQUEST", "AsyncRequest", "SandboxConfig", "SandboxState", "SubRequest"]

MAX_DEVICES_PER_REQUEST: Final = 10_000
MAX_REQUESTS_KEPT: Final = 50_000  # asynchronous requests remembered for status queries
_ACCOUNT_FORMAT: Final = re.compile(r"\d{10}-\d{5}")
_CUSTOM_FIELD: Final = re.compile(r"CustomField[1-5]")
#: seeded conditions that leave a line suspended at the start (its resume timers are set then)
_STARTS_SUSPENDED: Final = frozenset({"suspended"})


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything ``create_sandbox`` and ``tsbot sandbox`` can set."""

    credentials: Credentials
    devices: int = 200
    seed: int = 1
    account: str = "0000123456-00001"
    callback_retry_interval: float = 300.0
    default_latency: float = 0.0
    cancel_location_per_hour: int = 40
    sms_expiry: timedelta = timedelta(days=5)
    callback_concurrency: int = 16


@dataclass(slots=True)
class SubRequest:
    """One device of an asynchronous request and its outcome."""

    ids: list[dict[str, str]]
    status: str = "Pending"  # Pending | Success | Failed


@dataclass(slots=True)
class AsyncRequest:
    request_id: str
    operation: str
    created: datetime
    subs: list[SubRequest] = field(default_factory=list)
    provisioning: bool = False
    origin: str = ""  # the API path that made it

    @property
    def status(self) -> str:
        states = {sub.status for sub in self.subs}
        if "Pending" in states or not states:
            return "Pending"
        return "Success" if states == {"Success"} else "Failed"


class SandboxState:
    """Shared state; see the module docstring. ``emit`` hands callbacks to the sender."""

    def __init__(self, config: SandboxConfig, clock: Clock, emit: Callable[[list[Delivery]], None]) -> None:
        self.config = config
        self.clock = clock
        self.emit = emit
        self.lock = threading.RLock()
        self.timers = Timers()
        self.listeners: dict[str, Listener] = {}
        #: set by bot.sandbox.reachability: evaluates the monitors of a device that changed
        self.on_reachability_change: Callable[[Device, datetime], None] | None = None
        self.build()

    # -- building and indexing -----------------------------------------------------------------
    def build(self) -> None:
        """(Re)create the fleet from ``(devices, seed)`` as of now; forget requests and monitors.

        Lines are made on demand (:class:`bot.sandbox.fleet.Fleet`); only the ones looked up by
        identifier or changed are kept, and only those are in :attr:`index`. Building costs the
        seed bytes and one pass for the lines suspended at the start (their resume timers).
        """
        with self.lock:
            now = self.clock()
            self.anchor = now
            self.timers.clear()
            self.devices: Fleet = Fleet(self.config.devices, self.config.seed, now, prepare=self._prepare)
            self.index: dict[tuple[str, str], Device] = {}
            self._keys: dict[int, list[tuple[str, str]]] = {}
            self.by_label: dict[str, Device] = {}
            self.requests: dict[str, AsyncRequest] = {}
            # device-originated SMS waiting for GET /sms/{account}/history (bot.sandbox.mo_sms)
            self.mo_queue: deque[dict[str, Any]] = deque()
            self.mo_blocks: dict[str, int] = {}
            self.mo_next_token = 0
            self.deferred: dict[int, list[Callable[[], None]]] = defaultdict(list)
            self.cancel_buckets: dict[int, int] = {}
            self.reach_due: dict[int, int] = {}
            # populated by bot.sandbox.reachability
            self.monitors: dict[str, Any] = {}
            self.device_monitors: dict[int, list[Any]] = defaultdict(list)
            for index in range(self.devices.demo_count):  # the demo lines are always kept
                self.keep(self.devices.peek(index))
            for index in self.devices.indexes_with(_STARTS_SUSPENDED):
                device = self.devices.peek(index)
                if device.state == "suspend":
                    self.schedule_suspension(device)

    def _prepare(self, device: Device) -> None:
        """Give a freshly made line its seeded condition as of the sandbox's start."""
        spread = None if device.index < len(DEMO_CONDITIONS) else device.variant
        apply_condition(device, device.base_condition, self.anchor, spread=spread)

    def keep(self, device: Device) -> Device:
        """Keep ``device`` (and index its identifiers) from now on; returns the kept line."""
        kept = self.devices.live.get(device.index, device)
        if kept.index not in self._keys:
            self.reindex(kept)
        return kept

    def reindex(self, device: Device) -> None:
        """(Re)register every identifier and the label of ``device`` (e.g. after an IMEI change)."""
        self.devices.live[device.index] = device
        for key in self._keys.pop(device.index, ()):
            if self.index.get(key) is device:
                del self.index[key]
        keys = [normalize(kind, value) for kind, value in device.ids().items()]
        for key in keys:
            self.index[key] = device
        self._keys[device.index] = keys
        self.by_label[device.label.lower()] = device

    # -- lookups ---------------------------------------------------------------------------------
    def find(self, kind: str, value: str) -> Device | None:
        """The line with this identifier (kept from now on), or None."""
        key = normalize(kind, value)
        found = self.index.get(key)
        if found is not None:
            return found
        index = self.devices.lookup(*key)
        if index is None:
            return None
        device = self.keep(self.devices.peek(index))  # a kept line is checked as it is now
        return device if key in self._keys[index] else None

    def by_label_text(self, text: str) -> Device | None:
        """The line labelled ``text`` (case-insensitive), kept from now on, or None."""
        found = self.by_label.get(text.lower())
        if found is not None and found.label.lower() == text.lower():
            return found
        index = self.devices.label_index(text)
        if index is None:
            return None
        device = self.keep(self.devices.peek(index))
        return device if device.label.lower() == text.lower() else None

    def group_members(self, group: str) -> Iterator[Device]:
        """The lines in ``group`` (kept ones as they are, others made afresh), by index."""
        return (self.devices.peek(i) for i in range(len(self.devices)) if self.devices.in_group(i, group))

    def resolve_text(self, text: str) -> Device:
        """``kind:id``, a bare id of any kind, or a label such as ``demo-hung``; LookupError if none."""
        text = text.strip()
        kind, sep, value = text.partition(":")
        with self.lock:
            if sep and kind.strip().lower() in ALL_KINDS:
                found = self.find(kind, value)
                if found is None:
                    raise LookupError(f"no device with {kind.strip().lower()} {value.strip()}")
                return found
            labelled = self.by_label_text(text)
            if labelled is not None:
                return labelled
            for candidate in sorted(ALL_KINDS):
                found = self.find(candidate, text)
                if found is not None:
                    return found
        raise LookupError(
            f"no device matches {text!r}: use kind:id (e.g. iccid:8914...), a bare id or a label"
        )

    def check_account(self, name: object, *, required: bool) -> None:
        """400 unless ``name`` is this sandbox's account (or absent where optional)."""
        if name is None or name == "":
            if required:
                raise field_null("accountName")
            return
        if not isinstance(name, str) or not _ACCOUNT_FORMAT.fullmatch(name):
            raise field_invalid(
                "accountName", "accountName must look like 0000123456-00001 (leading zeros kept)."
            )
        if name != self.config.account:
            raise thingspace_error(ACCOUNT_NOT_FOUND, f"Account {name} is not available to this user.")

    def custom_filter(self, raw: object) -> dict[str, str]:
        """Validate ``customFields: [{key, value}]`` (keys CustomField1..5, values ≤ 50 chars)."""
        if raw is None:
            return {}
        if not isinstance(raw, list):
            raise field_invalid(
                "customFields", 'customFields must be a list like [{"key": "CustomField1", "value": "x"}].'
            )
        wanted: dict[str, str] = {}
        for item in raw:
            key = item.get("key") if isinstance(item, dict) else None
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(key, str) or not _CUSTOM_FIELD.fullmatch(key):
                raise thingspace_error(
                    "INPUT_INVALID.CustomField.InvalidName",
                    f"Custom field name {key!r} is not one of CustomField1 to CustomField5.",
                )
            if not isinstance(value, str):
                raise field_invalid("customFields", f"The value of {key} must be a string.")
            if len(value) > 50:
                raise thingspace_error(
                    "INPUT_INVALID.CustomField.TooLong", f"The value of {key} is longer than 50 characters."
                )
            wanted[key] = value
        return wanted

    def select_targets(
        self, body: dict[str, Any], *, ids_field: str = "devices"
    ) -> list[tuple[dict[str, str], Device | None]]:
        """The devices an action targets: an explicit list, or a group/plan/custom-field filter.

        Returns ``(the identifier as given, device or None)`` pairs; unknown devices fail later,
        in their own callback, as on ThingSpace.
        """
        explicit = body.get(ids_field)
        group, plan = body.get("groupName"), body.get("servicePlan")
        custom = self.custom_filter(body.get("customFields"))
        if explicit is not None and (group or custom):
            raise thingspace_error(
                REQUEST_UNDEFINED, f"Use either {ids_field} or groupName/customFields, not both."
            )
        if explicit is not None:
            raw_ids = (
                device_entries(explicit, field=ids_field) if ids_field == "devices" else _id_list(explicit)
            )
            if not raw_ids:
                raise field_null(ids_field)
            if len(raw_ids) > MAX_DEVICES_PER_REQUEST:
                raise thingspace_error(
                    MAX_REQUESTS_EXCEEDED,
                    f"At most {MAX_DEVICES_PER_REQUEST} devices per request; got {len(raw_ids)}.",
                )
            targets: list[tuple[dict[str, str], Device | None]] = []
            for position, raw in enumerate(raw_ids):
                kind, value = check_device_id(raw, field=f"{ids_field}[{position}]")
                targets.append(({"id": raw["id"], "kind": raw["kind"]}, self.find(kind, value)))
            return targets
        if not (group or plan or custom):
            raise thingspace_error(
                REQUEST_UNDEFINED, f"Name the devices: {ids_field}, groupName, servicePlan or customFields."
            )
        if group is not None and not isinstance(group, str):
            raise field_invalid("groupName", "groupName must be a string.")
        if plan is not None and not isinstance(plan, str):
            raise field_invalid("servicePlan", "servicePlan must be a string.")
        if group and group not in self.devices.group_names():
            raise thingspace_error("REQUEST_FAILED.GroupNotFound", f"Device group {group!r} does not exist.")
        pool = self.group_members(group) if group else iter(self.devices)
        chosen = [
            self.keep(d)
            for d in pool
            if (not plan or d.plan == plan) and all(d.custom.get(k) == v for k, v in custom.items())
        ]
        if not chosen:
            raise thingspace_error(
                DEVICE_NOT_FOUND, "No device matches the groupName/servicePlan/customFields given."
            )
        return [({"id": d.iccid, "kind": "iccid"}, d) for d in chosen]

    # -- requests and callbacks ------------------------------------------------------------------
    def new_request(
        self, operation: str, ids: list[dict[str, str]], *, provisioning: bool = False
    ) -> AsyncRequest:
        request = AsyncRequest(
            str(uuid.uuid4()), operation, self.clock(), provisioning=provisioning, origin=API_PATH.get()
        )
        request.subs = [SubRequest([given]) for given in ids]
        self.requests[request.request_id] = request
        while len(self.requests) > MAX_REQUESTS_KEPT:
            del self.requests[next(iter(self.requests))]  # the oldest: status answers "not found"
        return request

    @staticmethod
    def success(
        service: str,
        request_id: str,
        given: dict[str, str],
        key: str,
        response: dict[str, Any],
        *,
        top: str = "deviceResponse",
    ) -> Delivery:
        """A ``status: Success`` callback carrying ``{top: {key: response}}``."""
        payload = {"requestId": request_id, "deviceIds": [given], top: {key: response}, "status": "Success"}
        return Delivery(service, payload)

    @staticmethod
    def failure(service: str, request_id: str, given: dict[str, str], code: str, message: str) -> Delivery:
        """A ``status: Failed`` callback with ``faultResponse``."""
        payload = {
            "requestId": request_id,
            "deviceIds": [given],
            "faultResponse": {"faultcode": f"{SERVICE_PREFIX}.{code}", "faultstring": message},
            "status": "Failed",
        }
        return Delivery(service, payload)

    @classmethod
    def not_found(cls, service: str, request_id: str, given: dict[str, str]) -> Delivery:
        """The ``Failed`` callback for a device the account does not have."""
        message = f"No device with {given['kind']} {given['id']}."
        return cls.failure(service, request_id, given, DEVICE_NOT_FOUND, message)

    def listener(self, service: str) -> Listener | None:
        return self.listeners.get(service)

    # -- time-based rules --------------------------------------------------------------------------
    def schedule_suspension(self, device: Device) -> None:
        """Auto-resume at the resume date; ResumeTrackingNotification seven days before."""
        resume = device.resume_date
        if resume is None:
            return
        now = self.clock()
        index = device.index
        self.timers.at(max(resume - RESUME_NOTICE, now), lambda: self._resume_notice(index, resume))
        self.timers.at(resume, lambda: self._auto_resume(index, resume))

    def _resume_notice(self, index: int, resume: datetime) -> None:
        device = self.devices.peek(index)
        if device.state == "suspend" and device.resume_date == resume:
            comment = f"Device will be auto resumed on - {resume:%m/%d/%Y %I:%M:%S %p}"
            self.emit(
                [
                    self.notice(
                        RESUME_TRACKING_NOTIFICATION,
                        device,
                        RESUME_TRACKING,
                        {"resumeDate": iso(resume), "comment": comment},
                    )
                ]
            )

    def _auto_resume(self, index: int, resume: datetime) -> None:
        device = self.devices.peek(index)
        if device.state != "suspend" or device.resume_date != resume:
            return
        device = self.keep(device)
        resume_line(device, resume, count_action=False, by="auto-resume")
        change = {
            "changeType": "Resume",
            "state": "active",
            "changedAt": iso(resume),
            "changedBy": "auto-resume",
        }
        self.emit([self.notice(EXTERNAL_PROVISIONING_CHANGES, device, EXTERNAL_CHANGE, change)])
        self.reachability_changed(device, resume)

    def notice(self, service: str, device: Device, key: str, body: dict[str, Any]) -> Delivery:
        """An unsolicited callback (its own requestId) about ``device``."""
        given = {"id": device.iccid, "kind": "iccid"}
        return self.success(service, str(uuid.uuid4()), given, key, body)

    def reachability_changed(self, device: Device, at: datetime | None = None) -> None:
        if self.on_reachability_change is not None:
            self.on_reachability_change(device, at or self.clock())

    def tick(self) -> int:
        """Run every timer due by now; returns how many ran."""
        with self.lock:
            return self.timers.run_due(self.clock())

    def billing_cycle_end(self, now: datetime) -> datetime:
        """Cycles end at midnight UTC at the start of the 9th of each month."""
        end = now.replace(day=9, hour=0, minute=0, second=0, microsecond=0)
        if end <= now:
            end = (end + timedelta(days=32)).replace(day=9)
        return end

    def now_iso(self) -> str:
        return iso(self.clock())


def _id_list(raw: object) -> list[Any]:
    if not isinstance(raw, list):
        raise field_invalid("deviceIds", 'deviceIds must be a list like [{"id": "...", "kind": "iccid"}].')
    return list(raw)
