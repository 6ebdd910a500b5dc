"""The Bolt app: ``/ts`` and the ``ts:*`` buttons, wired to :mod:`commands`.

Listeners do local work only (parse, authorize, write a job or pending action) and then ack;
anything slow is a job for the worker. A listener never lets an exception reach Bolt (which
would answer 500): the user gets a short reference instead, and the log gets the traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltResponse
from slack_sdk.errors import SlackApiError

from bot.render.wording import something_went_wrong
from bot.slack.workspace import WorkspaceGuard, team_of
from commands.context import ActionRequest, CommandRequest, Deps, Reply
from commands.router import Router
from storage import jobs, outbox
from storage.db import write

__all__ = ["build_bolt_app"]

log = logging.getLogger(__name__)


def _oops() -> Reply:
    ref = secrets.token_hex(4)
    log.exception("listener failed, ref %s", ref)
    return Reply(something_went_wrong(ref))


def _open_modal(app: App, trigger_id: str, view: dict[str, Any]) -> bool:
    """Open *view* for the click's trigger (valid once, for 3 s); False if Slack would not."""
    if not trigger_id:
        return False
    try:
        app.client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("could not open the modal: %s", exc.response.get("error"))
        return False
    except OSError as exc:
        log.warning("could not open the modal: %s", type(exc).__name__)
        return False
    return True


def build_bolt_app(
    deps: Deps, router: Router, *, listener_threads: int = 16, workspace: WorkspaceGuard | None = None
) -> App:
    """The Bolt app: one listener for ``/ts`` commands, one for ``ts:`` buttons, one for the App
    Home, each answering through *router* from local work only. With *workspace*, a request that
    names another workspace is answered 403 before any listener sees it."""
    app = App(
        signing_secret=deps.settings.slack_signing_secret,
        client=deps.slack,
        token_verification_enabled=False,
        request_verification_enabled=True,
        # The listeners only do local work (parse, authorize, write a job) and return; running them
        # inline answers at once, where the default polls for the ack every 10 ms on a thread.
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=listener_threads, thread_name_prefix="bolt"),
        logger=logging.getLogger("slack_bolt.App"),
    )

    if workspace is not None:
        guard = workspace

        @app.middleware
        def same_workspace(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
            if guard.allows(body):
                next()
                return None
            log.warning(
                "refused a signed Slack request from workspace %s (installed: %s)", team_of(body), guard.team
            )
            return BoltResponse(status=403, body="this app answers its own Slack workspace only")

    @app.command(re.compile(r"^/ts\b|^/thingspace\b"))
    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        started = time.perf_counter()
        request = CommandRequest(
            user=str(command.get("user_id", "")),
            channel=str(command.get("channel_id", "")),
            text=str(command.get("text", "")),
            response_url=str(command.get("response_url", "")),
            trigger_id=str(command.get("trigger_id", "")),
            team=str(command.get("team_id", "")),
        )
        try:
            reply = router.handle_command(deps, request)
        except Exception:  # noqa: BLE001 - the user gets a reference, the log the traceback
            reply = _oops()
        ack(**reply.as_ack())
        deps.hook("ack", time.perf_counter() - started)

    @app.action(re.compile(r"^ts:"))
    def on_action(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        channel = (
            (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
        )
        request = ActionRequest(
            user=str((body.get("user") or {}).get("id", "")),
            channel=str(channel),
            action_id=str(action.get("action_id", "")),
            # a button's value, or the chosen option of a menu (static_select)
            value=str(action.get("value") or (action.get("selected_option") or {}).get("value", "")),
            response_url=str(body.get("response_url", "")),
            message_ts=str((body.get("container") or {}).get("message_ts", "")),
            trigger_id=str(body.get("trigger_id", "")),
        )
        try:
            reply = router.handle_action(deps, request)
        except Exception:  # noqa: BLE001 - the user gets a reference, the log the traceback
            reply = _oops()
        if reply is not None and reply.view is not None and _open_modal(app, request.trigger_id, reply.view):
            ack()
            return
        if reply is not None and not reply.silent and request.response_url:
            db = deps.db()
            key = f"click:{request.action_id}:{request.value}:{request.user}:{time.time_ns()}"
            with write(db):
                outbox.enqueue_respond(
                    db,
                    key=key,
                    response_url=request.response_url,
                    text=reply.text,
                    blocks=reply.blocks,
                    replace_original=bool(reply.replace_original),
                )
            deps.wake()
        ack()

    @app.view(re.compile(r"^ts:"))
    def on_view(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        """A modal submitted (the confirmation of a button-started action): errors keep it open."""
        user = str((body.get("user") or {}).get("id", ""))
        try:
            errors = router.handle_view(deps, user, view)
        except Exception:  # the person is told in the modal, the log has the traceback
            ref = secrets.token_hex(4)
            log.exception("view listener failed, ref %s", ref)
            errors = {"reason": f"Something went wrong on our side (ref {ref}); nothing was changed."}
        if errors:
            ack(response_action="errors", errors=errors)
        else:
            ack()
        deps.wake()

    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any], body: dict[str, Any]) -> None:
        """Queue the App Home publication for the worker: the event is acked from local work."""
        if event.get("tab") not in (None, "home"):
            return
        user = str(event.get("user", ""))
        db = deps.db()
        with write(db):
            jobs.enqueue(
                db, key=f"home:{body.get('event_id') or time.time_ns()}", kind="home", payload={"user": user}
            )
        deps.wake()

    return app
