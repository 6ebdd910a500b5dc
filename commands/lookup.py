"""Read-only verbs that need ThingSpace: ``status``, ``diag``, ``reach``, ``request``.

The command writes a job and answers "Looking up…" at once; :func:`run` (on the worker) calls
ThingSpace and answers through the response_url — or, for ``reach``, opens a channel thread
where the callback will land.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, tzinfo
from typing import Any

from bot.core.directory_sync import device_row
from bot.render import blocks, times
from bot.render.blocks import escape
from bot.render.results import zone
from bot.render.wording import line_state
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace.ids import DeviceId
from bot.thingspace.models import Device
from commands import audit, diag, provisioning
from commands.context import ActionRequest, CommandRequest, Deps, Reply
from commands.grammar import Invocation, UsageError
from commands.policy import may_run, user_role
from commands.targets import resolve
from storage import directory, jobs, outbox, requests
from storage.jobs import Job

__all__ = [
    "device_card",
    "on_share",
    "run",
    "run_diag",
    "run_reach",
    "run_request",
    "run_status",
    "start",
    "start_request",
]

#: ThingSpace's request ids are UUIDs (``{"requestId": "595f5c44-c31c-4552-8670-020a1545a84d"}``,
#: the SDK's DeviceManagementResult); anything else is refused before ThingSpace is asked
_REQUEST_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def start(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    db = deps.db()
    [device] = resolve(db, inv.targets, verb=inv.verb, max_targets=1, single=True)
    payload = {
        "verb": inv.verb,
        "device": str(device.device_id),
        "key": device.key,
        "user": req.user,
        "channel": req.channel,
        "response_url": req.response_url,
        # the answer replaces the "⏳" ack; a card a button was on is never overwritten
        "replace": not req.via_button,
    }
    job_key = f"lookup:{inv.verb}:{req.user}:{device.key}:{time.time_ns()}"
    with audit.transaction(db):
        jobs.enqueue(db, key=job_key, kind="lookup", payload=payload)
        if inv.verb != "diag":  # diag records its verdict when it has one
            audit.record(
                db,
                actor=req.user,
                channel=req.channel,
                verb=inv.verb,
                outcome=audit.Outcome.QUEUED,
                targets=[device.key],
            )
    deps.wake()
    what = {"status": "Looking up", "diag": "Running diagnostics for", "reach": "Asking ThingSpace whether"}[
        inv.verb
    ]
    tail = " is reachable…" if inv.verb == "reach" else "…"
    return Reply(
        f":hourglass_flowing_sand: {what} {blocks.escape(device.label)}{tail}", silent=req.via_button
    )


#: cards that can be shared: the verbs whose answer is a card about one line
SHAREABLE = ("status", "diag")


def share_button(verb: str, key: str) -> dict[str, Any]:
    """**Share to channel**: the same lookup again, answered in the channel for everyone."""
    return blocks.button("Share to channel", "ts:share", f"{verb} {key}")


def on_share(deps: Deps, req: ActionRequest) -> Reply | None:
    """The Share to channel button: run the lookup again and post its card in the channel."""
    verb, _, key = req.value.partition(" ")
    spec = deps.verbs.get(verb)
    if verb not in SHAREABLE or spec is None or not key:
        return Reply("That button is from an older message; run the command again.", replace_original=False)
    if not may_run(user_role(deps, req.user, req.channel), spec.role):
        return Reply(
            f":no_entry: Sharing a `{verb}` card needs the *{spec.role}* role.", replace_original=False
        )
    kind, _, ident = key.partition(":")
    payload = {
        "verb": verb,
        "device": str(DeviceId.from_wire({"kind": kind, "id": ident})),
        "key": key,
        "user": req.user,
        "channel": req.channel,
        "response_url": req.response_url,
        "replace": False,
        "share": True,
    }
    db = deps.db()
    with audit.transaction(db):
        jobs.enqueue(
            db, key=f"lookup:{verb}:share:{req.user}:{key}:{time.time_ns()}", kind="lookup", payload=payload
        )
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=verb,
            outcome=audit.Outcome.QUEUED,
            targets=[key],
            detail={"shared": True},
        )
    deps.wake()
    return Reply("", silent=True)


def start_request(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    request_id = inv.text.strip()
    if not _REQUEST_ID.match(request_id):
        shown = escape(request_id[:40]) or "nothing"
        raise UsageError(
            f"`request` needs the request id ThingSpace gave — 36 characters like "
            f"`595f5c44-c31c-4552-8670-020a1545a84d` (it is on the request's channel message); "
            f"`{shown}` is not one.",
            verb=audit.Verb.REQUEST,
        )
    payload = {
        "verb": "request",
        "request_id": request_id,
        "user": req.user,
        "channel": req.channel,
        "response_url": req.response_url,
        "replace": not req.via_button,  # the answer replaces the "⏳" ack
    }
    db = deps.db()
    with audit.transaction(db):
        jobs.enqueue(db, key=f"lookup:request:{request_id}:{time.time_ns()}", kind="lookup", payload=payload)
        audit.record(
            db,
            actor=req.user,
            channel=req.channel,
            verb=audit.Verb.REQUEST,
            outcome=audit.Outcome.QUEUED,
            request_id=request_id,
        )
    deps.wake()
    return Reply(f":hourglass_flowing_sand: Checking request `{request_id}`…")


def _when(moment: datetime | None, now: datetime, tz: tzinfo) -> str:
    """``<!date^…>`` token (the reader's own zone; *tz* for the fallback) and how long ago."""
    if moment is None:
        return "never"
    return f"{times.at(moment, tz, now=now)} ({times.ago(moment, now)})"


def device_card(
    device: Device,
    *,
    role: str | None = "admin",
    shared_by: str = "",
    now: datetime | None = None,
    tz: tzinfo = UTC,
) -> list[dict[str, Any]]:
    """The status card: state, plan, last connection, identifiers, and what to do next — only the
    buttons *role* may use; **Share to channel** unless it is the shared copy (*shared_by*)."""
    now = now or datetime.now(UTC)
    esc = blocks.escape  # everything below but the ids' kinds came from ThingSpace
    label = esc(device.label or str(device.device_id))
    state = device.state or "unknown"
    icon, state_word = line_state(state)
    state_word = esc(state_word)
    ids = "\n".join(f"{esc(k.upper())}: `{esc(v)}`" for k, v in sorted(device.ids.items()))
    body = [
        blocks.section(f"{icon} *{label}* — {state_word}"),
        blocks.fields(
            [
                ("Plan", esc(device.service_plan) or "—"),
                ("Connected", {True: "yes", False: "no", None: "unknown"}[device.connected]),
                ("Last connection", _when(device.last_connection, now, tz)),
                ("Groups", esc(", ".join(device.groups)) or "—"),
            ]
        ),
        blocks.section(ids or "_no identifiers_"),
    ]
    target = str(device.device_id)
    buttons = [blocks.button("Diagnose", "ts:run", f"diag {target}")]
    operator = may_run(role, "operator")
    if state == "active" and operator:
        buttons.append(blocks.button("Suspend…", "ts:run", f"suspend {target}", style="danger"))
    elif state == "suspend":
        resume = device.extended_attributes.get("ResumeDate")
        if resume:
            body.append(blocks.context(f"Auto-resumes on {esc(resume[:10])}"))
        if operator:
            buttons.append(blocks.button("Resume…", "ts:run", f"resume {target}", style="primary"))
    if shared_by:
        body.append(blocks.context(f"Shared by <@{shared_by}>"))
    else:
        buttons.append(share_button("status", target))
    body.append(blocks.actions(*buttons))
    return body


def _respond(db: Any, job: Job, text: str, body: list[dict[str, Any]] | None = None) -> None:
    """The answer: in place of the "⏳" ack of a slash command, as a new message for a button,
    in the channel for Share to channel."""
    url = job.payload.get("response_url") or ""
    if url:
        share = bool(job.payload.get("share"))
        outbox.enqueue_respond(
            db,
            key=f"job:{job.id}:reply",
            response_url=url,
            text=text,
            blocks=body,
            response_type="in_channel" if share else "ephemeral",
            replace_original=bool(job.payload.get("replace")) and not share,
        )


def viewer_role(deps: Deps, job: Job) -> str | None:
    """The role of the person a lookup answers (its buttons are drawn for them)."""
    return user_role(deps, str(job.payload.get("user", "")), str(job.payload.get("channel", "")))


def run(deps: Deps, job: Job) -> None:
    """Run a lookup job on the worker with its verb's runner (``VerbSpec.runner``): call
    ThingSpace, answer via the response_url. A ThingSpace error is answered and audited here."""
    verb = job.payload["verb"]
    runner = deps.verbs[verb].runner
    if runner is None:
        raise ValueError(f"unknown lookup verb {verb!r}")
    db = deps.db()
    try:
        runner(deps, job)
    except ThingSpaceError as exc:
        with audit.transaction(db):
            _respond(db, job, f":warning: ThingSpace could not answer: {exc.user_message}")
            audit.record(
                db,
                actor=job.payload["user"],
                channel=job.payload["channel"],
                verb=verb,
                outcome=audit.Outcome.FAILED,
                targets=[job.payload.get("key", "")],
                detail={"error": type(exc).__name__},
            )


def _job_device(job: Job) -> DeviceId:
    return DeviceId.from_wire(dict(zip(("kind", "id"), job.payload["device"].split(":", 1), strict=True)))


def run_status(deps: Deps, job: Job) -> None:
    """``status``: the line's details, stored in the directory and answered as a card."""
    db = deps.db()
    device_id = _job_device(job)
    device = deps.thingspace.get_device(device_id)
    shared_by = str(job.payload["user"]) if job.payload.get("share") else ""
    now = datetime.fromtimestamp(deps.clock(), UTC)
    card = device_card(
        device, role=viewer_role(deps, job), shared_by=shared_by, now=now, tz=zone(deps.settings.timezone)
    )
    outside = provisioning.last_outside_change(deps, device_id, now=now)
    if outside:
        card.insert(len(card) - 1, blocks.context(outside))  # above the buttons
    with audit.transaction(db):
        directory.upsert_devices(db, [device_row(device)])
        text = blocks.escape(f"{device.label or device_id}: {device.state or 'unknown'}")
        _respond(db, job, text, card)


def run_diag(deps: Deps, job: Job) -> None:
    """``diag``: the checks in parallel, then the verdict card."""
    db = deps.db()
    text, body = diag.run_diag(deps, _job_device(job), job.payload)
    with audit.transaction(db):
        _respond(db, job, text, body)


def run_reach(deps: Deps, job: Job) -> None:
    """``reach``: ask ThingSpace now; the answer arrives by callback in a channel thread."""
    _run_reach(deps, job, _job_device(job))


def run_request(deps: Deps, job: Job) -> None:
    """``request ID``: the status of an asynchronous ThingSpace request."""
    _run_request(deps, job)


def _run_reach(deps: Deps, job: Job, device_id: DeviceId) -> None:
    db = deps.db()
    user, channel = job.payload["user"], job.payload["channel"]
    started = time.monotonic()
    accepted = deps.thingspace.reachability_status(device_id, "REACHABLE_FOR_DATA")
    request_id = accepted.request_id
    key = job.payload["key"]
    with audit.transaction(db):
        root = f"req:{request_id}"
        outbox.enqueue_post(
            db,
            key=root,
            channel=channel,
            text=f"<@{user}> asked whether {device_id.masked()} is reachable · request `{request_id}`",
            blocks=[
                blocks.section(
                    f":satellite_antenna: <@{user}> asked ThingSpace whether `{device_id}` is reachable."
                ),
                blocks.context(f"Request `{request_id}` · the answer will arrive in this thread"),
            ],
        )
        requests.add_request(
            db,
            request_id=request_id,
            verb=audit.Verb.REACH,
            actor=user,
            channel=channel,
            devices=[key],
            thread_key=root,
            response_url=job.payload.get("response_url", ""),
        )
        audit.record(
            db,
            actor=user,
            channel=channel,
            verb=audit.Verb.THINGSPACE_CALL,
            outcome=audit.Outcome.ACCEPTED,
            targets=[key],
            request_id=request_id,
            detail={
                "operation": "reachability_status",
                "latency_ms": round((time.monotonic() - started) * 1000),
            },
        )
        if job.payload.get("replace"):  # the "⏳" ack becomes the answer's state, not one more ephemeral
            text = (
                f":satellite_antenna: ThingSpace is checking whether {escape(device_id.masked())} is reachable "
                f"(request `{request_id}`); the answer lands in the thread of its post in {blocks.channel_ref(channel)}."
            )
            _respond(db, job, text, [blocks.section(text)])


def _run_request(deps: Deps, job: Job) -> None:
    db = deps.db()
    request_id = job.payload["request_id"]
    tracked = requests.get_request(db, request_id)
    lines: list[str] = []
    if tracked:
        outcomes = requests.device_outcomes(db, request_id)
        counts: dict[str, int] = {}
        for _device, status, _detail in outcomes:
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n:,} {s}" for s, n in sorted(counts.items()))
        started = datetime.fromtimestamp(tracked.created_at, UTC)
        now = datetime.fromtimestamp(deps.clock(), UTC)
        lines.append(
            f"*{tracked.verb}* of {tracked.device_count:,} device(s) by <@{tracked.actor}> at {times.at(started, UTC, now=now)}"
            + (f" — {tracked.reason}" if tracked.reason else "")
        )
        lines.append(f"Results so far: {summary or 'none yet'} · state: {tracked.state}")
    remote = ""
    try:
        answer = deps.thingspace.request_status(request_id)
        remote = f"ThingSpace says: *{answer.status}*"
    except ThingSpaceError as exc:
        if not tracked:
            with audit.transaction(db):
                _respond(
                    db, job, f":warning: ThingSpace does not know request `{request_id}`: {exc.user_message}"
                )
            return
        remote = "ThingSpace's request status covers only single-device provisioning requests; the results above come from its callbacks."
    with audit.transaction(db):
        _respond(
            db,
            job,
            f"Request {request_id}",
            [blocks.section(f"Request `{request_id}`\n" + "\n".join(lines)), blocks.context(remote)],
        )
