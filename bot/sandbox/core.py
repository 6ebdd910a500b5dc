"""The :class:`Sandbox`: state, callback sender and ASGI app wired together, plus a Python API.

The Python API mirrors the ``/_sandbox/`` control routes so ``tsbot demo`` and tests can drive
the sandbox in-process. Every method is thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Self

from starlette.applications import Starlette

from bot.sandbox import mo_sms, reachability
from bot.sandbox.actions import release_deferred
from bot.sandbox.activity import always_on, append_segment, last_activity, silent, status_at
from bot.sandbox.auth import AuthState
from bot.sandbox.callback_sender import CallbackSender, Delivery
from bot.sandbox.clock import Clock, ManualClock, iso
from bot.sandbox.conditions import CONDITIONS, apply_condition, epoch, swap_imei
from bot.sandbox.faults import Faults, RequestLog
from bot.sandbox.fleet import DEMO_CONDITIONS, Device
from bot.sandbox.rules import actions_today, record_event, resume_line, suspend_line
from bot.sandbox.state import SandboxConfig, SandboxState
from bot.thingspace.shapes import (
    EXTERNAL_CHANGE,
    EXTERNAL_PROVISIONING_CHANGES,
    RESUME_TRACKING,
    RESUME_TRACKING_NOTIFICATION,
)

__all__ = ["EXTERNAL_CHANGE_TYPES", "ClockError", "Sandbox"]

logger = logging.getLogger(__name__)

EXTERNAL_CHANGE_TYPES = ("Suspend", "Resume", "Activate", "Deactivate", "ChangeMdn")


class ClockError(ValueError):
    """The sandbox's clock cannot be moved (it is the wall clock)."""


class Sandbox:
    """A running ThingSpace sandbox (serve ``.app`` with uvicorn; call :meth:`close` at the end)."""

    def __init__(
        self, config: SandboxConfig, clock: Clock, app_factory: Callable[[Sandbox], Starlette]
    ) -> None:
        self.config = config
        self.clock = clock
        self.auth = AuthState(config.credentials)
        self.faults = Faults(config.default_latency)
        self.request_log = RequestLog()
        self.sender = CallbackSender(
            lambda service: self.state.listener(service),
            clock=clock,
            concurrency=config.callback_concurrency,
            retry_interval=config.callback_retry_interval,
            on_tick=self.tick,
        )
        self.state = SandboxState(config, clock, self._emit)
        reachability.install(self.state)
        #: the HTTP app serving this sandbox (``bot.sandbox.app.build_app``, given by create_sandbox)
        self.app: Starlette = app_factory(self)
        self.sender.start()
        logger.info("sandbox: %d devices (seed %d), account %s", config.devices, config.seed, config.account)

    def _emit(self, deliveries: list[Delivery]) -> None:
        """Hand callbacks to the sender, each stamped with the API path of the request it answers."""
        pending = list(deliveries)
        while pending:
            delivery = pending.pop()
            request = self.state.requests.get(str(delivery.payload.get("requestId", "")))
            if request is not None and not delivery.origin:
                delivery.origin = request.origin
            pending.extend(delivery.then)
        self.sender.submit(deliveries)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the callback sender (undelivered callbacks are abandoned)."""
        self.sender.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self, *, everything: bool = False) -> None:
        """Rebuild the fleet; forget requests, monitors, faults, queued callbacks and the lock."""
        self.sender.clear()
        self.state.build()
        self.faults.clear()
        self.faults.latency = self.config.default_latency
        self.request_log.clear()
        self.auth.reset(everything=everything)
        if everything:
            with self.state.lock:
                self.state.listeners.clear()

    def tick(self) -> int:
        """Run the time-based events due on the sandbox clock (also done a few times a second)."""
        return self.state.tick()

    def advance_clock(self, seconds: float) -> str:
        """Move a :class:`ManualClock` forward and run what became due; ValueError otherwise."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise ClockError("the sandbox runs on the wall clock; only a ManualClock can be advanced")
        clock.advance(timedelta(seconds=seconds))
        self.tick()
        return iso(self.clock())

    # -- observing -------------------------------------------------------------------------------
    def requests_received(
        self, path: str | None = None, method: str | None = None, *, after: int = 0
    ) -> list[dict[str, Any]]:
        """API requests received (method, path, time, status, errorCode); ``path`` exact or a glob."""
        return self.request_log.query(path, method, after)

    def callbacks_sent(self) -> list[dict[str, Any]]:
        """Every callback attempt (and drop) so far, oldest first."""
        return self.sender.log()

    def pending_callbacks(self) -> int:
        """Callbacks queued, in flight, or waiting for a retry."""
        return self.sender.outstanding()

    def wait_for_callbacks(self, timeout: float = 10.0) -> bool:
        """Block until no callback is queued, in flight or waiting for a retry; False on timeout."""
        return self.sender.wait_idle(timeout)

    def summary(self) -> dict[str, Any]:
        creds = self.config.credentials
        return {
            "account": self.config.account,
            "clientId": creds.client_id,
            "clientSecret": creds.client_secret,
            "username": creds.username,
            "password": creds.password,
            "devices": self.config.devices,
            "seed": self.config.seed,
            "now": iso(self.clock()),
            "latency": self.faults.latency,
            "callbackRetryInterval": self.config.callback_retry_interval,
            "listeners": sorted(self.state.listeners),
            "userLocked": self.auth.locked,
            "demoDevices": self.demo_devices(),
        }

    @staticmethod
    def conditions() -> dict[str, str]:
        return dict(CONDITIONS)

    def demo_devices(self) -> dict[str, dict[str, str]]:
        """condition -> {label, iccid, mdn} of the demo devices present in this fleet."""
        with self.state.lock:
            shown = [
                self.state.devices.peek(i) for i in range(min(len(DEMO_CONDITIONS), len(self.state.devices)))
            ]
            return {d.base_condition: {"label": d.label, "iccid": d.iccid, "mdn": d.mdn} for d in shown}

    def device(self, ref: str) -> dict[str, Any]:
        """One device as the sandbox sees it (``ref``: ``kind:id``, bare id or label)."""
        with self.state.lock:
            d = self.state.resolve_text(ref)
            now = self.clock()
            t = epoch(now)
            status = status_at(d.timeline, t)
            last = last_activity(d.timeline, t)
            return {
                "index": d.index,
                "label": d.label,
                "type": d.type.name,
                "condition": d.condition,
                "profile": d.timeline[-1][1].label,
                "state": d.state,
                "servicePlan": d.plan,
                "ids": d.ids(),
                "groups": list(d.groups),
                "customFields": dict(d.custom),
                "attached": status.attached,
                "connected": status.connected,
                "reachable": status.reachable,
                "lastConnection": iso(_from_epoch(last, now)) if last is not None else None,
                "actionsToday": actions_today(d, now),
                "resumeDate": iso(d.resume_date) if d.resume_date else None,
                "smsReply": {"prefix": d.sms_reply[0], "delay": d.sms_reply[1]} if d.sms_reply else None,
                "niddReply": {"prefix": d.nidd_reply[0], "delay": d.nidd_reply[1]} if d.nidd_reply else None,
                "transientFailuresLeft": d.flaky,
                "imeiChangePending": d.imei_swap_pending,
                "diagnosticsUnavailable": d.unavailable,
                "pendingRequestsHeld": len(self.state.deferred.get(d.index, [])),
                "monitors": len(self.state.device_monitors.get(d.index, [])),
            }

    # -- controlling -----------------------------------------------------------------------------
    def set_reachability(self, device_id_text: str, reachable: bool) -> None:
        """Make a device reachable (attached, always-on) or unreachable (detached) from now."""
        with self.state.lock:
            d = self.state.resolve_text(device_id_text)
            now = self.clock()
            mode = always_on(d.type.volume, d.phase) if reachable else silent(attached=False)
            append_segment(d.timeline, epoch(now), mode)
            d.condition = "healthy" if reachable else "down"
            self.state.reachability_changed(d, now)

    def set_replies(self, device_id_text: str, body: dict[str, Any]) -> None:
        """Make a device answer SMS and/or NIDD data (``{"sms": bool, "nidd": bool, "prefix":
        "OK ", "delay": 3}``; a key left out keeps its setting). ValueError on a bad body."""
        prefix, delay = body.get("prefix", "OK "), body.get("delay", 3)
        if not isinstance(prefix, str):
            raise ValueError("prefix must be text")  # noqa: TRY004 - the control route answers ValueError with 400
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
            raise ValueError("delay must be a number of seconds from 0 to 3600")
        for key in ("sms", "nidd"):
            if key in body and not isinstance(body[key], bool):
                raise ValueError(f"{key} must be true or false")
        if not {"sms", "nidd"} & set(body):
            raise ValueError('send {"sms": true} and/or {"nidd": true}, with "prefix" and "delay" if wanted')
        with self.state.lock:
            d = self.state.resolve_text(device_id_text)
            setting = (prefix, float(delay))
            if "sms" in body:
                d.sms_reply = setting if body["sms"] else None
            if "nidd" in body:
                d.nidd_reply = setting if body["nidd"] else None

    def device_sms(self, device_id_text: str, text: str) -> str:
        """The device sends *text* (a device-originated SMS): called back to the
        EnhancedConnectivityService listener, or queued for ``GET /sms/{account}/history``;
        returns ``"callback"`` or ``"queued"``."""
        if not isinstance(text, str) or not text or len(text) > 160:
            raise ValueError("an SMS from a device is 1 to 160 characters of text")
        with self.state.lock:
            return mo_sms.device_sends(self.state, self.state.resolve_text(device_id_text), text)

    def set_condition(self, device_id_text: str, condition: str) -> None:
        """Put a device into one of :data:`bot.sandbox.conditions.CONDITIONS` as of now.

        ``imei-changed`` moves the SIM at once here: the line was there all along, so whoever
        listed it knows its old IMEI (a seeded line waits until it is first listed).
        """
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; use one of {', '.join(CONDITIONS)}")
        with self.state.lock:
            d = self.state.resolve_text(device_id_text)
            now = self.clock()
            apply_condition(d, condition, now)
            swap_imei(d)
            self.state.reindex(d)
            if d.state == "suspend":
                self.state.schedule_suspension(d)
            if not d.stuck:
                release_deferred(self.state, d)
            self.state.reachability_changed(d, now)

    def inject_fault(
        self,
        path: str,
        *,
        count: int = 1,
        status: int | None = None,
        body: Any = None,
        latency: float = 0.0,
        method: str | None = None,
    ) -> None:
        """The next ``count`` requests matching ``path`` (glob) wait and/or get ``status`` + ``body``."""
        self.faults.add(path, count=count, method=method, status=status, body=body, latency=latency)

    def drop_callbacks(self, count: int, service: str | None = None, path: str | None = None) -> None:
        """Silently lose the next ``count`` callbacks (of ``service`` and/or answering requests to
        an API path matching the glob ``path``, e.g. ``*/actions/suspend``; or any)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.sender.drop(count, service, path)

    def set_latency(self, seconds: float) -> None:
        """Delay every API answer by ``seconds`` from now on."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        self.faults.latency = seconds

    def notify(
        self, service: str, device_id_text: str, *, change: str | None = None, by: str | None = None
    ) -> str:
        """Send an ExternalProvisioningChanges or ResumeTrackingNotification callback; returns its requestId."""
        with self.state.lock:
            d = self.state.resolve_text(device_id_text)
            now = self.clock()
            if service == RESUME_TRACKING_NOTIFICATION:
                if d.state != "suspend" or d.resume_date is None:
                    raise ValueError(f"{d.label} is not suspended, so it has no auto-resume date to announce")
                comment = f"Device will be auto resumed on - {d.resume_date:%m/%d/%Y %I:%M:%S %p}"
                body = {"resumeDate": iso(d.resume_date), "comment": comment}
                delivery = self.state.notice(RESUME_TRACKING_NOTIFICATION, d, RESUME_TRACKING, body)
            elif service == EXTERNAL_PROVISIONING_CHANGES:
                if change not in EXTERNAL_CHANGE_TYPES:
                    raise ValueError(f"change must be one of {', '.join(EXTERNAL_CHANGE_TYPES)}")
                self._apply_external(d, change, by or "portal")
                body = {
                    "changeType": change,
                    "state": d.state,
                    "changedAt": iso(now),
                    "changedBy": by or "portal",
                }
                delivery = self.state.notice(EXTERNAL_PROVISIONING_CHANGES, d, EXTERNAL_CHANGE, body)
                self.state.reachability_changed(d, now)
            else:
                raise ValueError(
                    f"service must be {EXTERNAL_PROVISIONING_CHANGES} or {RESUME_TRACKING_NOTIFICATION}"
                )
            self.state.emit([delivery])
            return str(delivery.payload["requestId"])

    def _apply_external(self, d: Device, change: str, by: str = "portal") -> None:
        now = self.clock()
        if change == "Suspend":
            if d.state != "active":
                raise ValueError(f"{d.label} is {d.state}; only an active line can be suspended")
            suspend_line(d, now, by=by)
            self.state.schedule_suspension(d)
        elif change == "Resume":
            if d.state != "suspend":
                raise ValueError(f"{d.label} is {d.state}; only a suspended line can be resumed")
            resume_line(d, now, by=by)
        elif change == "Deactivate":
            d.state = "deactive"
            d.resume_date = None
            append_segment(d.timeline, epoch(now), silent(attached=False))
            d.actions.append(now)
            record_event(d, now, "Deactivate", by)
        elif change == "Activate":
            d.state = "active"
            append_segment(d.timeline, epoch(now), d.healthy_mode())
            d.actions.append(now)
            record_event(d, now, "Activate", by)
        else:  # ChangeMdn: a new number in the same area, the old one retired
            digits = int(d.mdn[3:]) + 1_000_003
            d.mdn = f"{d.mdn[:3]}{2_000_000 + digits % 8_000_000:07d}"
            self.state.reindex(d)
            # the SDK's ProvisioningHistory names Activate, Suspend, Restore, Deactivate and Device
            # Move; an MDN change is recorded under the notice's own changeType
            record_event(d, now, "ChangeMdn", by)


def _from_epoch(seconds: int, like: datetime) -> datetime:
    return datetime.fromtimestamp(seconds, like.tzinfo)
