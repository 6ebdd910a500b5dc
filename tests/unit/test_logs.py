"""Structured logs: redaction of secrets, bodies and identifiers; request ids on every line."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from slack_bolt import App, BoltRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.core import logs
from bot.core.config import Settings
from bot.serving import ServerThread

ICCID = "89148000000800139708"
MDN = "5551234567"
IMEI = "353456789012345"
IMSI = "311480123456789"
IDS = (ICCID, MDN, IMEI, IMSI)
BOT_TOKEN = "xoxb-1234-5678-abcdefSECRET"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TS_PASSWORD = "hunter2-Correct Horse!"
CALLBACK_PASSWORD = "cb-pass-9f8e7d6c"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, TS_PASSWORD, CALLBACK_PASSWORD)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Route every log record through the production handler into a string, then restore."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure_logging("DEBUG", stream=out)
    logs.register_secrets(
        Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            thingspace_client_id="client-abc",
            thingspace_client_secret="client-secret-xyz",
            thingspace_password=TS_PASSWORD,
            callback_username="thingspace",
            callback_password=CALLBACK_PASSWORD,
        )
    )
    yield out
    root.removeHandler(handler)
    root.setLevel(level)
    logs.clear_secrets()


def lines_of(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    for device_id in IDS:
        assert device_id not in text


def test_no_secret_or_identifier_leaks_through_any_field(stream: io.StringIO) -> None:
    """Ids and secrets in the message, %-args, extra fields and tracebacks are all redacted."""
    log = logging.getLogger("bot.test")
    with logs.request_context("r-test-1"):
        log.info("suspend %s for %s with token %s", ICCID, MDN, BOT_TOKEN)
        log.warning(f"login failed for password {TS_PASSWORD} on {IMEI}")  # noqa: G004 - careless caller
        log.info(
            "callback stored",
            extra={
                "iccid": ICCID,
                "mdn_number": int(MDN),
                "nested": {"imsi": IMSI, "list": [MDN, {"deep": CALLBACK_PASSWORD}]},
                ICCID: "id as a key",
                "obj": ValueError(f"bad {IMEI}"),
            },
        )
        try:
            raise RuntimeError(f"ThingSpace said no to {ICCID} using {SIGNING_SECRET}")
        except RuntimeError:
            log.exception("diag failed for %s", MDN)
        log.error("with stack", stack_info=True, extra={"at": "89148000000800139708"})
    text = stream.getvalue()
    assert_clean(text)
    lines = lines_of(stream)
    assert len(lines) == 5
    assert all(line["request_id"] == "r-test-1" for line in lines)
    assert lines[0]["message"] == "suspend …9708 for …4567 with token ***"
    assert lines[2]["iccid"] == "…9708"
    assert lines[2]["mdn_number"] == "…4567"
    assert lines[2]["nested"] == {"imsi": "…6789", "list": ["…4567", {"deep": "***"}]}
    assert "…9708" in lines[3]["exc"] and "***" in lines[3]["exc"]
    assert "RuntimeError" in lines[3]["exc"]
    assert lines[4]["stack"].startswith("Stack (most recent call last)")
    assert "…9708" in lines[4]["stack"]


def test_json_line_has_the_documented_fields(stream: io.StringIO) -> None:
    """Each line is one JSON object with UTC time, level, logger, message and request_id."""
    logging.getLogger("bot.fields").info("hello %s", "world", extra={"count": 3})
    (line,) = lines_of(stream)
    assert line["time"].endswith("Z") and line["time"][10] == "T"
    assert line["level"] == "info"
    assert line["logger"] == "bot.fields"
    assert line["message"] == "hello world"
    assert line["request_id"] == "-MainThread"  # outside a request, the thread names the work
    assert line["count"] == 3


def test_request_id_on_every_line_and_restored_after(stream: io.StringIO) -> None:
    """Lines inside request_context carry its id; nesting restores the outer id; outside, the thread."""
    log = logging.getLogger("bot.rid")
    with logs.request_context() as outer:
        log.info("one")
        with logs.request_context("inner-id"):
            log.info("two")
        log.info("three")
    log.info("four")
    assert outer.startswith("r")
    assert [line["request_id"] for line in lines_of(stream)] == [outer, "inner-id", outer, "-MainThread"]


def test_new_request_ids_are_never_masked(stream: io.StringIO) -> None:
    """Generated request ids survive the identifier masker intact, in the field and in text."""
    log = logging.getLogger("bot.rid")
    ids = [logs.new_request_id() for _ in range(300)]
    assert len(set(ids)) == 300
    for rid in ids:
        with logs.request_context(rid):
            log.info("request %s", rid)
    for rid, line in zip(ids, lines_of(stream), strict=True):
        assert line["request_id"] == rid
        assert line["message"] == f"request {rid}"


def test_request_id_follows_work_only_when_carried(stream: io.StringIO) -> None:
    """A plain thread logs under its own name; carry_request_id brings the id across threads and executors."""
    log = logging.getLogger("bot.worker.command_worker")

    def work(tag: str) -> None:
        log.info("work %s", tag)

    with logs.request_context("r-carried"):
        plain = threading.Thread(target=work, args=("plain",), name="plain-worker")
        plain.start()
        plain.join()
        carried = threading.Thread(target=logs.carry_request_id(work), args=("carried",))
        carried.start()
        carried.join()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(logs.carry_request_id(work), "pool").result()
    by_message = {line["message"]: line["request_id"] for line in lines_of(stream)}
    assert by_message == {
        "work plain": "-plain-worker",
        "work carried": "r-carried",
        "work pool": "r-carried",
    }


def test_numeric_secret_does_not_leak_its_last_digits(stream: io.StringIO) -> None:
    """A secret made of digits is replaced whole, before the id masker could keep four of them."""
    logs.register_secret("987654321098")
    logging.getLogger("bot.t").info("pin %s", "987654321098")
    (line,) = lines_of(stream)
    assert line["message"] == "pin ***"


def test_url_encoded_and_basic_auth_forms_are_redacted(stream: io.StringIO) -> None:
    """The URL-encoded password and the Basic header built from the callback credentials are hidden."""
    import base64
    from urllib.parse import quote

    basic = base64.b64encode(f"thingspace:{CALLBACK_PASSWORD}".encode()).decode()
    logging.getLogger("bot.t").info("url ?p=%s header Basic %s", quote(TS_PASSWORD, safe=""), basic)
    (line,) = lines_of(stream)
    assert line["message"] == "url ?p=*** header Basic ***"


def test_blank_and_too_short_secrets_are_ignored(stream: io.StringIO) -> None:
    """Registering an empty or tiny value does not blank out ordinary text."""
    logs.register_secret("")
    logs.register_secret(None)
    logs.register_secret("ab")
    logging.getLogger("bot.t").info("about a tab")
    (line,) = lines_of(stream)
    assert line["message"] == "about a tab"


def test_rotating_secrets_are_bounded_and_static_ones_stay(stream: io.StringIO) -> None:
    """Old session tokens fall out of the bounded set; the newest and every static secret stay hidden."""
    tokens = [f"session-token-{i:04d}-abcdef" for i in range(logs.ROTATING_SECRETS_KEPT + 20)]
    for token in tokens:
        logs.register_secret(token, rotating=True)
    logging.getLogger("bot.t").info("%s %s %s", tokens[0], tokens[-1], BOT_TOKEN)
    (line,) = lines_of(stream)
    assert line["message"] == f"{tokens[0]} *** ***"


def test_bodies_are_never_logged(stream: io.StringIO) -> None:
    """Body-like extra fields are omitted and text after 'body:' is cut, whatever it contains."""
    log = logging.getLogger("bot.t")
    log.info("request in", extra={"body": b"token=abc&text=hello", "json_body": {"a": 1}, "size": 20})
    log.info("Sending a request - url: https://x/api, json_body: {'text': 'private words'}")
    first, second = lines_of(stream)
    assert first["body"] == logs.OMITTED and first["json_body"] == logs.OMITTED and first["size"] == 20
    assert second["message"] == f"Sending a request - url: https://x/api, json_body: {logs.OMITTED}"
    assert "private words" not in stream.getvalue() and "hello" not in stream.getvalue()


def test_bolt_bad_signature_body_dump_is_dropped(stream: io.StringIO) -> None:
    """Bolt's INFO body dump on a bad signature never appears, even after App() resets its level."""
    app = App(signing_secret=SIGNING_SECRET, token=BOT_TOKEN, token_verification_enabled=False)
    body = f"command=%2Fts&text=suspend+{ICCID}&user_id=U1&secret_words=private-words"
    response = app.dispatch(
        BoltRequest(
            body=body,
            headers={
                "content-type": ["application/x-www-form-urlencoded"],
                "x-slack-signature": ["v0=deadbeef"],
                "x-slack-request-timestamp": ["1"],
            },
        )
    )
    assert response.status == 401
    text = stream.getvalue()
    assert "private-words" not in text
    assert_clean(text)


def test_httpx_url_logs_are_turned_down(stream: io.StringIO) -> None:
    """httpx's INFO line with the full request URL (which can carry an MDN) is not emitted."""

    def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    with ServerThread(Starlette(routes=[Route("/devices/{mdn}", hello)])) as server:
        reply = httpx.get(f"{server.url}/devices/{MDN}")
    assert reply.status_code == 200
    assert "HTTP Request" not in stream.getvalue()
    assert_clean(stream.getvalue())


def test_bad_format_arguments_still_log_the_event(stream: io.StringIO) -> None:
    """A %-format mismatch is logged (redacted) instead of raising or vanishing."""
    logging.getLogger("bot.t").info("two %s %s", ICCID)  # noqa: PLE1206 - the mistake under test
    (line,) = lines_of(stream)
    assert "two %s %s" in line["message"] and "…9708" in line["message"]
    assert ICCID not in stream.getvalue()


def test_newlines_cannot_forge_a_second_line(stream: io.StringIO) -> None:
    """A message with CR/LF from user text stays one JSON line."""
    logging.getLogger("bot.t").info("user said %s", 'hi\n{"level": "critical", "message": "forged"}')
    lines = lines_of(stream)
    assert len(lines) == 1
    assert lines[0]["level"] == "info"


def test_text_mode_is_one_readable_line_per_event() -> None:
    """The human mode shows time, level, logger, request id and message on one line, redacted."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure_logging("INFO", json=False, stream=out)
    try:
        logs.register_secret(BOT_TOKEN)
        with logs.request_context("r-demo"):
            logging.getLogger("bot.cli.demo").info("posted %s\nfake line", ICCID, extra={"channel": "C1"})
        logging.getLogger("bot.cli.demo").debug("hidden at INFO")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logs.clear_secrets()
    (line,) = out.getvalue().splitlines()
    assert line.endswith("INFO    bot.cli.demo [r-demo] posted …9708\\nfake line channel=C1")


def test_configure_logging_replaces_its_own_handler_only() -> None:
    """Calling configure_logging twice leaves one tsbot handler and keeps foreign handlers."""
    root = logging.getLogger()
    level = root.level
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    first = logs.configure_logging("INFO", stream=io.StringIO())
    second = logs.configure_logging("warning", stream=io.StringIO())
    try:
        assert first not in root.handlers
        assert second in root.handlers and foreign in root.handlers
        assert root.level == logging.WARNING
        for name in logs.NOISY_LOGGERS:
            assert logging.getLogger(name).level == logging.WARNING
    finally:
        root.removeHandler(second)
        root.removeHandler(foreign)
        root.setLevel(level)


def test_unknown_level_is_a_clear_error() -> None:
    """An unknown TSBOT_LOG_LEVEL names the accepted levels and installs nothing."""
    root = logging.getLogger()
    before = list(root.handlers)
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        logs.configure_logging("LOUD")
    assert root.handlers == before


def test_capture_logs_sees_redacted_lines() -> None:
    """capture_logs collects parsed, redacted lines and removes its handler afterwards."""
    root = logging.getLogger()
    before = list(root.handlers)
    with logs.capture_logs() as captured, logs.request_context("r-cap"):
        logging.getLogger("bot.cap").debug("seen %s", MDN)
    assert root.handlers == before
    assert captured.lines() == [
        {
            "time": captured.lines()[0]["time"],
            "level": "debug",
            "logger": "bot.cap",
            "message": "seen …4567",
            "request_id": "r-cap",
        }
    ]
