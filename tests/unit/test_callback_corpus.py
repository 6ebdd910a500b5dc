"""The callback payload corpus (tests/fixtures/thingspace/callbacks/): every known variant through
the real intake over loopback HTTP and the inbox worker (with the device-message handler the
composition root gives it) on real SQLite, each with its outcome."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from bot.core.config import Settings
from bot.inbox.device_messages import DeviceMessages
from bot.inbox.worker import process_batch
from bot.intake.route import InboxWriter, callback_route
from bot.serving import ServerThread
from storage import request_devices, unknown_callbacks
from storage.pool import ConnectionPool
from tests.helpers.callbacks import seed_request

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "thingspace" / "callbacks"
USER, PASSWORD = "tsbot-callbacks", "corpus-p4ss-wörd"
DEVICE = "iccid:89148000000800139708"
FILES = sorted(CORPUS.glob("*.json"))


@dataclass
class Intake:
    url: str
    pool: ConnectionPool


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    pool = ConnectionPool(str(tmp_path_factory.mktemp("corpus") / "tsbot.db"))
    writer = InboxWriter(pool)
    writer.start()
    app = Starlette(routes=[callback_route(writer=writer, username=USER, password=PASSWORD)])
    server = ServerThread(app).start()
    try:
        yield Intake(server.url, pool)
    finally:
        server.stop()
        writer.stop()
        pool.close()


def test_the_corpus_is_there() -> None:
    """The corpus holds every family of sources it promises."""
    names = [f.stem for f in FILES]
    for family in ("proposal-", "soap-era-", "sdk-", "rust-crate-", "real-", "foreign-"):
        assert any(n.startswith(family) for n in names), family


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_corpus_payload(intake: Intake, path: Path) -> None:
    """Each payload gets its status code, lands where it should and has its outcome."""
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    expect = case["expect"]
    body = {"username": USER, "password": PASSWORD, **case["body"]}
    db = intake.pool.get()
    request_id = body.get("requestId")
    if case["verb"] is not None:
        assert isinstance(request_id, str)
        seed_request(db, verb=case["verb"], devices=[DEVICE], request_id=request_id)
    kept_before = len(unknown_callbacks.listing(db))
    answer = httpx.post(f"{intake.url}/thingspace/callbacks", content=json.dumps(body).encode(), timeout=10)
    assert answer.status_code == expect["http"], answer.text
    rows = db.execute("SELECT id, kind FROM inbox ORDER BY id DESC LIMIT 1").fetchall()
    if expect["store"] == "inbox":
        assert answer.json().get("message") != "kept, not understood"
        row_id, kind = rows[0]
        assert kind == expect["kind"]
        settings = Settings(ops_channel="C0OPS")
        process_batch(
            db,
            settings,
            now=time.time(),
            holder="corpus",
            ids=[row_id],
            message_handlers=[DeviceMessages(settings).on_callback],
        )
        state = db.execute("SELECT state FROM inbox WHERE id = ?", [row_id]).fetchone()[0]
        assert state == expect["inbox_state"]
    else:
        assert answer.json()["message"] == "kept, not understood"
    if case["verb"] is not None:
        found = request_devices.find_device(db, str(request_id), [DEVICE])
        assert found is not None and found[1] == expect["device_status"]
    kept = unknown_callbacks.listing(db)
    assert (len(kept) > kept_before) is expect["kept_unknown"]
    for item in kept:
        assert "password" not in item.payload and "username" not in item.payload
