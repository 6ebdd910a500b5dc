"""``ThingSpaceClient``: one method per Connectivity Management operation, typed in and out.

The only code in the bot that speaks HTTP to ThingSpace. Paths and bodies follow Verizon's
Connectivity Management API reference and the request models of Verizon's Python SDK
(``sdksio-verizon-apis-sdk``: ``CarrierActionsRequest``, ``SMSSendRequest``,
``NotificationReportRequest`` …); each method returns models from :mod:`bot.thingspace.models`
and raises only the errors of :mod:`bot.thingspace.errors`.

Asynchronous operations (suspend, restore, SMS, cancel location, reachability) return
:class:`~bot.thingspace.models.RequestAccepted`; their results arrive later by callback, one per
device, carrying the same ``request_id``.

Resilience:

* every call has httpx's per-phase timeouts (``timeout=``) *and* an overall ``deadline`` (seconds)
  checked while the body arrives, so a server that trickles bytes cannot hold a thread;
* **reads** (device list, diagnostics, history, usage, status, listings) are retried up to
  ``retries`` times on a connect error or a 5xx answer, with exponential backoff and full jitter;
* **changes** (suspend, restore, SMS, cancel location, callback registration, reachability
  monitors) are never retried: a lost answer must be reconciled by the caller, not resent;
* nothing else is retried (4xx, 429, read timeouts), and a refused login never is (see
  :mod:`bot.thingspace.auth`);
* logs carry the operation, status and duration; identifiers are masked.

One client is safe to share between threads: httpx's pool is thread-safe and the auth is
single-flight. ``observer(operation, seconds, error_class_name_or_None)`` is called after every
operation (for metrics).
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import parse_qs, urlsplit

import httpx

from bot.thingspace import shapes
from bot.thingspace.auth import LoginGate, ThingSpaceAuth
from bot.thingspace.errors import (
    DeviceNotFound,
    InvalidRequest,
    ThingSpaceConnectError,
    ThingSpaceError,
    ThingSpaceTimeout,
    ThingSpaceTransportError,
    UnexpectedResponse,
    error_from_response,
)
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import (
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
    UsageRecord,
    to_wire_datetime,
    wire_device_list,
)
from bot.thingspace.sms import SmsTextError, sms_length

__all__ = [
    "DEFAULT_TIMEOUT",
    "MISMATCH_WINDOW",
    "NIDD_MAX_BYTES",
    "REACHABILITY_KINDS",
    "REACHABILITY_TYPES",
    "ThingSpaceClient",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)

#: ``requestType`` values of the reachability APIs (Verizon: "Monitor Device Reachability";
#: the combinations are listed on "Retrieve Reachability Status").
REACHABILITY_TYPES: Final = (
    "REACHABLE_FOR_DATA",
    "REACHABLE_FOR_SMS",
    "LOSS_OF_CONNECTIVITY",
    "REACHABLE_FOR_DATA_SMS",
    "REACHABLE_FOR_DATA_AND_LOSS",
    "REACHABLE_FOR_SMS_AND_LOSS",
    "REACHABLE_FOR_DATA_SMS_AND_LOSS",
)
#: The single-device status query accepts only the three simple types (Verizon: "Retrieve
#: Reachability Status"; SDK ``NotificationReportStatusRequest``).
_STATUS_TYPES: Final = REACHABILITY_TYPES[:3]
#: Kinds the reachability APIs accept, one kind per request (Verizon: "Retrieve Active
#: Reachability Monitoring").
REACHABILITY_KINDS: Final = ("imei", "mdn", "msisdn", "iccid")
_DIAGNOSTICS_KINDS: Final = ("iccid", "imei", "mdn", "meid", "msisdn")
_CANCEL_LOCATION_KINDS: Final = ("imei", "iccid", "mdn", "imsi", "eid", "msisdn", "min")
#: NIDD limits (crate ``thingspace-sdk-rust`` ``MAX_NIDD_BYTES``, ``NIDD_DELIVERY_TIME_SECS``)
NIDD_MAX_BYTES: Final = 1358
NIDD_MIN_DELIVERY_S: Final = 2
NIDD_MAX_DELIVERY_S: Final = 30 * 86400
#: The window an IMEI/ICCID mismatch query covers when the caller names none.
MISMATCH_WINDOW: Final = timedelta(days=365)
_MAX_DEVICES: Final = 10_000
_MAX_BODY: Final = 64 * 1024 * 1024
_RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})


class ThingSpaceClient:
    """A ThingSpace Connectivity Management client for one account. Thread-safe; close it."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        account: str,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
        login_cooldown: float = 300.0,
        deadline: float = 60.0,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        observer: Callable[[str, float, str | None], None] | None = None,
        max_connections: int = 16,
        login_gate: LoginGate | None = None,
    ) -> None:
        if not account:
            raise InvalidRequest("a ThingSpace account name is required (THINGSPACE_ACCOUNT)")
        self.account = account
        self.auth = ThingSpaceAuth(
            base_url,
            client_id=client_id,
            client_secret=client_secret,
            username=username,
            password=password,
            clock=clock,
            login_cooldown=login_cooldown,
            login_gate=login_gate,
        )
        self._retries = max(0, int(retries))
        self._deadline = float(deadline)
        self._backoff = float(backoff)
        self._backoff_max = float(backoff_max)
        self._observer = observer
        self._http = httpx.Client(
            base_url=str(base_url).rstrip("/"),
            transport=transport,
            timeout=timeout,
            auth=self.auth,
            headers={"Accept": "application/json"},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        # At most one request in flight per pooled connection. httpcore 1.0.9 can close a connection
        # it has already handed to a queued request (encode/httpcore#1110), which surfaces as a
        # ReadError (EBADF) or a hang until the read timeout; with no queue and no surplus idle
        # connections to trim, that race never starts.
        self._slots = threading.BoundedSemaphore(max_connections)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ThingSpaceClient({str(self._http.base_url)!r}, account={self.account!r})"

    # -- the one place that sends --------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, *, body: Any = None, read: bool) -> Any:
        """Send one operation; return the decoded JSON body (``None`` for an empty body)."""
        return self._exchange(operation, method, path, body=body, read=read)[0]

    def _exchange(
        self, operation: str, method: str, path: str, *, body: Any = None, read: bool
    ) -> tuple[Any, httpx.Response]:
        """Send one operation; return the decoded JSON body and the (read) response."""
        started = time.monotonic()
        error: str | None = None
        try:
            return self._call_with_retries(method, path, body, read)
        except ThingSpaceError as exc:
            error = type(exc).__name__
            raise
        finally:
            elapsed = time.monotonic() - started
            logger.debug(
                "%s %s %s in %.1f ms", operation, method, path, elapsed * 1000, extra={"error": error}
            )
            if self._observer is not None:
                self._observer(operation, elapsed, error)

    def _call_with_retries(self, method: str, path: str, body: Any, read: bool) -> tuple[Any, httpx.Response]:
        attempts = 1 + (self._retries if read else 0)
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                status, content, response = self._send_once(method, path, body)
            except ThingSpaceConnectError as exc:
                if last:
                    raise
                logger.warning("%s %s: %s; retry %d of %d", method, path, exc, attempt, attempts - 1)
                self._sleep_before(attempt)
                continue
            if status in _RETRY_STATUSES and not last:
                logger.warning("%s %s: HTTP %d; retry %d of %d", method, path, status, attempt, attempts - 1)
                self._sleep_before(attempt)
                continue
            if not 200 <= status < 300:
                raise error_from_response(response)
            if not content.strip():
                return None, response
            try:
                return response.json(), response
            except ValueError:
                raise UnexpectedResponse("the answer is not JSON", status=status, path=path) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _sleep_before(self, attempt: int) -> None:
        cap = min(self._backoff_max, self._backoff * (2 ** (attempt - 1)))
        time.sleep(random.uniform(0, cap))

    def _send_once(self, method: str, path: str, body: Any) -> tuple[int, bytes, httpx.Response]:
        """One HTTP exchange under the overall deadline; returns a fully read response."""
        deadline = time.monotonic() + self._deadline
        request = self._http.build_request(method, path, json=body)
        if not self._slots.acquire(timeout=self._deadline):
            raise ThingSpaceTimeout(
                f"{method} {path}: every connection stayed busy for {self._deadline:.0f} s", path=path
            )
        try:
            response = self._http.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if time.monotonic() > deadline:
                        raise ThingSpaceTimeout(
                            f"{method} {path}: no complete answer within {self._deadline:.0f} s", path=path
                        )
                    if size > _MAX_BODY:
                        raise UnexpectedResponse(
                            "the answer is larger than 64 MiB", status=response.status_code, path=path
                        )
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            raise ThingSpaceTimeout(f"{method} {path}: {type(exc).__name__}", path=path) from exc
        except httpx.ConnectError as exc:
            raise ThingSpaceConnectError(f"{method} {path}: {type(exc).__name__}", path=path) from exc
        except httpx.HTTPError as exc:
            raise ThingSpaceTransportError(f"{method} {path}: {type(exc).__name__}", path=path) from exc
        finally:
            self._slots.release()
        content = b"".join(chunks)
        # Rebuild a plain, read response so callers can use .json() and error parsing.
        done = httpx.Response(
            response.status_code, headers=response.headers, content=content, request=response.request
        )
        return response.status_code, content, done

    # -- device information --------------------------------------------------------------------

    def device_pages(
        self,
        *,
        group: str | None = None,
        service_plan: str | None = None,
        state: str | None = None,
        custom_fields: Mapping[str, str] | None = None,
        contains: tuple[str, str] | None = None,
        earliest: datetime | None = None,
        latest: datetime | None = None,
        page_size: int | None = None,
        by_device_number: bool = False,
    ) -> Iterator[DevicePage]:
        """Every page of the account's device list: up to 2,000 devices per page.

        Verizon: "Retrieve Device Information"; SDK ``AccountDeviceListRequest``/``AccountDeviceListResult``.

        ThingSpace answers 202 + ``hasMoreData`` while more remain. Two paging styles:

        * by date added (default): the next page starts at the last device's ``createdAt``
          (``earliest``); devices already seen on the boundary are not repeated;
        * ``by_device_number=True``: ``largestDeviceIdSeen`` is raised to the largest numeric
          device id of the page, read from the ``extendedAttributes`` entry named
          :data:`~bot.thingspace.shapes.DEVICE_NUMBER_KEY` (our proposal: no public source says
          where the numeric id comes from).

        A page that does not advance raises :class:`UnexpectedResponse` rather than looping.
        """
        path = "/m2m/v1/devices/actions/list"
        base: dict[str, Any] = {"accountName": self.account}
        if group:
            base["groupName"] = group
        if service_plan:
            base["servicePlan"] = service_plan
        if state:
            base["currentState"] = state
        if custom_fields:
            base["customFields"] = [{"key": k, "value": v} for k, v in custom_fields.items()]
        if contains:
            kind, text = contains
            base["filter"] = {"deviceIdentifierFilters": [{"kind": kind.lower(), "contains": text}]}
        if latest is not None:
            base["latest"] = to_wire_datetime(latest)
        if page_size is not None:
            base["maxNumberOfDevices"] = page_size
        if by_device_number and earliest is not None:
            base["earliest"] = to_wire_datetime(earliest)
        # Only the devices on the cursor itself can come again (a boundary ThingSpace may treat as
        # inclusive), so only they are remembered: memory stays one page, whatever the fleet.
        boundary: set[tuple[str, str]] = set()
        cursor: datetime | int | None = 0 if by_device_number else earliest
        while True:
            body = dict(base)
            if by_device_number:
                body["largestDeviceIdSeen"] = cursor
            elif cursor is not None:
                body["earliest"] = to_wire_datetime(cast(datetime, cursor))
            data = self._call("list_devices", "POST", path, body=body, read=True)
            page = DevicePage.from_wire(self._object(data, path))
            fresh = tuple(d for d in page.devices if d.ids and _device_key(d) not in boundary)
            yield DevicePage(devices=fresh, has_more=page.has_more)
            if not page.has_more:
                return
            marks: list[Any] = [_device_number(d) if by_device_number else d.created_at for d in page.devices]
            known = [m for m in marks if m is not None]
            next_cursor: datetime | int | None = max(known) if known else None
            if next_cursor is None or (not fresh and next_cursor == cursor):
                raise UnexpectedResponse(
                    "the device list says more data follows but the page does not advance",
                    status=202,
                    path=path,
                )
            on_it = {
                _device_key(d) for d, m in zip(page.devices, marks, strict=True) if d.ids and m == next_cursor
            }
            boundary = on_it | boundary if next_cursor == cursor else on_it
            cursor = next_cursor

    def list_devices(self, **filters: Any) -> Iterator[Device]:
        """All devices matching the filters of :meth:`device_pages`, page after page."""
        for page in self.device_pages(**filters):
            yield from page.devices

    def get_device(self, device_id: DeviceId) -> Device:
        """One line with its extended attributes; :class:`DeviceNotFound` if the account lacks it."""
        body = {"accountName": self.account, "deviceId": device_id.to_wire()}
        data = self._call("get_device", "POST", "/m2m/v1/devices/actions/list", body=body, read=True)
        page = DevicePage.from_wire(self._object(data, "/m2m/v1/devices/actions/list"))
        for device in page.devices:
            if device.ids.get(device_id.kind, "").upper() == device_id.id.upper():
                return device
        if len(page.devices) == 1:  # the one line ThingSpace found, listed under another kind of id
            return page.devices[0]
        if page.devices:
            raise UnexpectedResponse(
                f"ThingSpace listed {len(page.devices)} lines for {device_id.masked()} and none carries that id",
                status=200,
                path="/m2m/v1/devices/actions/list",
            )
        raise DeviceNotFound(
            f"no device {device_id.masked()} in the account",
            status=200,
            error_code="REQUEST_FAILED.DeviceNotFound",
            path="/m2m/v1/devices/actions/list",
        )

    def extended_diagnostics(self, device_id: DeviceId) -> Diagnostics:
        """Extended diagnostics of one line (kinds iccid, imei, mdn, meid, msisdn; synchronous).

        Verizon: "Get Device Extended Diagnostic Information"; SDK
        ``DeviceExtendedDiagnosticsRequest``/``DeviceExtendedDiagnosticsResult``.
        """
        _check_kind(device_id, _DIAGNOSTICS_KINDS, "extended diagnostics")
        body = {"accountName": self.account, "deviceList": [device_id.to_wire()]}
        path = "/m2m/v1/devices/extendeddiagnostics/actions/list"
        data = self._call("extended_diagnostics", "POST", path, body=body, read=True)
        return Diagnostics.from_wire(self._object(data, path))

    def connection_history(
        self, device_id: DeviceId, earliest: datetime, latest: datetime
    ) -> Iterator[ConnectionEvent]:
        """Connection events, oldest first, over as many 500-record pages as needed.

        Verizon: "Retrieve Device Connection History"; SDK ``ConnectionHistoryResult``.
        """
        _check_window(earliest, latest)
        path = "/m2m/v1/devices/connections/actions/listHistory"
        yield from self._history(
            "connection_history",
            path,
            {"deviceId": device_id.to_wire()},
            earliest,
            latest,
            key="connectionHistory",
            parse=ConnectionEvent.from_wire,
            when=lambda e: e.occurred_at,
        )

    def usage_history(
        self, device_id: DeviceId, earliest: datetime, latest: datetime
    ) -> Iterator[UsageRecord]:
        """Usage records, oldest first, over as many 500-record pages as needed.

        Verizon: "Retrieve Device Usage History"; SDK ``DeviceUsageListResult``.
        """
        _check_window(earliest, latest)
        yield from self._history(
            "usage_history",
            "/m2m/v1/devices/usage/actions/list",
            {"deviceId": device_id.to_wire()},
            earliest,
            latest,
            key="usageHistory",
            parse=UsageRecord.from_wire,
            when=lambda r: r.timestamp,
        )

    def provisioning_history(
        self, device_id: DeviceId, earliest: datetime, latest: datetime
    ) -> Iterator[ProvisioningEvent]:
        """The line's provisioning events (activate, suspend, restore, deactivate, move) between
        *earliest* and *latest*, oldest first, over as many 500-record pages as needed.

        ``POST /m2m/v1/devices/history/actions/list`` with ``{deviceId, earliest, latest}``
        (SDK ``DeviceProvisioningHistoryListRequest`` -> ``DeviceProvisioningHistoryListResult``);
        synchronous, 202 + ``hasMoreData`` while more follow. Each :class:`ProvisioningEvent` says
        when (``occurred_at``), what (``action``, ``event_type``), how it ended (``status``,
        ``failed``) and who (``event_by``).
        """
        _check_window(earliest, latest)
        yield from self._history(
            "provisioning_history",
            "/m2m/v1/devices/history/actions/list",
            {"deviceId": device_id.to_wire()},
            earliest,
            latest,
            key="provisioningHistory",
            parse=ProvisioningEvent.from_wire,
            when=lambda e: e.occurred_at,
        )

    def mo_sms_pages(self) -> Iterator[list[MoSms]]:
        """Blocks of device-originated SMS waiting at ThingSpace, oldest first (up to 100 each).

        ``GET /m2m/v1/sms/{account}/history`` (SDK ``SMSMessagesQueryResult`` of ``SMSMessage``
        ``{deviceIds, message, timestamp}``; the SDK 2.0's ``get_sms_messages`` reads the same
        fields as ``SmsMessagesResponse`` of ``GIOSmsMessage``). While more wait ThingSpace answers 202 with
        ``Location: /sms/{account}/history?next={token}``; asking for the next block with that
        token *acknowledges* the previous one, which is then gone from ThingSpace. So store each
        block durably before pulling the next: stop iterating (or crash) before that and the same
        block comes again next time. Messages may arrive out of order.
        """
        path = f"/m2m/v1/sms/{self.account}/history"
        token: str | None = None
        seen: set[str] = set()
        while True:
            target = path if token is None else f"{path}?next={token}"
            data, response = self._exchange("mo_sms", "GET", target, read=True)
            obj = self._object(data if data is not None else {"messages": []}, path)
            yield [MoSms.from_wire(m) for m in obj.get("messages") or [] if isinstance(m, dict)]
            token = _next_token(response.headers.get("location", ""))
            if response.status_code != 202 and obj.get("hasMoreData") is not True:
                return
            if token is None or token in seen:
                raise UnexpectedResponse(
                    "the SMS inbox says more messages wait but gives no new next token", status=202, path=path
                )
            seen.add(token)

    def mo_sms(self) -> Iterator[MoSms]:
        """Every device-originated SMS waiting at ThingSpace (:meth:`mo_sms_pages`, flattened).
        A block is acknowledged when the iteration moves past it."""
        for page in self.mo_sms_pages():
            yield from page

    def _history(
        self,
        operation: str,
        path: str,
        base: dict[str, Any],
        earliest: datetime,
        latest: datetime,
        *,
        key: str,
        parse: Callable[[object], Any],
        when: Callable[[Any], datetime | None],
    ) -> Iterator[Any]:
        cursor = earliest
        boundary: list[Any] = []
        # the wire has whole seconds: round *latest* up, or an event of its last second is lost
        if latest.microsecond:
            latest = latest.replace(microsecond=0) + timedelta(seconds=1)
        while True:
            body = {**base, "earliest": to_wire_datetime(cursor), "latest": to_wire_datetime(latest)}
            data = self._object(self._call(operation, "POST", path, body=body, read=True), path)
            records = [parse(item) for item in data.get(key) or [] if isinstance(item, dict)]
            fresh = [r for r in records if r not in boundary]
            yield from fresh
            if data.get("hasMoreData") is not True:
                return
            times = [t for t in (when(r) for r in records) if t is not None]
            next_cursor = max(times) if times else None
            if next_cursor is None or (not fresh and next_cursor == cursor):
                raise UnexpectedResponse(
                    "the history says more data follows but the page does not advance", status=202, path=path
                )
            boundary = [r for r in records if when(r) == next_cursor]
            cursor = next_cursor

    def imei_iccid_mismatches(
        self,
        *,
        devices: Sequence[DeviceId] = (),
        group: str | None = None,
        earliest: datetime | None = None,
        latest: datetime | None = None,
    ) -> list[ImeiIccidMismatch]:
        """SIMs activated with other hardware than expected (SDK ``DeviceMismatchListRequest``).

        The SDK makes ``filter`` required with both ``earliest`` and ``latest`` (``DateFilter``),
        so both are always sent: by default the :data:`MISMATCH_WINDOW` up to now.
        """
        body: dict[str, Any] = {"accountName": self.account}
        if devices:
            body["devices"] = wire_device_list(devices)
        if group:
            body["groupName"] = group
        end = latest if latest is not None else datetime.now(UTC)
        start = earliest if earliest is not None else end - MISMATCH_WINDOW
        _check_window(start, end)
        body["filter"] = {"earliest": to_wire_datetime(start), "latest": to_wire_datetime(end)}
        path = "/m2m/v1/devices/actions/list/imeiiccidmismatch"
        data = self._object(self._call("imei_iccid_mismatches", "POST", path, body=body, read=True), path)
        return [ImeiIccidMismatch.from_wire(d) for d in data.get("devices") or [] if isinstance(d, dict)]

    def account_info(self) -> Account:
        """``GET /accounts/{account}``."""
        path = f"/m2m/v1/accounts/{self.account}"
        return Account.from_wire(self._object(self._call("account_info", "GET", path, read=True), path))

    # -- provisioning (asynchronous, never retried) ----------------------------------------------

    def suspend(self, devices: Sequence[DeviceId]) -> RequestAccepted:
        """Suspend lines; one CarrierService callback per device follows.

        Verizon: "Suspend Devices"; SDK ``CarrierActionsRequest``.
        """
        return self._carrier_action("suspend", devices)

    def restore(self, devices: Sequence[DeviceId]) -> RequestAccepted:
        """Restore suspended lines; one CarrierService callback per device follows.

        Verizon: "Restore Devices"; same body as suspend (SDK ``CarrierActionsRequest``).
        """
        return self._carrier_action("restore", devices)

    def _carrier_action(self, action: str, devices: Sequence[DeviceId]) -> RequestAccepted:
        devices = _device_list(devices, action)
        body = {"accountName": self.account, "devices": wire_device_list(devices)}
        path = f"/m2m/v1/devices/actions/{action}"
        logger.info("%s %d device(s), first %s", action, len(devices), devices[0].masked())
        return self._accepted(action, "POST", path, body)

    def send_sms(
        self, devices: Sequence[DeviceId], text: str, encoding: str | None = None
    ) -> RequestAccepted:
        """Send an SMS; EnhancedConnectivityService and SMSDeliveryConfirmation callbacks follow.

        The text is checked here for the encoding (:func:`bot.thingspace.sms.sms_length`: 160
        GSM septets in 7-bit, 140 units in 8-bit) and refused with :class:`InvalidRequest`.
        """
        devices = _device_list(devices, "send an SMS to")
        if not isinstance(text, str) or not text:
            raise InvalidRequest("the SMS text is empty")
        try:
            length, limit = sms_length(text, encoding or "7-bit")
        except SmsTextError as exc:
            raise InvalidRequest(str(exc)) from None
        if length > limit:
            unit = "bytes" if encoding == "8-bit-UTF-8" else "characters"
            raise InvalidRequest(
                f"the SMS is {length} {unit} long in {encoding or '7-bit'}, which allows at most {limit}"
            )
        body: dict[str, Any] = {
            "accountName": self.account,
            "smsMessage": text,
            "deviceIds": [d.to_wire() for d in devices],
        }
        if encoding is not None:
            body["dataEncoding"] = encoding
        logger.info("SMS to %d device(s), first %s", len(devices), devices[0].masked())
        return self._accepted("send_sms", "POST", "/m2m/v1/sms", body)

    def send_nidd(
        self, devices: Sequence[DeviceId], data: bytes, max_delivery_time: timedelta
    ) -> RequestAccepted:
        """Send non-IP data to NB-IoT lines; NiddService callbacks follow (``Queued``, then
        ``Delivered`` or ``DeliveryFailed``).

        ``POST /m2m/v1/devices/nidd/message {accountName, deviceIds, maximumDeliveryTime,
        message}`` (crate ``thingspace-sdk-rust`` ``NiddMessage``): the data goes base64-encoded,
        at most :data:`NIDD_MAX_BYTES` bytes; the delivery time is whole seconds from 2 s to 30
        days. Both are checked here and refused with :class:`InvalidRequest`.
        """
        devices = _device_list(devices, "send NIDD data to")
        if not isinstance(data, bytes | bytearray) or not data:
            raise InvalidRequest("the NIDD message is empty")
        if len(data) > NIDD_MAX_BYTES:
            raise InvalidRequest(
                f"the NIDD message is {len(data):,} bytes; ThingSpace takes at most {NIDD_MAX_BYTES:,}"
            )
        seconds = int(max_delivery_time.total_seconds())
        if not NIDD_MIN_DELIVERY_S <= seconds <= NIDD_MAX_DELIVERY_S:
            raise InvalidRequest("maximumDeliveryTime must be between 2 seconds and 30 days")
        body = {
            "accountName": self.account,
            "deviceIds": [d.to_wire() for d in devices],
            "maximumDeliveryTime": seconds,
            "message": base64.b64encode(bytes(data)).decode("ascii"),
        }
        logger.info("NIDD to %d device(s), first %s", len(devices), devices[0].masked())
        return self._accepted("send_nidd", "POST", "/m2m/v1/devices/nidd/message", body)

    def sms_event_history(self, device_id: DeviceId, earliest: datetime, latest: datetime) -> RequestAccepted:
        """Ask for a line's SMS events (SDK ``SMSEventHistoryRequest``); they arrive by a
        DeviceService callback. ThingSpace keeps three months of them."""
        _check_window(earliest, latest)
        body = {
            "deviceId": device_id.to_wire(),
            "earliest": to_wire_datetime(earliest),
            "latest": to_wire_datetime(latest),
        }
        return self._accepted("sms_event_history", "POST", "/m2m/v1/devices/sms/history/actions/list", body)

    def cancel_location(self, device: DeviceId) -> RequestAccepted:
        """Detach one line from the network (one device per call, queued by ThingSpace).

        Verizon: "Cancel Location" (limited beta; not in the SDK).
        """
        _check_kind(device, _CANCEL_LOCATION_KINDS, "cancel location")
        body = {"accountName": self.account, "devices": wire_device_list([device])}
        logger.info("cancel location for %s", device.masked())
        return self._accepted("cancel_location", "POST", "/m2m/v1/devices/actions/cancellocation", body)

    # -- callback listeners ----------------------------------------------------------------------

    def register_callback(
        self, service: str, url: str, username: str = "", password: str = ""
    ) -> CallbackListener:
        """Register (or replace) the listener URL for one callback service.

        Verizon: "Register a Callback Listener URL"; SDK ``RegisterCallbackRequest``.
        """
        if not service or not url:
            raise InvalidRequest("a callback registration needs a service name and a URL")
        body: dict[str, str] = {"name": service, "url": url}
        if username:
            body["username"] = username
        if password:
            body["password"] = password
        path = f"/m2m/v1/callbacks/{self.account}"
        data = self._call("register_callback", "POST", path, body=body, read=False)
        answer = data if isinstance(data, dict) else {}
        return CallbackListener(
            account=str(answer.get("accountName") or self.account),
            service=str(answer.get("serviceName") or service),
            url=url,
            username=username,
            password=password,
        )

    def list_callbacks(self) -> list[CallbackListener]:
        """The registered listeners (an empty body means none; Verizon: "List Callback Listeners")."""
        path = f"/m2m/v1/callbacks/{self.account}"
        data = self._call("list_callbacks", "GET", path, read=True)
        if data is None:
            return []
        if isinstance(data, dict):  # tolerate a wrapped or single answer
            data = data.get("callbacks", [data] if "serviceName" in data else [])
        if not isinstance(data, list):
            raise UnexpectedResponse("the callback list is not a JSON array", status=200, path=path)
        return [CallbackListener.from_wire(item) for item in data if isinstance(item, dict)]

    def deregister_callback(self, service: str) -> None:
        """Remove the listener of one service (Verizon: "Deregister Callback Listener")."""
        if not service:
            raise InvalidRequest("name the callback service to deregister")
        path = f"/m2m/v1/callbacks/{self.account}/name/{service}"
        self._call("deregister_callback", "DELETE", path, read=False)

    # -- reachability (DiagnosticsService) -------------------------------------------------------

    def start_reachability_monitor(
        self, devices: Sequence[DeviceId], request_type: str, expires_at: datetime
    ) -> RequestAccepted:
        """Monitor reachability until ``expires_at`` (≤ 10 years); callbacks on every change.

        Verizon: "Monitor Device Reachability"; SDK ``NotificationReportRequest``.
        """
        devices = _device_list(devices, "monitor")
        _check_reachability(devices, request_type, REACHABILITY_TYPES)
        body = {
            "accountName": self.account,
            "requestType": request_type,
            "devices": wire_device_list(devices),
            "monitorExpirationTime": to_wire_datetime(expires_at),
        }
        path = "/m2m/v1/diagnostics/basic/devicereachability"
        return self._accepted("start_reachability_monitor", "POST", path, body)

    def reachability_status(
        self, device: DeviceId, request_type: str = "REACHABLE_FOR_DATA", expires_at: datetime | None = None
    ) -> RequestAccepted:
        """Ask once whether a device is reachable; the answer comes by callback.

        Verizon: "Retrieve Reachability Status"; SDK ``NotificationReportStatusRequest``.
        """
        _check_reachability([device], request_type, _STATUS_TYPES)
        body: dict[str, Any] = {
            "accountName": self.account,
            "device": device.to_wire(),
            "requestType": request_type,
        }
        if expires_at is not None:
            body["requestExpirationTime"] = to_wire_datetime(expires_at)
        path = "/m2m/v1/diagnostics/basic/devicereachability/status"
        return self._accepted("reachability_status", "POST", path, body)

    def list_reachability_monitors(
        self, devices: Sequence[DeviceId], request_type: str | None = None
    ) -> RequestAccepted:
        """Ask which monitors are active for these devices; the list comes by callback.

        Verizon: "Retrieve Active Reachability Monitoring"; SDK ``RetrieveMonitorsRequest``.
        """
        devices = _device_list(devices, "list monitors of")
        _check_reachability(devices, request_type, REACHABILITY_TYPES)
        body: dict[str, Any] = {"accountName": self.account, "devices": wire_device_list(devices)}
        if request_type is not None:
            # The SDK's RetrieveMonitorsRequest names it monitorType, the reference page
            # requestType: send both, so either reading of the API filters.
            body["monitorType"] = request_type
            body["requestType"] = request_type
        path = "/m2m/v1/diagnostics/basic/devicereachability/monitors"
        return self._accepted("list_reachability_monitors", "POST", path, body)

    def stop_reachability_monitors(self, monitor_ids: Iterable[str]) -> RequestAccepted:
        """Stop monitors by id (a DELETE with a JSON body).

        Verizon: "Stop Device Reachability Monitoring"; SDK ``StopMonitorRequest``.
        """
        ids = [m.strip() for m in monitor_ids if isinstance(m, str) and m.strip()]
        if not ids:
            raise InvalidRequest("name at least one monitor id to stop")
        body = {"accountName": self.account, "monitorIds": ids}
        path = "/m2m/v1/diagnostics/basic/devicereachability"
        return self._accepted("stop_reachability_monitors", "DELETE", path, body)

    # -- requests --------------------------------------------------------------------------------

    def request_status(self, request_id: str, *, detailed: bool = False) -> RequestStatus:
        """Status of an asynchronous request (Verizon: "Get Request Status"; SDK ``AsynchronousRequestResult``).

        v1 (default) knows only single-device provisioning requests; ``detailed=True`` asks the
        v2 endpoint, which also lists per-device ``sub_requests``.
        """
        request_id = request_id.strip() if isinstance(request_id, str) else ""
        if not request_id or "/" in request_id:
            raise InvalidRequest("a request id is the requestId ThingSpace returned, e.g. 595f5c44-...")
        version = "v2" if detailed else "v1"
        path = f"/m2m/{version}/accounts/{self.account}/requests/{request_id}/status"
        data = self._call("request_status", "GET", path, read=True)
        return RequestStatus.from_wire(self._object(data, path))

    # -- helpers ---------------------------------------------------------------------------------

    def _accepted(self, operation: str, method: str, path: str, body: Any) -> RequestAccepted:
        data = self._call(operation, method, path, body=body, read=False)
        try:
            accepted = RequestAccepted.from_wire(data)
        except (TypeError, ValueError):
            raise UnexpectedResponse(
                "ThingSpace accepted the request but sent no requestId", status=200, path=path
            ) from None
        logger.info("%s accepted as request %s", operation, accepted.request_id)
        return accepted

    @staticmethod
    def _object(data: Any, path: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise UnexpectedResponse("the answer is not a JSON object", status=200, path=path)
        return data


def _next_token(location: str) -> str | None:
    """The ``next`` token of a ``Location: /sms/{account}/history?next={token}`` header."""
    values = parse_qs(urlsplit(location).query).get("next") or []
    token = values[0].strip() if values else ""
    return token if token and token.isalnum() else None


def _device_number(device: Device) -> int | None:
    value = device.extended_attributes.get(shapes.DEVICE_NUMBER_KEY, "")
    return int(value) if value.strip().isdigit() else None


def _device_key(device: Device) -> tuple[str, str]:
    first = device.device_id
    return (first.kind, first.id)


def _device_list(devices: Sequence[DeviceId], action: str) -> list[DeviceId]:
    if isinstance(devices, DeviceId):
        devices = [devices]
    out = list(dict.fromkeys(devices))  # drop repeats, keep order
    if not out:
        raise InvalidRequest(f"name at least one device to {action}")
    if len(out) > _MAX_DEVICES:
        raise InvalidRequest(f"at most {_MAX_DEVICES:,} devices per request; got {len(out):,}")
    for device in out:
        if not isinstance(device, DeviceId):
            raise InvalidRequest(f"devices must be DeviceId values, not {type(device).__name__}")
    return out


def _check_kind(device: DeviceId, kinds: tuple[str, ...], what: str) -> None:
    if not isinstance(device, DeviceId):
        raise InvalidRequest(f"{what} needs a DeviceId, not {type(device).__name__}")
    if device.kind not in kinds:
        raise InvalidRequest(f"{what} accepts only {', '.join(kinds)} identifiers, not {device.kind}")


def _check_reachability(
    devices: Sequence[DeviceId], request_type: str | None, allowed: tuple[str, ...]
) -> None:
    if request_type is not None and request_type not in allowed:
        raise InvalidRequest(f"unknown reachability type {request_type!r}; use one of: {', '.join(allowed)}")
    for device in devices:
        _check_kind(device, REACHABILITY_KINDS, "reachability monitoring")
    if len({d.kind for d in devices}) > 1:
        raise InvalidRequest("reachability requests take one kind of identifier per list")


def _check_window(earliest: datetime, latest: datetime) -> None:
    if not isinstance(earliest, datetime) or not isinstance(latest, datetime):
        raise InvalidRequest("earliest and latest must be datetimes")
    a = earliest if earliest.tzinfo else earliest.replace(tzinfo=latest.tzinfo)
    b = latest if latest.tzinfo else latest.replace(tzinfo=earliest.tzinfo)
    if a > b:
        raise InvalidRequest("earliest is after latest")
