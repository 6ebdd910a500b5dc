"""The callback intake over loopback HTTP: authentication, size and shape checks, dedupe, group commit."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

from storage import inbox, unknown_callbacks
from tests.helpers.callbacks import (
    CALLBACK_PASSWORD,
    CallbackBot,
    callback,
    callback_bot_fixture,  # noqa: F401
    send_callbacks,
)

DEVICE = "iccid:89148000000800139708"


def _metric(bot: CallbackBot, result: str) -> float:
    return bot.runtime.metrics.value("callbacks_total", result=result)


def _rows(bot: CallbackBot) -> int:
    return sum(inbox.count_by_state(bot.db).values())


def test_a_callback_is_stored_and_acknowledged(cb_bot: CallbackBot) -> None:
    """An authentic callback gets 200 once its inbox row exists, without the credentials."""
    status, answer = cb_bot.post(callback("req-1", DEVICE))
    assert status == 200
    assert answer == {"ok": True, "duplicate": False}
    row = inbox.get(cb_bot.db, 1)
    assert row is not None
    assert (row.request_id, row.device, row.service) == ("req-1", DEVICE, "CarrierService")
    assert "password" not in row.payload and "username" not in row.payload
    assert _metric(cb_bot, "accepted") == 1


def test_retries_of_the_same_callback_are_one_fact(cb_bot: CallbackBot) -> None:
    """ThingSpace's retries (rising callbackCount) get 200 and store nothing new."""
    answers = [cb_bot.post(callback("req-2", DEVICE, count=n)) for n in (1, 2, 3, 4)]
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    assert [a[1]["duplicate"] for a in answers] == [False, True, True, True]
    assert _rows(cb_bot) == 1
    assert _metric(cb_bot, "duplicate") == 3


def test_dedupe_is_per_device_and_outcome_not_per_request(cb_bot: CallbackBot) -> None:
    """One request id fanning out to three devices, and two outcomes of one device, are five facts."""
    devices = [f"iccid:8914800000080013970{i}" for i in range(3)]
    for device in devices:
        assert cb_bot.post(callback("req-3", device))[0] == 200
    assert cb_bot.post(callback("req-4", DEVICE, outcome="sms-sent"))[0] == 200
    assert cb_bot.post(callback("req-4", DEVICE, outcome="sms-delivered"))[0] == 200
    assert _rows(cb_bot) == 5


def _grep(tmp_path: Path, needle: bytes) -> list[str]:
    return [p.name for p in tmp_path.iterdir() if p.is_file() and needle in p.read_bytes()]


def test_forged_callbacks_are_refused_and_stored_nowhere(cb_bot: CallbackBot, tmp_path: Path) -> None:
    """Wrong, missing, non-text, non-ASCII or lone-surrogate credentials get 401 and leave no trace
    (the database files are grepped for the password that was tried)."""
    forged_password = "forged-p4ssword-7731"
    variants = [
        callback("req-f", DEVICE, password=forged_password),
        callback("req-f", DEVICE, username="someone-else"),
        callback("req-f", DEVICE, password=""),
        {k: v for k, v in callback("req-f", DEVICE).items() if k != "password"},
        callback("req-f", DEVICE, extra={"password": 12345}),
        callback("req-f", DEVICE, password="pässwörd-" + forged_password),
        callback("req-f", DEVICE, password=CALLBACK_PASSWORD + " "),
    ]
    for body in variants:
        status, answer = cb_bot.post(body)
        assert status == 401, body
        assert answer["ok"] is False
    lone = json.dumps(callback("req-f", DEVICE, password="x")).replace(
        '"x"', '"\\ud800' + forged_password + '"'
    )
    assert cb_bot.post(lone.encode())[0] == 401
    assert _rows(cb_bot) == 0
    assert _metric(cb_bot, "rejected") == len(variants) + 1
    assert _grep(tmp_path, forged_password.encode()) == []
    assert _grep(tmp_path, b"req-f") == []


def test_the_real_password_is_never_stored(cb_bot: CallbackBot, tmp_path: Path) -> None:
    """An accepted callback leaves neither the configured password nor the username on disk."""
    assert cb_bot.post(callback("req-p", DEVICE))[0] == 200
    cb_bot.settle()
    assert _grep(tmp_path, CALLBACK_PASSWORD.encode()) == []


def test_no_configured_password_refuses_everything(tmp_path: Path) -> None:
    """With TSBOT_CALLBACK_PASSWORD empty, even a body with empty credentials is refused."""
    bot = CallbackBot(tmp_path, callback_username="", callback_password="")
    try:
        status, answer = bot.post(callback("req-e", DEVICE, username="", password=""))
        assert status == 401
        assert "password" in answer["error"]
        assert _rows(bot) == 0
    finally:
        bot.close()


def _raw_post(url: str, headers: dict[str, str], chunks: list[bytes]) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    try:
        conn.putrequest("POST", parts.path)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for chunk in chunks:
            conn.send(chunk)
        return conn.getresponse().status
    finally:
        conn.close()


def test_bodies_over_one_megabyte_get_413(cb_bot: CallbackBot) -> None:
    """A declared or a streamed (chunked) body over 1 MB is refused before it is read in full."""
    declared = _raw_post(cb_bot.url, {"Content-Length": str(5 * 1024 * 1024)}, [b"{" * 1024])
    assert declared == 413
    chunk = b"a" * 65536
    hex_len = f"{len(chunk):x}".encode()
    chunks = [hex_len + b"\r\n" + chunk + b"\r\n"] * 20 + [b"0\r\n\r\n"]
    streamed = _raw_post(cb_bot.url, {"Transfer-Encoding": "chunked"}, chunks)
    assert streamed == 413
    assert _metric(cb_bot, "too_large") == 2
    assert _rows(cb_bot) == 0


def test_malformed_bodies_get_400_with_the_reason(cb_bot: CallbackBot) -> None:
    """What could never be accepted gets 400: invalid JSON, non-objects, 100,000-deep nesting, and
    bodies that are not UTF-8 (a UTF-16 one included: the body is decoded strictly)."""
    utf16 = json.dumps(callback("req-u", DEVICE)).encode("utf-16")
    cases = [
        b"{not json",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b"[" * 100_000 + b"]" * 100_000,
        utf16,
        json.dumps(callback("req-u", DEVICE)).encode("utf-16-le"),
    ]
    for body in cases:
        status, answer = cb_bot.post(body)
        assert status == 400, body[:60]
        assert answer["error"]
    assert _metric(cb_bot, "malformed") == len(cases)
    assert _rows(cb_bot) == 0
    assert unknown_callbacks.count_waiting(cb_bot.db) == 0


def test_authentic_callbacks_the_bot_cannot_read_are_kept_not_refused(cb_bot: CallbackBot) -> None:
    """Authenticated JSON is always 2xx: a body with no request id, deviceIds of the wrong type or
    nothing saying what happened is kept raw (credentials removed) for `tsbot callbacks unknown`,
    counted by service guess, and its retries are one kept callback."""
    cases = [
        {k: v for k, v in callback("", DEVICE).items()},
        {**callback("req-m", DEVICE), "deviceIds": "89148000000800139708"},
        {k: v for k, v in callback("req-m", DEVICE).items() if k not in ("deviceResponse", "status")},
    ]
    for body in cases:
        status, answer = cb_bot.post(json.dumps(body).encode())
        assert status == 200, body
        assert answer["message"] == "kept, not understood"
    again = {**cases[1], "callbackCount": 2}
    assert cb_bot.post(json.dumps(again).encode()) == (
        200,
        {"ok": True, "message": "kept, not understood", "duplicate": True},
    )
    assert _rows(cb_bot) == 0
    kept = unknown_callbacks.listing(cb_bot.db)
    assert len(kept) == 3
    assert [k.copies for k in kept] == [1, 2, 1]
    assert all("password" not in k.payload and "username" not in k.payload for k in kept)
    assert kept[1].request_id == "req-m" and kept[1].service_guess == "CarrierService"
    assert _metric(cb_bot, "unrecognised") == 4
    assert cb_bot.runtime.metrics.value("callbacks_unrecognised_total", service="CarrierService") == 2
    assert cb_bot.runtime.metrics.value("callbacks_unrecognised_total", service="unknown") == 1


def test_concurrent_callbacks_are_group_committed(cb_bot: CallbackBot) -> None:
    """400 callbacks at concurrency 16 are all stored and acknowledged, in fewer commits than callbacks."""
    bodies = [callback("req-burst", f"iccid:891480000{i:011d}") for i in range(400)]
    statuses = send_callbacks(cb_bot.url, bodies, concurrency=16)
    assert statuses == [200] * 400
    assert _rows(cb_bot) == 400
    writer = cb_bot.runtime.inbox_writer
    assert writer.stored == 400
    assert writer.batches < 400


def test_metrics_show_callback_results_and_inbox_depth(cb_bot: CallbackBot) -> None:
    """/metrics counts callbacks by result and reports the inbox depth."""
    cb_bot.post(callback("req-x", DEVICE))
    cb_bot.post(callback("req-x", DEVICE, count=2))
    cb_bot.post(callback("req-x", DEVICE, password="nope"))
    cb_bot.settle()
    parts = urlsplit(cb_bot.server.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    assert 'tsbot_callbacks_total{result="accepted"} 1.0' in text
    assert 'tsbot_callbacks_total{result="duplicate"} 1.0' in text
    assert 'tsbot_callbacks_total{result="rejected"} 1.0' in text
    assert "tsbot_inbox_depth 0.0" in text


def test_hostile_but_authentic_bodies_never_break_the_intake(cb_bot: CallbackBot) -> None:
    """Lone surrogates in ids, deep nesting just under the parser's limit and odd values get a
    4xx or are stored escaped (in the inbox, or kept as unreadable) — never a 500 — and the intake keeps accepting callbacks after."""
    surrogate = json.dumps(callback("req-s", DEVICE)).replace('"req-s"', '"\\ud800req"').encode()
    assert cb_bot.post(surrogate)[0] == 200  # authentic: kept for `tsbot callbacks unknown`
    assert unknown_callbacks.listing(cb_bot.db)[0].request_id == ""
    text_surrogate = callback("req-t", DEVICE, extra={"note": "x"})
    body = json.dumps(text_surrogate).replace('"x"', '"\\udfff"').encode()
    assert cb_bot.post(body)[0] == 200
    for depth in (200, 800, 950, 990):
        nested = json.dumps(callback("req-d", DEVICE)).replace(
            '"maxCallbackThreshold": 4', '"maxCallbackThreshold": 4, "deep": ' + "[" * depth + "]" * depth
        )
        status, _ = cb_bot.post(nested.encode())
        assert status in (200, 400), depth
    assert cb_bot.post(callback("req-after", DEVICE))[0] == 200
    assert cb_bot.runtime.inbox_writer.alive()
    cb_bot.settle()
    assert inbox.count_by_state(cb_bot.db).get("failed", 0) == 0


def test_an_absurd_callback_count_is_stored_not_retried_forever(cb_bot: CallbackBot) -> None:
    """callbackCount 10^30 does not fit SQLite: it is kept as the bound and answered 200 (a 503
    would make ThingSpace retry it for ever)."""
    status, answer = cb_bot.post(callback("req-big", DEVICE, count=10**30))
    assert (status, answer["duplicate"]) == (200, False)
    row = inbox.get(cb_bot.db, 1)
    assert row is not None and row.callback_count == 1_000_000
