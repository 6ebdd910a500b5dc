"""Error answers exactly as ThingSpace gives them, raised as :class:`ApiError` by handlers.

Three envelopes exist on the real service (Verizon: "Synchronous Error Messages"; SDK
``ConnectivityManagementResultException``, ``OauthProviderException``, ``RestErrorResponseException``):

* the WSO2 gateway ``{"fault": {"code", "message", "description"}}`` for a bad, missing or
  expired bearer token (401) and for an unknown resource (400, code 900906);
* the OAuth server ``{"error", "error_description"}`` on the token endpoint;
* the Connectivity Management ``{"errorCode", "errorMessage"}`` (400), where ``errorCode`` is a
  service prefix plus a code, e.g. ``UnifiedWebService.REQUEST_FAILED.DeviceNotFound``. The
  reachability family answers ``{"errorCode": "400", "errorMessage": ...}`` instead.

Codes marked *sandbox* below are our choice where no public source names one; everything else
comes from Verizon's "Synchronous Error Messages" page (or, marked *secondary*, from public
copies of it). Clients must key on the part after the service prefix.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ACCOUNT_NOT_FOUND",
    "CALLBACK_NOT_REGISTERED",
    "CREDENTIALS_INVALID",
    "DAILY_ACTION_LIMIT",
    "DEVICE_KIND_INVALID",
    "DEVICE_NOT_FOUND",
    "DEVICE_STATE_INVALID",
    "ID_INVALID",
    "MAX_REQUESTS_EXCEEDED",
    "NUMBER_OF_DEVICES",
    "QUEUE_FULL",
    "REQUEST_INVALID_JSON",
    "REQUEST_NOT_FOUND",
    "REQUEST_UNDEFINED",
    "SERVICE_PREFIX",
    "SESSION_EXPIRED",
    "SESSION_FORMAT",
    "SESSION_INVALID",
    "SMS_NULL",
    "SMS_TOO_LONG",
    "SUSPEND_DAY_LIMIT",
    "UNEXPECTED_ERROR",
    "USER_LOCKED",
    "ApiError",
    "field_invalid",
    "field_null",
    "gateway_fault",
    "oauth_error",
    "reachability_error",
    "thingspace_error",
]

SERVICE_PREFIX: Final = "UnifiedWebService"

# -- confirmed or secondary-source codes (Verizon: "Synchronous Error Messages") ----------------
SESSION_EXPIRED: Final = "REQUEST_FAILED.SessionToken.Expired"
SESSION_FORMAT: Final = "REQUEST_FAILED.SessionToken.Format"
SESSION_INVALID: Final = "INPUT_INVALID.SessionToken.Invalid"
ACCOUNT_NOT_FOUND: Final = "REQUEST_FAILED.AccountNotFound"
DEVICE_KIND_INVALID: Final = "INPUT_INVALID.Device.Kind.Invalid"
ID_INVALID: Final = "INPUT_INVALID.Device.Identifier.Invalid"
DEVICE_NOT_FOUND: Final = "REQUEST_FAILED.DeviceNotFound"
DEVICE_STATE_INVALID: Final = "INPUT_INVALID.DeviceState.Invalid"
MAX_REQUESTS_EXCEEDED: Final = "INPUT_INVALID.MaxRequestsExceeded"
NUMBER_OF_DEVICES: Final = "INPUT_INVALID.NumberofDevices"
SMS_NULL: Final = "INPUT_INVALID.SmsMessage.Null"
SMS_TOO_LONG: Final = "INPUT_INVALID.SmsMessage.TooLong"
REQUEST_UNDEFINED: Final = "INPUT_INVALID.RequestUndefined"
UNEXPECTED_ERROR: Final = "REQUEST_FAILED.UnexpectedError"

# -- sandbox choices (no public source names these) ---------------------------------------------
CREDENTIALS_INVALID: Final = "REQUEST_FAILED.Login.InvalidCredentials"
USER_LOCKED: Final = "REQUEST_FAILED.Login.UserLocked"
DAILY_ACTION_LIMIT: Final = "REQUEST_FAILED.DailyProvisioningLimit"
SUSPEND_DAY_LIMIT: Final = "REQUEST_FAILED.SuspendDaysLimit"
REQUEST_INVALID_JSON: Final = "INPUT_INVALID.Request.InvalidJson"
REQUEST_NOT_FOUND: Final = "REQUEST_FAILED.RequestNotFound"
CALLBACK_NOT_REGISTERED: Final = "REQUEST_FAILED.CallbackNotRegistered"
QUEUE_FULL: Final = "REQUEST_FAILED.CancelLocation.QueueFull"


class ApiError(Exception):
    """An HTTP error answer: ``status`` and the JSON ``body`` to send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str:
        """The error code for logs and the request log, whatever the envelope."""
        if "fault" in self.body:
            return str(self.body["fault"].get("code", ""))
        return str(self.body.get("errorCode") or self.body.get("error") or "")


def thingspace_error(code: str, message: str, *, status: int = 400) -> ApiError:
    """``{"errorCode": "UnifiedWebService.<code>", "errorMessage": message}``."""
    return ApiError(status, {"errorCode": f"{SERVICE_PREFIX}.{code}", "errorMessage": message})


def field_null(field: str) -> ApiError:
    """A required field is missing or empty."""
    name = field[:1].upper() + field[1:]
    return thingspace_error(f"INPUT_INVALID.{name}.Null", f"{field} is required.")


def field_invalid(field: str, message: str) -> ApiError:
    """A field is present but malformed; ``message`` says what is accepted."""
    name = field[:1].upper() + field[1:]
    return thingspace_error(f"INPUT_INVALID.{name}.Invalid", message)


def reachability_error(message: str) -> ApiError:
    """The reachability API family answers with a numeric-string error code (SDK ``RestErrorResponseException``)."""
    return ApiError(400, {"errorCode": "400", "errorMessage": message})


_FAULTS: Final = {
    "900901": ("Invalid Credentials", "Make sure you have given the correct access token"),
    "900902": (
        "Missing Credentials",
        "Required OAuth credentials not provided. Make sure your API invocation call has a header: 'Authorization : Bearer ACCESS_TOKEN'",
    ),
    "900906": (
        "No matching resource found in the API for the given request",
        "Check the API documentation and add a proper REST resource path to the invocation URL",
    ),
}


def gateway_fault(code: str, api: str) -> ApiError:
    """The WSO2 gateway envelope; ``api`` is the API context, e.g. ``/m2m/v1``."""
    message, hint = _FAULTS[code]
    version = api.rsplit("/", 1)[-1] or "v1"
    status = 400 if code == "900906" else 401
    description = f"Access failure for API: {api}, version: {version}. {hint}"
    return ApiError(status, {"fault": {"code": code, "message": message, "description": description}})


def oauth_error(error: str, description: str, *, status: int = 400) -> ApiError:
    """The OAuth token endpoint's envelope (``invalid_client``, ``invalid_request``, ...)."""
    return ApiError(status, {"error": error, "error_description": description})
