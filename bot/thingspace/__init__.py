"""The ThingSpace Connectivity Management client: ids, auth, typed models, errors, callbacks.

Knows nothing of Slack: imports httpx, the standard library, :mod:`bot.core.redact` and the
dependency-free :mod:`storage.login_gate_state` only.
Typical use::

    from bot.thingspace import ThingSpaceClient, parse_device_id

    with ThingSpaceClient(settings.thingspace_base_url, client_id=..., client_secret=...,
                          username=..., password=..., account=...) as ts:
        diag = ts.extended_diagnostics(parse_device_id("89148000000800139708"))
        accepted = ts.suspend([parse_device_id("iccid:89148000000800139708")])
"""

from __future__ import annotations

from bot.thingspace.auth import (
    MAX_REFUSALS_IN_A_ROW,
    MAX_REFUSALS_PER_CREDENTIALS,
    LoginGate,
    LoginGateState,
    MemoryLoginGate,
    ThingSpaceAuth,
)
from bot.thingspace.client import DEFAULT_TIMEOUT, REACHABILITY_KINDS, REACHABILITY_TYPES, ThingSpaceClient
from bot.thingspace.errors import (
    DeviceNotFound,
    InvalidInput,
    InvalidRequest,
    LoginCoolingDown,
    LoginFailed,
    LoginLockedOut,
    LoginPause,
    RateLimited,
    ServerError,
    SessionExpired,
    ThingSpaceAuthError,
    ThingSpaceConnectError,
    ThingSpaceError,
    ThingSpaceResponseError,
    ThingSpaceTimeout,
    ThingSpaceTransportError,
    UnexpectedResponse,
)
from bot.thingspace.events import CallbackEvent, CallbackKind, InvalidCallback, parse_callback
from bot.thingspace.ids import KIND_EXAMPLES, KIND_FORMATS, KINDS, DeviceId, InvalidDeviceId, parse_device_id
from bot.thingspace.models import (
    DEVICE_STATES,
    SMS_ENCODINGS,
    Account,
    CallbackListener,
    ConnectionEvent,
    Device,
    DevicePage,
    Diagnostics,
    ImeiIccidMismatch,
    MoSms,
    ProvisioningEvent,
    RequestAccepted,
    RequestStatus,
    SubRequest,
    UsageRecord,
)
from bot.thingspace.sms import SmsTextError, sms_length

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEVICE_STATES",
    "KINDS",
    "KIND_EXAMPLES",
    "KIND_FORMATS",
    "MAX_REFUSALS_IN_A_ROW",
    "MAX_REFUSALS_PER_CREDENTIALS",
    "REACHABILITY_KINDS",
    "REACHABILITY_TYPES",
    "SMS_ENCODINGS",
    "Account",
    "CallbackEvent",
    "CallbackKind",
    "CallbackListener",
    "ConnectionEvent",
    "Device",
    "DeviceId",
    "DeviceNotFound",
    "DevicePage",
    "Diagnostics",
    "ImeiIccidMismatch",
    "InvalidCallback",
    "InvalidDeviceId",
    "InvalidInput",
    "InvalidRequest",
    "LoginCoolingDown",
    "LoginFailed",
    "LoginGate",
    "LoginGateState",
    "LoginLockedOut",
    "LoginPause",
    "MemoryLoginGate",
    "MoSms",
    "ProvisioningEvent",
    "RateLimited",
    "RequestAccepted",
    "RequestStatus",
    "ServerError",
    "SessionExpired",
    "SmsTextError",
    "SubRequest",
    "ThingSpaceAuth",
    "ThingSpaceAuthError",
    "ThingSpaceClient",
    "ThingSpaceConnectError",
    "ThingSpaceError",
    "ThingSpaceResponseError",
    "ThingSpaceTimeout",
    "ThingSpaceTransportError",
    "UnexpectedResponse",
    "UsageRecord",
    "parse_callback",
    "parse_device_id",
    "sms_length",
]
