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
#: NIDD results and device-originated NIDD data (crate ``thingspace-sdk-rust`` ``ServiceName``)
NIDD_SERVICE: Final = "NiddService"
#: availability, uploads, order status and SMS event history results
DEVICE_SERVICE: Final = "DeviceService"

#: Every service the bot registers a listener for (``tsbot callbacks register``).
CONSUMED_SERVICES: Final = (
    CARRIER_SERVICE,
    ENHANCED_CONNECTIVITY_SERVICE,
    SMS_DELIVERY_CONFIRMATION,
    DIAGNOSTICS_SERVICE,
    EXTERNAL_PROVISIONING_CHANGES,
    RESUME_TRACKING_NOTIFICATION,
    NIDD_SERVICE,
    DEVICE_SERVICE,
)

# -- confirmed: NIDD callbacks (crate ``thingspace-sdk-rust`` ``src/models/nidd/``) ---------------
#: ``NiddCallback.niddResponse``: an object holding one of the two keys below
NIDD_RESPONSE: Final = "niddResponse"
#: network-originated data's delivery: ``{"accountName", "acknowledgeTime"?,
#: "firstAttemptDeliveryTime"?, "reason"?, "deviceIds"}``; the envelope's ``status`` is
#: ``Queued``, ``Delivered`` or ``DeliveryFailed``
NIDD_MT: Final = "niddMTDeliveryResponse"
#: device-originated data: ``{"accountName", "message" (base64), "deviceIds"}``
NIDD_MO: Final = "niddMONotificationResponse"

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

# -- extended diagnostics categories and keys (§5.2) -----------------------------------------------
#: The SOAP-era reference (GetDeviceExtendedDiagnosticsInformation) names the categories
#: "DeviceIdentifier" and "Provisioning"; REST confirms "Connectivity". "Account" is ours.
DIAG_CATEGORY_IDENTIFIERS: Final = "DeviceIdentifier"
#: what earlier versions of the sandbox called the identifier category (still read)
DIAG_CATEGORY_IDENTIFIERS_OLD: Final = "Identifiers"
DIAG_CATEGORY_PROVISIONING: Final = "Provisioning"
DIAG_CATEGORY_CONNECTIVITY: Final = "Connectivity"  # the one category name a REST source confirms
DIAG_CATEGORY_ACCOUNT: Final = "Account"
#: Provisioning keys named by the SOAP-era page: CreatedAt, LastActivationBy, LastActivationDate,
#: LastDateSuspended, ResumeDate, DeviceState. Actions today and suspension days are not among
#: them: the bot computes those from the provisioning history.
#: Connectivity: ``Connected`` is the one key a public source names ("True if the device is
#: connected"), as does the device list's ``connected`` (SDK ``ThingspaceDevice``).
DIAG_KEY_CONNECTED: Final = "Connected"
#: Proposed Connectivity keys: no source shows them and the real API does not send them. ``diag``
#: reads them only as optional extras when present (a sandbox of an earlier version sent them);
#: what they would say comes from real data instead: attach state from ``connected``, the last
#: connection from the device list's ``lastConnectionDate`` and the connection history, sessions
#: in the last hour and reconnect loops from the connection history, the IP address from the
#: device list's ``ipAddress`` and the history's ``FramedIpAddress``. APN and radio type are not
#: reported by ThingSpace at all.
DIAG_KEY_ATTACHED: Final = "Attached"
DIAG_KEY_LAST_CONNECTION: Final = "LastConnectionDate"
DIAG_KEY_IP_ADDRESS: Final = "IpAddress"
DIAG_KEY_APN: Final = "Apn"
DIAG_KEY_RAT: Final = "RatType"
DIAG_KEY_SESSIONS_1H: Final = "SessionCount1h"
#: every proposed Connectivity key above (none of them is required by anything)
PROPOSED_DIAG_KEYS: Final = (
    DIAG_KEY_ATTACHED,
    DIAG_KEY_LAST_CONNECTION,
    DIAG_KEY_IP_ADDRESS,
    DIAG_KEY_APN,
    DIAG_KEY_RAT,
    DIAG_KEY_SESSIONS_1H,
)

# -- confirmed: connection history event attributes ------------------------------------------------
#: ``connectionEventAttributes`` keys (Verizon "Retrieve Device Connection API – Key Attributes";
#: the SDK's ``ConnectionEvent`` example): ``Event`` is ``Start`` or ``Stop`` (a data session
#: opening or closing, in both), ``BytesUsed`` the session's bytes (in Stop), ``Msisdn`` and
#: ``FramedIpAddress`` (the address the session was given) in both.
HISTORY_EVENT: Final = "Event"
HISTORY_BYTES: Final = "BytesUsed"
HISTORY_MSISDN: Final = "Msisdn"
HISTORY_IP_ADDRESS: Final = "FramedIpAddress"
HISTORY_START: Final = "Start"
HISTORY_STOP: Final = "Stop"

# -- proposed: paging the device list by ``largestDeviceIdSeen`` ---------------------------------
#: No source says where a client reads the numeric id that ``largestDeviceIdSeen`` compares; we
#: propose a device-list ``extendedAttributes`` entry with this key (value: the number as text).
DEVICE_NUMBER_KEY: Final = "DeviceId"

# -- proposed: SMS event history callback (DeviceService) ----------------------------------------
#: The request is the SDK's ``SMSEventHistoryRequest``; the callback's content is named only by the
#: SOAP-era page (``SmsEvents`` of ``Timestamp``, ``SmsType``, ``SentTo``). We propose
#: ``deviceResponse.smsEventHistory {"smsEvents": [{"timestamp", "smsType": "MoSms"|"MtSms",
#: "sentTo"?}]}``, oldest first.
SMS_EVENT_HISTORY: Final = "smsEventHistory"
SMS_EVENTS: Final = "smsEvents"

# -- proposed: domestic and international usage ---------------------------------------------------
#: The SDK's ``Usage`` carries ``extendedAttributes`` (its example: ``MoSms``); no source names
#: a domestic/international split. We propose these keys (values: digits as text); a record
#: without them is simply not split.
USAGE_DOMESTIC_BYTES: Final = "DomesticBytes"
USAGE_INTERNATIONAL_BYTES: Final = "InternationalBytes"
USAGE_DOMESTIC_SMS: Final = "DomesticSms"
USAGE_INTERNATIONAL_SMS: Final = "InternationalSms"
# -- device-originated (MO) SMS callbacks ----------------------------------------------------------
#: Three forms are accepted (EnhancedConnectivityService), none confirmed for REST callbacks:
#:
#: * our proposal: ``{"requestId", "deviceIds", "smsMessage": {"message", "timestamp"}}``;
#: * the older documented form (the SOAP ``SmsCallbackRequest`` on the StartSmsCallback page,
#:   rendered as JSON): no ``requestId``, ``{"deviceIds", "smsMessage": "<text>"}``;
#: * the flat form of the SDK's ``SMSMessage`` (what ``GET /sms/{account}/history`` lists):
#:   ``{"deviceIds", "message": "<text>", "timestamp": ISO}``, ``requestId`` optional.
MO_SMS_TEXT: Final = "message"
MO_SMS_TIME: Final = "timestamp"

#: ResumeTrackingNotification's ``comment`` in the documented (SOAP-era) form carries the date in
#: US notation: ``"Device will be auto resumed on - 3/15/2017 12:00:00 AM"`` (no zone: UTC).
RESUME_COMMENT_DATE_FORMATS: Final = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y")

#: ``status`` values that mean the operation succeeded when the payload's inner key is not one we
#: know (status first: the confirmed envelope says what happened; the inner key only adds detail).
SUCCESS_STATUSES: Final = frozenset({"success", "succeeded", "successful", "completed", "complete"})

# -- proposed: guessing the service of a callback we could not read ------------------------------
#: A body key (top level or inside ``deviceResponse``) -> the service it most likely came from. Used
#: only to label unreadable callbacks (``tsbot callbacks unknown`` and the
#: ``tsbot_callbacks_unrecognised_total{service}`` metric); never to act on one.
SERVICE_GUESSES: Final = (
    ("niddResponse", "NiddService"),
    (DIAGNOSTICS, DIAGNOSTICS_SERVICE),
    ("smsMessage", ENHANCED_CONNECTIVITY_SERVICE),
    ("message", ENHANCED_CONNECTIVITY_SERVICE),
    (SMS_SENT, ENHANCED_CONNECTIVITY_SERVICE),
    (SMS_DELIVERY, SMS_DELIVERY_CONFIRMATION),
    (RESUME_TRACKING, RESUME_TRACKING_NOTIFICATION),
    (EXTERNAL_CHANGE, EXTERNAL_PROVISIONING_CHANGES),
    ("deviceResponse", CARRIER_SERVICE),
    ("faultResponse", CARRIER_SERVICE),
)
#: Every label the unrecognised-callback metric may carry (bounded label values).
GUESSED_SERVICES: Final = (*CONSUMED_SERVICES, "NiddService", "unknown")

# -- proposed: provisioning history (SDK ProvisioningHistory) ---------------------------------------
#: ``status`` of a provisioning-history event: the SDK says only "the success or failure of the
#: provisioning event". These spellings count as failed (an event that failed changed nothing and
#: is not counted against the line's daily actions); anything else counts as done.
HISTORY_FAILED_STATUSES: Final = frozenset({"failed", "failure", "fail", "error", "rejected"})

# -- proposed: what a request-status answer means per operation ------------------------------------
#: ``GET …/requests/{id}/status`` (v1) and its v2 sub-requests say ``Pending``, ``Success`` or
#: ``Failed`` per device; no source says what "Success" means beyond "completed without errors".
#: Read per operation (the words are the bot's per-device outcomes):
#:
#: * suspend / restore / cancel location: the change was made (``ok``) or not (``failed``);
#: * SMS and NIDD data: ``Success`` once the device received it (``delivered``), ``Failed`` when
#:   it was not (expired, refused);
#: * a reachability query: ``Success`` when ThingSpace found the device reachable, ``Failed``
#:   when the query ended without that; ``Pending`` means not reachable yet.
REQUEST_STATUS_OUTCOMES: Final = {
    "suspend": {"Success": "ok", "Failed": "failed"},
    "resume": {"Success": "ok", "Failed": "failed"},
    "cancel-location": {"Success": "ok", "Failed": "failed"},
    "sms": {"Success": "delivered", "Failed": "failed"},
    "nidd": {"Success": "delivered", "Failed": "failed"},
    "reach": {"Success": "reachable", "Failed": "unreachable"},
}
