"""The verb table and the button table: the one place that says which commands exist.

Help, the manifest, the role checks, the router, the metrics and the command worker all read
:data:`VERBS`; the router dispatches clicks through :data:`BUTTONS`. Adding a verb is one
:class:`~commands.context.VerbSpec` row here (plus its README line, which a test checks).
"""

from __future__ import annotations

from commands import actions, browse, lookup, nidd, retry, sms_history, usage, watch
from commands.context import ActionHandler, CommandRequest, Deps, Reply, VerbSpec, ViewHandler
from commands.grammar import TARGETS_AND_TEXT, TEXT, Invocation
from commands.help import help_reply

__all__ = ["BUTTONS", "VERBS", "VIEWS"]

_ACTION_OPTIONS = ("reason", "dry-run")


def _help(deps: Deps, req: CommandRequest, inv: Invocation, role: str | None) -> Reply:
    return help_reply(VERBS, role, inv.text)


VERBS: dict[str, VerbSpec] = {
    spec.name: spec
    for spec in (
        VerbSpec(
            "help",
            None,
            "help [verb]",
            "what you may run here, or how to use one verb",
            "/ts help suspend",
            handler=_help,
            arguments=TEXT,
        ),
        VerbSpec(
            "status",
            "viewer",
            "status TARGET",
            "state, plan, last connection and identifiers of a line",
            "/ts status iccid:89148000000800139708",
            handler=lookup.start,
            runner=lookup.run_status,
            self_audited=True,
        ),
        VerbSpec(
            "diag",
            "viewer",
            "diag TARGET",
            "diagnostics with a verdict and the next step",
            "/ts diag 89148000000800139708",
            handler=lookup.start,
            runner=lookup.run_diag,
            self_audited=True,
        ),
        VerbSpec(
            "find",
            "viewer",
            "find TEXT",
            "search the device directory by partial id, label or group",
            "/ts find 9708",
            handler=browse.find,
            arguments=TEXT,
        ),
        VerbSpec(
            "reach",
            "viewer",
            "reach TARGET",
            "ask ThingSpace now whether a device is reachable",
            "/ts reach mdn:5551234567",
            handler=lookup.start,
            runner=lookup.run_reach,
            self_audited=True,
        ),
        VerbSpec(
            "suspend",
            "operator",
            "suspend TARGETS [--reason TEXT] [--dry-run]",
            "suspend lines (asks for confirmation; big batches need a second approver)",
            '/ts suspend iccid:89148000000800139708 --reason "stolen"',
            handler=actions.start,
            submit=actions.submit_suspend,
            self_audited=True,
            mutating=True,
            options=_ACTION_OPTIONS,
        ),
        VerbSpec(
            "resume",
            "operator",
            "resume TARGETS [--reason TEXT] [--dry-run]",
            "restore suspended lines (asks for confirmation)",
            "/ts resume group:plant-7 --reason recommissioned",
            handler=actions.start,
            submit=actions.submit_resume,
            self_audited=True,
            mutating=True,
            options=_ACTION_OPTIONS,
        ),
        VerbSpec(
            "sms",
            "operator",
            'sms TARGETS "TEXT" [--reason TEXT] [--dry-run]',
            "send an SMS; delivery receipts arrive in the thread",
            '/ts sms mdn:5551234567 "REBOOT"',
            handler=actions.start,
            submit=actions.submit_sms,
            self_audited=True,
            mutating=True,
            options=("dry-run", "reason"),
            arguments=TARGETS_AND_TEXT,
        ),
        VerbSpec(
            "nidd",
            "operator",
            'nidd TARGETS "TEXT" | --base64 DATA | --hex DATA [--ttl 1h] [--reason TEXT] [--dry-run]',
            "send non-IP data to NB-IoT lines; Queued and Delivered follow in the thread",
            '/ts nidd demo-nbiot "ping"',
            handler=actions.start,
            submit=nidd.submit_nidd,
            self_audited=True,
            mutating=True,
            options=("base64", "hex", "ttl", "dry-run", "reason"),
            arguments=TARGETS_AND_TEXT,
        ),
        VerbSpec(
            "cancel-location",
            "admin",
            "cancel-location TARGET [--reason TEXT] [--dry-run]",
            "detach a device from the network so it re-attaches (queued by ThingSpace)",
            "/ts cancel-location imei:990013907835573",
            handler=actions.start,
            submit=actions.submit_cancel_location,
            self_audited=True,
            mutating=True,
            options=_ACTION_OPTIONS,
        ),
        VerbSpec(
            "watch",
            "operator",
            "watch TARGETS [--alert-after 2h] [--wake-every 6h] [--channel #c] [--dry-run]",
            "alert a channel when devices stay unreachable",
            "/ts watch group:meters --wake-every 12h",
            handler=watch.watch,
            self_audited=True,
            mutating=True,
            options=("alert-after", "wake-every", "channel", "dry-run", "reason"),
        ),
        VerbSpec(
            "unwatch",
            "operator",
            "unwatch TARGETS [--dry-run]",
            "stop watching devices",
            "/ts unwatch group:meters",
            handler=watch.unwatch,
            self_audited=True,
            mutating=True,
            options=("dry-run", "reason"),
        ),
        VerbSpec(
            "watches",
            "viewer",
            "watches",
            "what is watched in this workspace",
            "/ts watches",
            handler=watch.watches_list,
        ),
        VerbSpec(
            "request",
            "viewer",
            "request ID",
            "status of an asynchronous ThingSpace request",
            "/ts request 595f5c44-c31c-4552-8670-020a1545a84d",
            handler=lookup.start_request,
            runner=lookup.run_request,
            self_audited=True,
            arguments=TEXT,
        ),
        VerbSpec(
            "sms-history",
            "viewer",
            "sms-history TARGET [--since 7d]",
            "SMS to and from a device, newest first; ThingSpace's SMS events follow in the thread",
            "/ts sms-history demo-healthy --since 24h",
            handler=sms_history.start,
            runner=sms_history.run_sms_history,
            self_audited=True,
            options=("since",),
        ),
        VerbSpec(
            "usage",
            "viewer",
            "usage TARGET|group:NAME [--days 30]",
            "per-day data and SMS (domestic/international) against the plan, with a chart in the thread",
            "/ts usage demo-roaming --days 14",
            handler=usage.start,
            runner=usage.run_usage,
            self_audited=True,
            options=("days",),
        ),
        VerbSpec(
            "history",
            "viewer",
            "history [TARGET] [--user @u] [--since 24h] [--limit N]",
            "who did what, when and why: the audit log, and for a line ThingSpace's own provisioning history",
            "/ts history iccid:89148000000800139708 --since 7d",
            handler=browse.history,
            runner=browse.run_history,
            options=("user", "since", "limit"),
        ),
    )
}

#: ``ts:<kind>`` -> handler for every button the bot draws (``ts:run`` is the router's own)
BUTTONS: dict[str, ActionHandler] = {
    **actions.buttons(),
    "retry": retry.on_retry,
    "find-more": browse.find_more,
    "history-more": browse.history_more,
    "share": lookup.on_share,
    **watch.alert_buttons(),
}

#: ``ts:<kind>`` callback ids of the modals the bot opens -> their submission handler
VIEWS: dict[str, ViewHandler] = {
    actions.MODAL: actions.on_modal,
}
