"""Wire shapes that no public source confirms: our proposals, kept in one place.

No Verizon page or SDK model gives these, so they are *proposed*: the inside of
``deviceResponse`` for suspend/restore/cancel-location, the SMS callbacks, the DiagnosticsService
reachability callback, the REST shape of ResumeTrackingNotification and
ExternalProvisioningChanges, and the extended diagnostics category names beyond
``Connectivity``. The sandbox emits exactly these names and the
client parses exactly these names, so when a real payload is captured, this file is the one to
change.

Everything confirmed by a source (paths, ``requestId``, ``deviceIds``, ``status``,
``faultResponse``, ``callbackCount``, ``maxCallbackThreshold``) is spelled where it is used.
"""

from __future__ import annotations

from typing import Final

# -- callback service names (confirmed: Verizon "Register a Callback Listener URL") ---------------
CARRIER_SERVICE: Final = "CarrierService"
ENHANCED_CONNECTIVITY_SERVICE: Final = "EnhancedConnectivityService"
SMS_DELIVERY_CONFIRMATION: Final = "SMSDeliveryConfirmation"
DIAGNOSTICS_SERVICE: Final = "DiagnosticsService"
EXTERNAL_PROVISIONING_CHANGES: Final = "ExternalProvisioningChanges"
RESUME_TRACKING_NOTIFICATION: Final = "ResumeTrackingNotification"

#: Every service the bot registers a listener for (``tsbot callbacks register``).
CONSUMED_SERVICES: Final = (
    CARRIER_SERVICE,
    ENHANCED_CONNECTIVITY_SERVICE,
    SMS_DELIVERY_CONFIRMATION,
    DIAGNOSTICS_SERVICE,
    EXTERNAL_PROVISIONING_CHANGES,
    RESUME_TRACKING_NOTIFICATION,
)

# -- proposed: keys inside ``deviceResponse`` (CarrierService, SMS services) --------------------
#: suspend / restore result: ``{"state": "suspend"|"active", "resumeDate": ISO|None, "deviceIds": [...]}``
STATE_CHANGE: Final = "stateChange"
#: cancel location result: ``{"status": "Completed", "completedAt": ISO}``
CANCEL_LOCATION: Final = "cancelLocationResponse"
#: MT SMS handed to the network (EnhancedConnectivityService): ``{"status": "Sent"}``
SMS_SENT: Final = "smsResponse"
#: MT SMS received by the device or expired (SMSDeliveryConfirmation):
#: ``{"status": "Delivered"|"Expired"}``
SMS_DELIVERY: Final = "smsDeliveryConfirmation"
#: auto-resume warning (ResumeTrackingNotification): ``{"resumeDate": ISO, "comment": str}``
RESUME_TRACKING: Final = "resumeTrackingNotification"
#: a change made outside the API (ExternalProvisioningChanges):
#: ``{"changeType": "Suspend"|"Resume"|"Activate"|"Deactivate"|"ChangeMdn", "state": str,
#:   "changedAt": ISO, "changedBy": str}``
EXTERNAL_CHANGE: Final = "externalProvisioningChange"

# -- proposed: top-level keys of other callbacks -------------------------------------------------
#: device-originated SMS (EnhancedConnectivityService): ``{"message": str, "timestamp": ISO}``
MO_SMS: Final = "smsMessage"
#: DiagnosticsService (names follow 3GPP's SCEF ``MonitoringEventReport``): ``{"monitorId", "monitorType", "reachabilityStatus"
#: ("REACHABLE"|"UNREACHABLE"), "maxUEAvailabilityTime", "monitorExpirationTime", "eventTime"}``
DIAGNOSTICS: Final = "diagnosticsResponse"
REACHABLE: Final = "REACHABLE"
UNREACHABLE: Final = "UNREACHABLE"

# -- proposed: extended diagnostics categories and keys ----------------------------------------
DIAG_CATEGORY_IDENTIFIERS: Final = "Identifiers"
DIAG_CATEGORY_PROVISIONING: Final = "Provisioning"
DIAG_CATEGORY_CONNECTIVITY: Final = "Connectivity"  # the one category name a source confirms
DIAG_CATEGORY_ACCOUNT: Final = "Account"
#: Provisioning keys (named by the SOAP-era page): CreatedAt, LastActivationBy, LastActivationDate,
#: LastDateSuspended, ResumeDate, DeviceState. Proposed additions:
DIAG_KEY_ACTIONS_TODAY: Final = "ProvisioningActionsToday"
DIAG_KEY_SUSPENDED_DAYS_CONTINUOUS: Final = "SuspendedDaysContinuous"
DIAG_KEY_SUSPENDED_DAYS_YEAR: Final = "SuspendedDaysLast12Months"
#: Connectivity keys: Connected (confirmed); proposed: Attached, LastConnectionDate, IpAddress,
#: Apn, RatType, SessionCount1h.
DIAG_KEY_CONNECTED: Final = "Connected"
DIAG_KEY_ATTACHED: Final = "Attached"
DIAG_KEY_LAST_CONNECTION: Final = "LastConnectionDate"
DIAG_KEY_IP_ADDRESS: Final = "IpAddress"
DIAG_KEY_APN: Final = "Apn"
DIAG_KEY_RAT: Final = "RatType"
DIAG_KEY_SESSIONS_1H: Final = "SessionCount1h"

# -- proposed: paging the device list by ``largestDeviceIdSeen`` ---------------------------------
#: No source says where a client reads the numeric id that ``largestDeviceIdSeen`` compares; we
#: propose a device-list ``extendedAttributes`` entry with this key (value: the number as text).
DEVICE_NUMBER_KEY: Final = "DeviceId"
