"""Device-originated (MO) SMS: the EnhancedConnectivityService callback, or the queue that
``GET /sms/{account}/history`` drains (Verizon: "Retrieve SMS Messages Sent by Devices", "Start SMS
Callback"; SDK ``SMSMessagesQueryResult``, ``SMSMessage``).

* A device sends a text (control route ``POST /_sandbox/devices/{ref}/sms``). With an
  EnhancedConnectivityService listener registered it is called back at once in the proposed shape
  (``smsMessage: {message, timestamp}``, see ``bot.thingspace.shapes``); without one it is queued.
* ``GET /sms/{account}/history`` answers up to 100 queued messages, oldest first, as
  ``{"hasMoreData", "messages": [{"deviceIds", "message", "timestamp"}]}``. When more wait, the
  answer is 202 with ``Location: /sms/{account}/history?next={token}``; the block stays queued
  until a request carrying that token acknowledges it (asking again without the token gets the
  same block again). The last block (200) needs no acknowledgement — a proposal: no source says
  how it is acknowledged.
* ``PUT /sms/{account}/startCallbacks`` sends the queued messages to the registered listener.
"""

from __future__ import annotations

import uuid
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from bot.sandbox import messaging
from bot.sandbox.callback_sender import Delivery
from bot.sandbox.errors import CALLBACK_NOT_REGISTERED, field_invalid, thingspace_error
from bot.sandbox.fleet import Device
from bot.thingspace.shapes import ENHANCED_CONNECTIVITY_SERVICE, MO_SMS

if TYPE_CHECKING:
    from bot.sandbox.state import SandboxState

__all__ = ["MAX_BLOCK", "device_sends", "history", "start_callbacks"]

#: messages per answer of ``GET /sms/{account}/history``
MAX_BLOCK: Final = 100


def _callback(message: dict[str, Any]) -> Delivery:
    payload = {
        "requestId": str(uuid.uuid4()),
        "deviceIds": message["deviceIds"],
        MO_SMS: {"message": message["message"], "timestamp": message["timestamp"]},
    }
    return Delivery(ENHANCED_CONNECTIVITY_SERVICE, payload)


def device_sends(state: SandboxState, device: Device, text: str) -> str:
    """*device* sends *text* to ThingSpace (:func:`bot.sandbox.messaging.device_sends_sms`);
    returns ``"callback"`` or ``"queued"``."""
    listened = state.listener(ENHANCED_CONNECTIVITY_SERVICE) is not None
    messaging.device_sends_sms(state, device, text)
    return "callback" if listened else "queued"


def history(state: SandboxState, token: str | None) -> tuple[int, dict[str, Any], str | None]:
    """One answer of ``GET /sms/{account}/history``: (status, body, the next token or None)."""
    if token is not None:
        acknowledged = state.mo_blocks.pop(token, None)
        if acknowledged is None:
            raise field_invalid(
                "next", f"next={token!r} is not a token this account was given (or it was used)."
            )
        for _ in range(acknowledged):
            state.mo_queue.popleft()
    state.mo_blocks.clear()  # asking again without the token re-delivers the head block
    block = list(islice(state.mo_queue, MAX_BLOCK))
    if len(state.mo_queue) > len(block):
        state.mo_next_token += 1
        token = str(state.mo_next_token)
        state.mo_blocks[token] = len(block)
        return 202, {"hasMoreData": True, "messages": block}, token
    state.mo_queue.clear()
    return 200, {"hasMoreData": False, "messages": block}, None


def start_callbacks(state: SandboxState) -> dict[str, bool]:
    """``PUT /sms/{account}/startCallbacks``: the queue goes to the EnhancedConnectivityService listener."""
    if state.listener(ENHANCED_CONNECTIVITY_SERVICE) is None:
        raise thingspace_error(
            CALLBACK_NOT_REGISTERED, f"No listener is registered for {ENHANCED_CONNECTIVITY_SERVICE}."
        )
    queued = list(state.mo_queue)
    state.mo_queue.clear()
    state.mo_blocks.clear()
    state.emit([_callback(message) for message in queued])
    return {"success": True}
