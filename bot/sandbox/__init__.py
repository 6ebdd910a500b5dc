"""The ThingSpace sandbox: a stateful simulator of Verizon's Connectivity Management API.

``tsbot sandbox`` serves it alone; ``tsbot demo`` and the tests run it in-process::

    sandbox = create_sandbox(devices=200, seed=1)
    server = ServerThread(sandbox.app).start()      # base URL = server.url (ThingSpace's /api)
    ...
    server.stop(); sandbox.close()

It answers the same paths as ``https://thingspace.verizon.com/api`` with the shapes, status codes
and error bodies of Verizon's API reference: OAuth ``POST /ts/v1/oauth2/token`` (Basic client
credentials; the same token for an hour), ``/m2m/v1/session/login|logout`` (GUID session,
20-minute idle timeout, user locked after 5 failed logins), the device list (both paging
styles), extended diagnostics, connection and usage history, suspend, restore, SMS, cancel
location, callback listeners, reachability monitors, request status (v1 and v2), account info and
the IMEI–ICCID mismatch list. Asynchronous results arrive as one callback per device at the
listener registered for the right service, retried with a rising ``callbackCount`` (see
:mod:`bot.sandbox.callback_sender`). Default credentials: OAuth client ``sandbox-client`` /
``sandbox-secret``, user ``sandbox-user`` / ``sandbox-pass``, account ``0000123456-00001``.

The fleet is deterministic for ``(devices, seed)`` (:mod:`bot.sandbox.fleet`): device #0 is the
ICCID ``89148000000800139708``, and devices #0–#14 show one diagnostic condition each, labelled
``demo-<condition>`` (:mod:`bot.sandbox.conditions`): ``demo-usage-spike`` (#0),
``demo-healthy``, ``demo-suspended``, ``demo-pending``, ``demo-action-limit``, ``demo-hung``,
``demo-reconnect-loop``, ``demo-no-traffic``, ``demo-imei-mismatch``, ``demo-asleep``,
``demo-down``, ``demo-over-plan``, ``demo-wake-overdue``, ``demo-imei-changed`` and
``demo-diag-unavailable``. Time-based rules read an injectable clock (:class:`ManualClock` in tests).

Control routes under ``/_sandbox/`` (JSON) flip reachability, set conditions, list received
requests, inject faults, latency and dropped callbacks, trigger external-change and
resume-tracking notices, and reset; they are listed in :mod:`bot.sandbox.control`, and
:class:`Sandbox` offers the same as Python methods.
"""

from __future__ import annotations

from datetime import timedelta

from bot.sandbox.app import build_app
from bot.sandbox.auth import Credentials
from bot.sandbox.clock import Clock, ManualClock, system_clock
from bot.sandbox.conditions import CONDITIONS
from bot.sandbox.core import Sandbox
from bot.sandbox.fleet import EXAMPLE_ICCID, MAX_DEVICES
from bot.sandbox.state import SandboxConfig

__all__ = [
    "CONDITIONS",
    "EXAMPLE_ICCID",
    "Clock",
    "ManualClock",
    "Sandbox",
    "SandboxConfig",
    "create_sandbox",
]


def create_sandbox(
    *,
    devices: int = 200,
    seed: int = 1,
    client_id: str = "sandbox-client",
    client_secret: str = "sandbox-secret",  # noqa: S107 - the sandbox's published default
    username: str = "sandbox-user",
    password: str = "sandbox-pass",  # noqa: S107 - the sandbox's published default
    account: str = "0000123456-00001",
    callback_retry_interval: float = 300.0,
    default_latency: float = 0.0,
    clock: Clock | None = None,
    cancel_location_per_hour: int = 40,
    sms_expiry: timedelta = timedelta(days=5),
    callback_concurrency: int = 16,
) -> Sandbox:
    """Build a sandbox and start its callback sender; serve ``.app``, then call ``.close()``.

    Raises ``ValueError`` for an impossible setting (device count, account format, negative
    intervals).
    """
    if not 1 <= devices <= MAX_DEVICES:
        raise ValueError(f"devices must be between 1 and {MAX_DEVICES}, got {devices}")
    if len(account) != 16 or account[10] != "-" or not (account[:10] + account[11:]).isdigit():
        raise ValueError(f"account must look like 0000123456-00001, got {account!r}")
    if callback_retry_interval < 0 or default_latency < 0:
        raise ValueError("callback_retry_interval and default_latency must not be negative")
    if cancel_location_per_hour < 1 or callback_concurrency < 1:
        raise ValueError("cancel_location_per_hour and callback_concurrency must be at least 1")
    for name, value in (
        ("client_id", client_id),
        ("client_secret", client_secret),
        ("username", username),
        ("password", password),
    ):
        if not value:
            raise ValueError(f"{name} must not be empty")
    config = SandboxConfig(
        credentials=Credentials(client_id, client_secret, username, password),
        devices=devices,
        seed=seed,
        account=account,
        callback_retry_interval=callback_retry_interval,
        default_latency=default_latency,
        cancel_location_per_hour=cancel_location_per_hour,
        sms_expiry=sms_expiry,
        callback_concurrency=callback_concurrency,
    )
    return Sandbox(config, clock or system_clock, build_app)
