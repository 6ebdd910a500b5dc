"""A local stand-in for the Slack Web API and ``response_url``: what ``tsbot demo`` and tests talk to.

It answers enough of Slack for ``slack_sdk.WebClient(base_url=standin.api_url)`` and Bolt's
``respond()`` to work unchanged: form, query or JSON parameters, ``Authorization: Bearer``
checked, ``{"ok": true, ...}`` answers shaped like Slack's, Slack's error codes. Every call and
every message is recorded for the tests (:meth:`SlackStandIn.calls`, :meth:`~SlackStandIn.messages`,
:meth:`~SlackStandIn.wait_for`) and told to listeners (:meth:`~SlackStandIn.on_event`, which the
demo prints). Failures are planned with :meth:`~SlackStandIn.inject`.

Routes: ``/api/{method}`` (GET or POST), ``POST /response/{token}``, and control routes
``GET /_standin/calls``, ``GET /_standin/messages``, ``GET /_standin/faults``,
``POST /_standin/inject``, ``POST /_standin/reset``.

Channels are strict, as in Slack: posting to an unknown channel answers ``channel_not_found``.
The default workspace has the channels of :data:`DEFAULT_CHANNELS` and the people of
:data:`DEFAULT_USERS`; :meth:`~SlackStandIn.add_channel` and :meth:`~SlackStandIn.add_user` add
more (the driver adds whoever acts, wherever they act).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.console.blocks import (
    MAX_BLOCKS_HOME,
    MAX_BLOCKS_MESSAGE,
    BlocksFormatError,
    assign_block_ids,
    parse_blocks,
    validate_blocks,
)
from bot.console.faults import Fault, FaultPlan, FaultSpecError
from bot.console.limits import payload_problems
from bot.console.records import Call, Message, MessageSource
from bot.console.response_urls import ResponseUrlError, ResponseUrls
from bot.console.store import EventListener, MessageStore
from bot.serving import ServerThread

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "DEFAULT_CHANNELS",
    "DEFAULT_USERGROUPS",
    "DEFAULT_USERS",
    "TEAM_DOMAIN",
    "SlackStandIn",
    "Upload",
]

log = logging.getLogger(__name__)

BOT_USER_ID = "U0TSBOT"
BOT_ID = "B0TSBOT"
APP_ID = "A0TSBOT"
TEAM_DOMAIN = "tsbot-demo"
TEAM_NAME = "tsbot demo"

#: The demo workspace's people: an admin (``U012ADMIN``, as in the README's examples), two on-call operators
#: and a NOC analyst.
DEFAULT_USERS: Mapping[str, str] = {
    "U012ADMIN": "ana",
    "U0OPS1": "omar",
    "U0OPS2": "olga",
    "U0NOC1": "vic",
}
#: User groups: the on-call operators (``S0ONCALL``).
DEFAULT_USERGROUPS: Mapping[str, Sequence[str]] = {"S0ONCALL": ("U0OPS1", "U0OPS2")}
#: Channels: operations and the NOC (``C0NOC``, a viewer channel).
DEFAULT_CHANNELS: Mapping[str, str] = {"C0OPS": "ops", "C0NOC": "noc"}

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class _ApiError(Exception):
    """A Slack error answer: HTTP 200 ``{"ok": false, "error": code}``."""

    def __init__(self, code: str, messages: Sequence[str] = ()) -> None:
        super().__init__(code)
        self.code = code
        self.messages = list(messages)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.code}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _optional_str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return str(value)


@dataclass(frozen=True)
class Upload:
    """A file shared through ``files.completeUploadExternal``: its bytes and the message that shows it."""

    file_id: str
    name: str
    title: str
    data: bytes = field(repr=False)
    channel: str
    message_ts: str
    thread_ts: str | None


class SlackStandIn:
    """The Slack Web API and ``response_url``, in memory, behind a Starlette app (``.app``).

    ``clock`` (seconds since the epoch) drives message ts and ``response_url`` expiry; tests may
    pass a controllable one. Serve it with :meth:`start` (or a :class:`~bot.serving.ServerThread`
    and then set :attr:`base_url`).
    """

    #: every stand-in of this process (tests check what each one received against Slack's limits)
    instances: ClassVar[weakref.WeakSet[SlackStandIn]] = weakref.WeakSet()

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-tsbot-demo",  # noqa: S107 - the demo workspace's public token
        team_id: str = "T0TSBOT",
        users: Mapping[str, str] | None = None,
        usergroups: Mapping[str, Sequence[str]] | None = None,
        channels: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        files: bool = True,
    ) -> None:
        self.bot_token = bot_token
        #: False: a workspace without file uploads (``files.*`` answer ``unknown_method``)
        self.files_enabled = files
        #: False: the bot token lacks ``files:write`` (``files.*`` answer ``missing_scope``)
        self.files_scope = True
        self._pending_files: dict[str, dict[str, Any]] = {}
        self._uploads: dict[tuple[str, str], Upload] = {}
        self.team_id = team_id
        self._clock: Callable[[], float] = clock or time.time
        self._directory_lock = threading.Lock()
        self._users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self._usergroups: dict[str, tuple[str, ...]] = {
            gid: tuple(members)
            for gid, members in (DEFAULT_USERGROUPS if usergroups is None else usergroups).items()
        }
        self._channels: dict[str, str] = dict(DEFAULT_CHANNELS if channels is None else channels)
        self._home_views: dict[str, dict[str, Any]] = {}
        #: trigger_id -> (user, issued at, used): a modal opens once per trigger, within 3 s
        self._triggers: dict[str, tuple[str, float, bool]] = {}
        #: open modals, oldest first: view id -> view (with "user")
        self._modals: dict[str, dict[str, Any]] = {}
        self._store = MessageStore(self._clock)
        #: ``metadata`` a post carried, by (channel, ts): returned by conversations.history and
        #: .replies with ``include_all_metadata``
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}
        self._limit_lock = threading.Lock()
        self._limit_problems: list[str] = []
        SlackStandIn.instances.add(self)
        self._faults = FaultPlan()
        self._response_urls = ResponseUrls(self._clock)
        self._server: ServerThread | None = None
        #: Where this stand-in is reachable (``http://127.0.0.1:PORT``); set by :meth:`start`.
        self.base_url: str | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "views.open": self._views_open,
        }
        self.app = Starlette(
            routes=[
                Route("/api/{method:path}", self._api_endpoint, methods=["GET", "POST"]),
                Route("/response/{token}", self._response_endpoint, methods=["POST"]),
                Route("/upload/{file_id}", self._upload_endpoint, methods=["POST"]),
                Route("/_standin/calls", self._control_calls, methods=["GET"]),
                Route("/_standin/messages", self._control_messages, methods=["GET"]),
                Route("/_standin/faults", self._control_faults, methods=["GET"]),
                Route("/_standin/inject", self._control_inject, methods=["POST"]),
                Route("/_standin/reset", self._control_reset, methods=["POST"]),
            ]
        )

    # -- serving ------------------------------------------------------------------------------

    def start(self, port: int = 0) -> Self:
        """Serve on 127.0.0.1 (port 0: any free port) on a background thread; sets :attr:`base_url`."""
        if self._server is not None:
            raise RuntimeError("the Slack stand-in is already running at " + str(self.base_url))
        self._server = ServerThread(self.app, port=port).start()
        self.base_url = self._server.url
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """The Web API base for ``WebClient(base_url=...)`` / ``SLACK_API_URL`` (ends with ``/``)."""
        return self._require_base_url() + "/api/"

    def _require_base_url(self) -> str:
        if not self.base_url:
            raise RuntimeError("the Slack stand-in is not served yet: call start() or set base_url")
        return self.base_url.rstrip("/")

    # -- the workspace ------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str | None = None) -> None:
        """Add a person to the workspace (no-op if known)."""
        with self._directory_lock:
            self._users.setdefault(user_id, name or user_id.lower())

    def add_channel(self, channel_id: str, name: str | None = None) -> None:
        """Add a channel the bot is a member of (no-op if known)."""
        with self._directory_lock:
            self._channels.setdefault(channel_id, name or channel_id.lower())

    def add_usergroup(self, group_id: str, members: Sequence[str]) -> None:
        """Add or replace a user group and its members."""
        with self._directory_lock:
            self._usergroups[group_id] = tuple(members)

    def user_name(self, user_id: str) -> str:
        with self._directory_lock:
            return self._users.get(user_id, user_id.lower())

    def channel_name(self, channel_id: str) -> str:
        with self._directory_lock:
            return self._channels.get(channel_id, channel_id.lower())

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        """The App Home view last published for ``user_id``, if any."""
        with self._directory_lock:
            view = self._home_views.get(user_id)
            return json.loads(json.dumps(view)) if view is not None else None

    def new_trigger(self, user: str) -> str:
        """A ``trigger_id`` for an interaction of *user*: it opens one modal within 3 s."""
        trigger = f"{int(self._clock())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        with self._directory_lock:
            self._triggers[trigger] = (user, self._clock(), False)
        return trigger

    def open_modals(self, user: str | None = None) -> list[dict[str, Any]]:
        """The modals open now (of *user*), oldest first."""
        with self._directory_lock:
            return [
                json.loads(json.dumps(v)) for v in self._modals.values() if user is None or v["user"] == user
            ]

    def close_modal(self, view_id: str) -> None:
        """The person submitted or closed the modal."""
        with self._directory_lock:
            self._modals.pop(view_id, None)

    def new_response_url(self, channel: str, user: str, *, message_ts: str | None = None) -> str:
        """A fresh ``response_url`` for ``user`` in ``channel`` (5 uses, 30 minutes).

        ``message_ts`` binds it to a message (the one whose button was clicked), which
        ``replace_original`` and ``delete_original`` then act on.
        """
        entry = self._response_urls.issue(channel, user, message_ts)
        return f"{self._require_base_url()}/response/{entry.token}"

    # -- queries for tests and the demo -------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Every recorded call (optionally of one method), oldest first."""
        return self._store.calls(method)

    def messages(
        self,
        channel: str | None = None,
        thread_ts: str | None = None,
        include_ephemeral: bool = True,
        *,
        include_deleted: bool = False,
    ) -> list[Message]:
        """Messages in ts order; ``thread_ts`` selects the replies of that thread."""
        return self._store.messages(
            channel, thread_ts, include_ephemeral=include_ephemeral, include_deleted=include_deleted
        )

    def message(self, channel: str, ts: str) -> Message:
        """One message by channel and ts (deleted ones too); ``KeyError`` if there never was one."""
        return self._store.get(self._dm_alias(channel), ts)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The root message at ``ts`` and its replies, in ts order."""
        return self._store.thread(self._dm_alias(channel), ts)

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """Wait (without sleeping in the test) until a message matches; ``TimeoutError`` if none."""
        return self._store.wait_for(predicate, timeout)

    def wait_for_call(self, predicate: Callable[[Call], bool], timeout: float = 5.0) -> Call:
        """Wait until a recorded call matches; ``TimeoutError`` if none does in time."""
        return self._store.wait_for_call(predicate, timeout)

    def on_event(self, callback: EventListener) -> None:
        """Call ``callback(StandInEvent)`` after each post, update, ephemeral, response and delete."""
        self._store.on_event(callback)

    # -- fault injection ----------------------------------------------------------------------

    def inject(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: float | None = None,
        error: str | None = None,
        count: int = 1,
        channel: str | None = None,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (``"response_url"`` for those posts) fail.

        ``error`` set: HTTP 200 ``{"ok": false, "error": error}``. Otherwise HTTP ``status``
        (429 gets ``Retry-After``, ``retry_after`` seconds or 1; a 5xx gets it only if given).
        ``channel`` limits the fault to calls for that channel. ``ValueError`` on nonsense.
        """
        self._faults.add(
            method, status=status, retry_after=retry_after, error=error, count=count, channel=channel
        )

    # -- files ---------------------------------------------------------------------------------

    def uploads(self) -> list[Upload]:
        """Every file shared so far, oldest first."""
        with self._directory_lock:
            return sorted(self._uploads.values(), key=lambda u: u.message_ts)

    def upload_for(self, message: Message) -> Upload | None:
        """The file a message shares, if it is a file message."""
        with self._directory_lock:
            return self._uploads.get((message.channel, message.ts))

    def _files_scope_check(self) -> None:
        if not self.files_scope:
            raise _ApiError("missing_scope")

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        self._files_scope_check()
        name = str(params.get("filename") or "")
        try:
            length = int(str(params.get("length", "")))
        except ValueError:
            raise _ApiError("invalid_arguments") from None
        if not name or length <= 0:
            raise _ApiError("invalid_arguments")
        with self._directory_lock:
            file_id = f"F{len(self._pending_files) + len(self._uploads) + 1:08d}"
            self._pending_files[file_id] = {"name": name, "length": length, "data": None}
        return {"ok": True, "upload_url": f"{self._require_base_url()}/upload/{file_id}", "file_id": file_id}

    async def _upload_endpoint(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        data = await request.body()
        with self._directory_lock:
            pending = self._pending_files.get(file_id)
            if pending is None:
                return PlainTextResponse("file_not_found", status_code=404)
            pending["data"] = data
        return PlainTextResponse(f"OK - {len(data)}")

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        self._files_scope_check()
        raw = params.get("files")
        try:
            files = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise _ApiError("invalid_arguments") from None
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
            raise _ApiError("invalid_arguments")
        channel = self._resolve_channel(params.get("channel_id")) if params.get("channel_id") else ""
        shared = []
        for item in files:
            file_id = str(item.get("id", ""))
            with self._directory_lock:
                pending = self._pending_files.pop(file_id, None)
            if pending is None or pending["data"] is None:
                raise _ApiError("file_not_found")
            title = str(item.get("title") or pending["name"])
            shared.append({"id": file_id, "name": pending["name"], "title": title})
            if channel:
                text = str(params.get("initial_comment") or "") or f"📎 {title}"
                ts = self._store.next_ts()
                thread_ts = self._thread_ts(params.get("thread_ts"))
                with self._directory_lock:  # known before the listeners hear of the message
                    self._uploads[(channel, ts)] = Upload(
                        file_id, pending["name"], title, bytes(pending["data"]), channel, ts, thread_ts
                    )
                self._store.add(
                    channel=channel, ts=ts, text=text, blocks=[], source="post", thread_ts=thread_ts
                )
        return {"ok": True, "files": shared}

    def reset(self) -> None:
        """Back to a fresh stand-in: no faults, messages, calls, response URLs or App Home views.

        The workspace (users, groups, channels) and the event listeners stay.
        """
        self._faults.clear()
        self._store.clear()
        self._metadata.clear()
        with self._limit_lock:
            self._limit_problems.clear()
        self._response_urls.clear()
        with self._directory_lock:
            self._home_views.clear()
            self._triggers.clear()
            self._modals.clear()

    def limit_problems(self) -> list[str]:
        """Every Block Kit limit broken by a payload received so far (``bot.console.limits``), oldest
        first, each prefixed with the method; a payload Slack would reject is listed too."""
        with self._limit_lock:
            return list(self._limit_problems)

    def _check_limits(
        self, method: str, payload: Mapping[str, Any], previous: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        params = dict(payload)
        if isinstance(params.get("blocks"), str):
            try:
                params["blocks"] = parse_blocks(params["blocks"])
            except BlocksFormatError:
                params["blocks"] = []
        if isinstance(params.get("view"), str):
            try:
                params["view"] = json.loads(params["view"])
            except ValueError:
                params["view"] = None
        found = payload_problems(method, params, previous_blocks=previous)
        if found:
            with self._limit_lock:
                self._limit_problems.extend(found)

    # -- HTTP: the Web API --------------------------------------------------------------------

    async def _api_endpoint(self, request: Request) -> Response:
        method = request.path_params["method"].strip("/")
        raw = await request.body()
        params: dict[str, Any] = dict(request.query_params)
        try:
            params.update(self._body_params(request.headers.get("content-type", ""), raw))
        except _ApiError as exc:
            return self._answer(method, params, 200, exc.body())
        token = params.pop("token", None)
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        handler = self._methods.get(method)
        if method.startswith("files.") and not self.files_enabled:
            handler = None
        if handler is None:
            return self._answer(method, params, 200, {"ok": False, "error": "unknown_method"})
        if not token:
            return self._answer(method, params, 200, {"ok": False, "error": "not_authed"})
        if token != self.bot_token:
            return self._answer(method, params, 200, {"ok": False, "error": "invalid_auth"})
        fault = self._faults.take(method, _optional_str(params, "channel"))
        if fault is not None:
            return self._answer_fault(method, params, fault)
        try:
            body = handler(params)
        except _ApiError as exc:
            body = exc.body()
        return self._answer(method, params, 200, body)

    @staticmethod
    def _body_params(content_type: str, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "application/json":
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise _ApiError("invalid_json") from None
            if not isinstance(parsed, dict):
                raise _ApiError("invalid_json")
            return parsed
        if kind in ("application/x-www-form-urlencoded", ""):
            try:
                return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
            except (UnicodeDecodeError, ValueError):
                raise _ApiError("invalid_form_data") from None
        raise _ApiError("invalid_form_data")

    def _answer(
        self,
        method: str,
        params: Mapping[str, Any],
        status: int,
        body: dict[str, Any],
        headers: Mapping[str, str] | None = None,
        *,
        injected: bool = False,
    ) -> Response:
        self._store.record(
            Call(
                method=method,
                params=dict(params),
                at=self._clock(),
                status=status,
                response=body,
                injected=injected,
                headers=dict(headers or {}),
            )
        )
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def _answer_fault(self, method: str, params: Mapping[str, Any], fault: Fault) -> Response:
        status, body, headers = fault.response()
        if body is not None:
            return self._answer(method, params, status, body, headers, injected=True)
        self._store.record(
            Call(
                method=method,
                params=dict(params),
                at=self._clock(),
                status=status,
                response={},
                injected=True,
            )
        )
        return PlainTextResponse(
            f"HTTP {status} injected by the Slack stand-in", status_code=status, headers=headers
        )

    # -- the workspace's answers --------------------------------------------------------------

    def _dm_alias(self, channel: str) -> str:
        """A user id used as a channel means the DM with that user (``U123`` -> ``D123``)."""
        if _USER_ID.match(channel):
            return "D" + channel[1:]
        return channel

    def _resolve_channel(self, value: object) -> str:
        channel = str(value or "").strip()
        if not channel:
            raise _ApiError("channel_not_found")
        with self._directory_lock:
            if channel in self._channels:
                return channel
            if _USER_ID.match(channel) and channel in self._users:
                dm = self._dm_alias(channel)
                self._channels.setdefault(dm, f"dm-{self._users[channel]}")
                return dm
            name = channel.lstrip("#")
            for channel_id, channel_name in self._channels.items():
                if channel_name == name:
                    return channel_id
        raise _ApiError("channel_not_found")

    def _require_user(self, value: object) -> str:
        user = str(value or "").strip()
        with self._directory_lock:
            if user not in self._users and user != BOT_USER_ID:
                raise _ApiError("user_not_found")
        return user

    def _blocks_param(
        self, params: Mapping[str, Any], *, limit: int = MAX_BLOCKS_MESSAGE
    ) -> list[dict[str, Any]] | None:
        if "blocks" not in params or params["blocks"] is None:
            return None
        try:
            blocks = parse_blocks(params["blocks"])
        except BlocksFormatError as exc:
            raise _ApiError("invalid_blocks_format", [f"[ERROR] {exc}"]) from None
        problems = validate_blocks(blocks, limit=limit)
        if problems:
            raise _ApiError("invalid_blocks", problems)
        return blocks

    def _message_json(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "message",
            "text": message.text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "ts": message.ts,
            "blocks": [dict(b) for b in message.blocks],
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": "tsbot", "team_id": self.team_id},
        }
        if message.thread_ts is not None:
            body["thread_ts"] = message.thread_ts
        if message.updated:
            body["edited"] = {"user": BOT_USER_ID, "ts": f"{message.versions[-1].at:.6f}"}
        return body

    @staticmethod
    def _thread_ts(value: object) -> str | None:
        if value is None or value == "":
            return None
        thread_ts = str(value)
        try:
            float(thread_ts)
        except ValueError:
            raise _ApiError("invalid_thread_ts") from None
        return thread_ts

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": "tsbot",
            "team_id": self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _new_message(
        self, channel: str, params: Mapping[str, Any], source: MessageSource, user: str | None = None
    ) -> Message:
        """Store a new message from a post, an ephemeral or a response_url body (``no_text`` if empty)."""
        method = {"post": "chat.postMessage", "ephemeral": "chat.postEphemeral"}.get(source, "response_url")
        self._check_limits(method, params)
        blocks = self._blocks_param(params)
        text = str(params.get("text") or "")
        if not text and not blocks and not params.get("attachments"):
            raise _ApiError("no_text")
        ts = self._store.next_ts()
        return self._store.add(
            channel=channel,
            ts=ts,
            text=text,
            blocks=assign_block_ids(blocks or [], ts),
            source=source,
            thread_ts=self._thread_ts(params.get("thread_ts")),
            user=user,
        )

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        metadata = params.get("metadata")
        if isinstance(metadata, str) and metadata:
            try:
                metadata = json.loads(metadata)
            except ValueError:
                raise _ApiError("invalid_metadata_format") from None
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            raise _ApiError("invalid_metadata_schema")
        message = self._new_message(channel, params, "post")
        if metadata:
            self._metadata[(channel, message.ts)] = metadata
        return {"ok": True, "channel": channel, "ts": message.ts, "message": self._message_json(message)}

    def _history(self, params: Mapping[str, Any], found: list[Message]) -> dict[str, Any]:
        """A page of *found* (newest first) as conversations.history / .replies answer it."""
        with_metadata = _truthy(params.get("include_all_metadata"))
        try:
            oldest = float(params.get("oldest") or 0)
            limit = max(1, min(int(params.get("limit") or 100), 1000))
            start = int(params.get("cursor") or 0)
        except ValueError:
            raise _ApiError("invalid_cursor") from None
        shown = [m for m in sorted(found, key=lambda m: float(m.ts), reverse=True) if float(m.ts) >= oldest]
        page = shown[start : start + limit]
        out = []
        for message in page:
            body = self._message_json(message)
            meta = self._metadata.get((message.channel, message.ts))
            if with_metadata and meta is not None:
                body["metadata"] = meta
            out.append(body)
        more = start + limit < len(shown)
        answer: dict[str, Any] = {"ok": True, "messages": out, "has_more": more}
        answer["response_metadata"] = {"next_cursor": str(start + limit) if more else ""}
        return answer

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        roots = [m for m in self._store.messages(channel, include_ephemeral=False) if m.thread_ts is None]
        return self._history(params, roots)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        ts = _optional_str(params, "ts")
        if ts is None:
            raise _ApiError("thread_not_found")
        try:
            root = self._store.get(channel, ts)
        except KeyError:
            raise _ApiError("thread_not_found") from None
        replies = self._store.messages(channel, ts, include_ephemeral=False)
        return self._history(params, [root, *replies])

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        ts = _optional_str(params, "ts")
        if ts is None:
            raise _ApiError("message_not_found")
        with contextlib.suppress(KeyError):
            self._check_limits("chat.update", params, self._store.get(channel, ts).blocks)
        blocks = self._blocks_param(params)
        text = params.get("text")
        if text is None and blocks is None:
            raise _ApiError("no_text")
        try:
            current = self._store.get(channel, ts)
        except KeyError:
            raise _ApiError("message_not_found") from None
        if current.deleted or current.ephemeral:
            raise _ApiError("message_not_found")
        message = self._store.update(
            channel,
            ts,
            text=None if text is None else str(text),
            blocks=None if blocks is None else assign_block_ids(blocks, ts),
            source="update",
        )
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message.text,
            "message": self._message_json(message),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        user = self._require_user(params.get("user"))
        message = self._new_message(channel, params, "ephemeral", user)
        return {"ok": True, "message_ts": message.ts}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        ts = _optional_str(params, "ts") or ""
        try:
            current = self._store.get(channel, ts)
            if current.ephemeral:
                raise KeyError(ts)
            self._store.delete(channel, ts)
        except KeyError:
            raise _ApiError("message_not_found") from None
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        ts = _optional_str(params, "message_ts") or ""
        try:
            self._store.get(channel, ts)
        except KeyError:
            raise _ApiError("message_not_found") from None
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._require_user(params.get("user"))
        name = "tsbot" if user == BOT_USER_ID else self.user_name(user)
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": name,
                "real_name": name.title(),
                "deleted": False,
                "is_bot": user == BOT_USER_ID,
                "is_admin": False,
                "tz": "UTC",
                "tz_label": "Coordinated Universal Time",
                "tz_offset": 0,
                "profile": {"display_name": name, "real_name": name.title()},
            },
        }

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        with self._directory_lock:
            members = self._usergroups.get(group)
        if members is None:
            raise _ApiError("no_such_subteam")
        return {"ok": True, "users": list(members)}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(params.get("channel"))
        is_im = channel.startswith("D")
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": self.channel_name(channel),
                "is_channel": channel.startswith("C"),
                "is_group": channel.startswith("G"),
                "is_im": is_im,
                "is_private": not channel.startswith("C"),
                "is_archived": False,
                "is_member": True,
                "created": 1700000000,
                "context_team_id": self.team_id,
            },
        }

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if len(users) != 1:
            raise _ApiError("invalid_arguments", ["[ERROR] the stand-in opens DMs with exactly one user"])
        channel = self._resolve_channel(self._require_user(users[0]))
        return {"ok": True, "channel": {"id": channel}}

    def _view(self, params: dict[str, Any], kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The ``view`` argument of a views.* call: JSON of a view of type *kind* whose blocks are
        valid and within the limit of views (100 blocks); otherwise the error Slack gives."""
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise _ApiError("invalid_arguments", ["[ERROR] view is not valid JSON"]) from None
        if not isinstance(view, dict) or view.get("type") != kind:
            raise _ApiError(
                "invalid_arguments", [f"[ERROR] must be a view of type {kind} [json-pointer:/view/type]"]
            )
        try:
            blocks = parse_blocks(view.get("blocks", []))
        except BlocksFormatError as exc:
            raise _ApiError("invalid_arguments", [f"[ERROR] {exc} [json-pointer:/view/blocks]"]) from None
        problems = validate_blocks(blocks, limit=MAX_BLOCKS_HOME)
        if problems:
            raise _ApiError(
                "invalid_arguments", [p.replace("json-pointer:/", "json-pointer:/view/") for p in problems]
            )
        return view, blocks

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_limits("views.publish", params)
        user = self._require_user(params.get("user_id"))
        view, blocks = self._view(params, "home")
        view_id = "V" + hashlib.sha256(f"{self.team_id}:{user}".encode()).hexdigest()[:10].upper()
        stored = {
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "blocks": list(assign_block_ids(blocks, view_id)),
            "hash": self._store.next_ts(),
        }
        with self._directory_lock:
            self._home_views[user] = stored
        return {"ok": True, "view": stored}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """``views.open``: a modal for the person whose interaction gave the ``trigger_id``."""
        self._check_limits("views.open", params)
        trigger = str(params.get("trigger_id") or "")
        with self._directory_lock:
            found = self._triggers.get(trigger)
            if found is None:
                raise _ApiError("invalid_trigger_id")
            user, issued, used = found
            if used:
                raise _ApiError("exchanged_trigger_id")
            if self._clock() - issued > 3.0:
                raise _ApiError("expired_trigger_id")
            self._triggers[trigger] = (user, issued, True)
        view, blocks = self._view(params, "modal")
        view_id = "V" + secrets.token_hex(5).upper()
        stored = {
            **view,
            "id": view_id,
            "team_id": self.team_id,
            "app_id": APP_ID,
            "user": user,
            "blocks": blocks,
        }
        with self._directory_lock:
            self._modals[view_id] = stored
        return {"ok": True, "view": {k: v for k, v in stored.items() if k != "user"}}

    # -- HTTP: response_url -------------------------------------------------------------------

    async def _response_endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        raw = await request.body()
        try:
            entry = self._response_urls.check(token)
        except ResponseUrlError as exc:
            return self._answer("response_url", {}, 404, {"ok": False, "error": exc.code})
        fault = self._faults.take("response_url", entry.channel)
        context = {"channel": entry.channel, "user": entry.user}
        if fault is not None:
            return self._answer_fault("response_url", context, fault)
        try:
            payload = json.loads(raw)
        except ValueError:
            return self._answer("response_url", context, 400, {"ok": False, "error": "invalid_payload"})
        if not isinstance(payload, dict):
            return self._answer("response_url", context, 400, {"ok": False, "error": "invalid_payload"})
        params = {**payload, **context}
        try:
            message_ts = self._respond(entry.channel, entry.user, entry.message_ts, payload)
        except _ApiError as exc:
            status = 404 if exc.code == "message_not_found" else 400
            return self._answer("response_url", params, status, exc.body())
        self._response_urls.consume(token, message_ts)
        return self._answer("response_url", params, 200, {"ok": True})

    def _respond(
        self, channel: str, user: str, original_ts: str | None, payload: dict[str, Any]
    ) -> str | None:
        """Apply one ``response_url`` post; returns the ts of the message it produced or changed."""
        if _truthy(payload.get("delete_original")):
            if original_ts is None:
                raise _ApiError("message_not_found")
            try:
                self._store.delete(channel, original_ts)
            except KeyError:
                raise _ApiError("message_not_found") from None
            return None
        replacing = _truthy(payload.get("replace_original")) and original_ts is not None
        if replacing and original_ts is not None:
            with contextlib.suppress(KeyError):
                self._check_limits("response_url", payload, self._store.get(channel, original_ts).blocks)
        blocks = self._blocks_param(payload)
        text = str(payload.get("text") or "")
        if not text and not blocks:
            raise _ApiError("no_text")
        if replacing and original_ts is not None:
            try:
                self._store.update(
                    channel,
                    original_ts,
                    text=text,
                    blocks=assign_block_ids(blocks or [], original_ts),
                    source="response_url",
                )
            except KeyError:
                raise _ApiError("message_not_found") from None
            return original_ts
        in_channel = payload.get("response_type") == "in_channel"
        return self._new_message(channel, payload, "response_url", None if in_channel else user).ts

    def record_command_reply(self, response_url: str, body: Mapping[str, Any]) -> Message | None:
        """Show a slash command's immediate answer (the body of the bot's ack) as Slack does.

        Slack displays the ack's ``text``/``blocks`` as an ephemeral message to the person (or in
        the channel with ``response_type: in_channel``); that message becomes the command's
        response_url "original". It does not count as one of the URL's five uses.
        """
        if not (body.get("text") or body.get("blocks")):
            return None
        token = response_url.rstrip("/").rsplit("/", 1)[-1]
        entry = self._response_urls.check(token)
        ts = self._respond(entry.channel, entry.user, None, {**body, "replace_original": False})
        if ts is None:
            return None
        self._response_urls.bind(token, ts)
        return self._store.get(entry.channel, ts)

    # -- HTTP: control routes -----------------------------------------------------------------

    async def _control_calls(self, request: Request) -> Response:
        method = request.query_params.get("method") or None
        return JSONResponse({"calls": [c.to_dict() for c in self.calls(method)]})

    async def _control_messages(self, request: Request) -> Response:
        query = request.query_params
        found = self.messages(
            query.get("channel") or None,
            query.get("thread_ts") or None,
            include_ephemeral=_truthy(query.get("include_ephemeral", "true")),
            include_deleted=_truthy(query.get("include_deleted", "false")),
        )
        return JSONResponse({"messages": [m.to_dict() for m in found]})

    async def _control_faults(self, request: Request) -> Response:
        return JSONResponse({"faults": self._faults.pending()})

    async def _control_inject(self, request: Request) -> Response:
        try:
            spec = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"ok": False, "error": "body must be a JSON object"}, status_code=400)
        if not isinstance(spec, dict):
            return JSONResponse({"ok": False, "error": "body must be a JSON object"}, status_code=400)
        unknown = sorted(set(spec) - {"method", "status", "retry_after", "error", "count", "channel"})
        if unknown:
            return JSONResponse(
                {
                    "ok": False,
                    "error": f"unknown field(s) {', '.join(unknown)}; accepted: method, status, "
                    "retry_after, error, count, channel",
                },
                status_code=400,
            )
        try:
            fault = self._faults.add(
                str(spec.get("method") or ""),
                status=spec.get("status", 429),
                retry_after=spec.get("retry_after"),
                error=spec.get("error"),
                count=spec.get("count", 1),
                channel=spec.get("channel"),
            )
        except FaultSpecError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "fault": fault.to_dict()})

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})
