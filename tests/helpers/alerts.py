"""A bench for watch and alert tests: the real command router, storage and rules on a real SQLite
file, with an injected clock, and callbacks built as ThingSpace sends them (no HTTP needed).

ThingSpace is never called here (its client points at a closed port); the worker jobs that would
call it are left queued. The loopback tests (LocalStack, SlackOnlyBot) cover the HTTP paths.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bot.scheduler.reachability_tasks  # noqa: F401 - registers the watch verbs, buttons and handlers
from bot.core import reachability
from bot.core.config import Settings
from bot.core.reachability import Applied, Tick
from bot.local_stack import DEMO_GRANTS
from bot.thingspace import shapes
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.events import parse_callback
from commands.context import ActionRequest, CommandRequest, Deps, Reply
from commands.registry import BUTTONS, VERBS
from commands.router import Router
from storage import memberships, outbox
from storage.db import write
from storage.outbox import OutboxRow
from storage.pool import ConnectionPool

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
HOUR = 3600.0


def _with_check_digit(body: str) -> str:
    from bot.thingspace.ids import luhn_digit

    return body + str(luhn_digit(body))


#: 20-digit ICCIDs with a valid check digit (a wrong one is refused before ThingSpace is asked)
ICCIDS = [_with_check_digit(f"8914800000000{i:06d}") for i in range(1, 41)]


def diagnostics_payload(
    device: str,
    *,
    reachable: bool | None,
    at: float,
    request_id: str | None = None,
    monitor_id: str = "mon-1",
    status: str = "Success",
) -> dict[str, Any]:
    """A DiagnosticsService callback body in the proposed shape (bot.thingspace.shapes)."""
    from datetime import UTC, datetime

    kind, _, ident = device.partition(":")
    body: dict[str, Any] = {"monitorId": monitor_id, "monitorType": "REACHABLE_FOR_DATA_AND_LOSS"}
    if reachable is not None:
        body["reachabilityStatus"] = shapes.REACHABLE if reachable else shapes.UNREACHABLE
    body["eventTime"] = datetime.fromtimestamp(at, UTC).isoformat()
    return {
        "username": "u",
        "password": "p",
        "requestId": request_id or str(uuid.uuid4()),
        "deviceIds": [{"id": ident, "kind": kind}],
        shapes.DIAGNOSTICS: body,
        "status": status,
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
    }


class AlertBench:
    """Commands, callbacks and evaluation ticks against one database, at ``self.now``."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        base = Settings(
            thingspace_base_url="http://127.0.0.1:9",
            thingspace_client_id="c",
            thingspace_client_secret="s",
            thingspace_username="u",
            thingspace_password="p",
            thingspace_account="0000123456-00001",
            db_path=str(tmp_path / "bot.db"),
            grants=DEMO_GRANTS,
            alert_group_threshold=5,
        )
        # ticks land exactly on due times here: no grouping delay unless a test asks for one
        self.settings = base.with_overrides(**{"alert_group_delay": timedelta(0), **overrides})
        self.pool = ConnectionPool(self.settings.db_path, synchronous="NORMAL")
        self.client = ThingSpaceClient(
            "http://127.0.0.1:9",
            client_id="c",
            client_secret="s",
            username="u",
            password="p",
            account="0000123456-00001",
        )
        self.now = T0
        self.deps = Deps(
            settings=self.settings,
            pool=self.pool,
            thingspace=self.client,
            clock=lambda: self.now,
            verbs=VERBS,
        )
        self.router = Router(VERBS, BUTTONS)
        with write(self.db):
            memberships.replace_members(self.db, "S0ONCALL", ["U0OPS1", "U0OPS2"])

    @property
    def db(self) -> Any:
        return self.pool.get()

    def close(self) -> None:
        self.client.close()
        self.pool.close()

    # -- driving ---------------------------------------------------------------------------------

    def command(self, text: str, *, user: str = "U012ADMIN", channel: str = "C0OPS") -> Reply:
        return self.router.handle_command(self.deps, CommandRequest(user=user, channel=channel, text=text))

    def click(
        self, action: str, value: str | int, *, user: str = "U012ADMIN", channel: str = "C0OPS"
    ) -> Reply | None:
        return self.router.handle_action(
            self.deps, ActionRequest(user=user, channel=channel, action_id=f"ts:{action}", value=str(value))
        )

    def callback(
        self, device: str, reachable: bool | None, *, at: float | None = None, **kw: Any
    ) -> Applied | None:
        event = parse_callback(
            diagnostics_payload(device, reachable=reachable, at=self.now if at is None else at, **kw)
        )
        with write(self.db):
            return reachability.apply_event(self.db, event, now=self.now)

    def evaluate(self) -> Tick:
        return reachability.evaluate(self.db, self.settings, now=self.now)

    def advance(self, seconds: float) -> Tick:
        self.now += seconds
        return self.evaluate()

    # -- reading what Slack would get --------------------------------------------------------------

    def cards(self) -> list[OutboxRow]:
        """Channel messages that are not thread replies (alert cards, grouped cards, digests)."""
        rows = self.db.execute(
            "SELECT key FROM outbox WHERE kind = 'post' AND thread_key IS NULL ORDER BY id"
        ).fetchall()
        return [r for r in (outbox.get(self.db, k[0]) for k in rows) if r is not None]

    def card(self, key: str) -> dict[str, Any]:
        """The newest content of a card: its post, or its newest update."""
        row = self.db.execute(
            "SELECT payload FROM outbox WHERE (key = ? AND kind = 'post') OR (target_key = ? AND kind = 'update') "
            "ORDER BY id DESC LIMIT 1",
            [key, key],
        ).fetchone()
        assert row is not None, f"no card {key}"
        payload: dict[str, Any] = json.loads(row[0])
        return payload

    def card_text(self, key: str) -> str:
        card = self.card(key)
        return card["text"] + "\n" + json.dumps(card.get("blocks") or [], ensure_ascii=False)

    def replies(self, card_key: str) -> list[str]:
        rows = self.db.execute(
            "SELECT payload FROM outbox WHERE thread_key = ? ORDER BY id", [card_key]
        ).fetchall()
        return [str(json.loads(r[0])["text"]) for r in rows]

    def audit(self, verb: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT actor, targets, outcome, detail FROM audit_log WHERE verb = ? ORDER BY id", [verb]
        ).fetchall()
        return [
            {"actor": r[0], "targets": json.loads(r[1]), "outcome": r[2], "detail": json.loads(r[3])}
            for r in rows
        ]

    def jobs(self, kind: str) -> int:
        return int(self.db.execute("SELECT count(*) FROM jobs WHERE kind = ?", [kind]).fetchone()[0])


def alert_bench(tmp_path: Path, **overrides: Any) -> Iterator[AlertBench]:
    """For a test module's fixture: ``yield from alert_bench(tmp_path)``."""
    b = AlertBench(tmp_path, **overrides)
    try:
        yield b
    finally:
        b.close()


def seed_directory(bench: AlertBench, devices: list[str], *, group: str, label: str = "meter") -> None:
    """Put devices in the device directory, in one group, with labels ``meter-001``…"""
    from storage import directory

    rows = [
        {
            "ids": {"iccid": d.split(":", 1)[1]},
            "state": "active",
            "label": f"{label}-{i:03d}",
            "groups": [group],
        }
        for i, d in enumerate(devices, start=1)
    ]
    with write(bench.db):
        directory.upsert_devices(bench.db, rows, now=bench.now)
