"""``/ts usage`` through the whole stack: figures in the channel, the chart uploaded into the
post's thread through the stand-in's files.getUploadURLExternal / upload / completeUploadExternal,
the day-by-day table where Slack takes no file, and the refusals (``--days 0``, a group over 100
lines)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bot.console.records import Message
from bot.console.standin import Upload
from bot.local_stack import LocalStack

_OPS = "C0OPS"
_PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("usage"), devices=300, scheduler=False)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _ack(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json().get("text", ""))


def _usage_post(stack: LocalStack, subject: str, before: int) -> Message:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in stack.standin.messages(_OPS)[before:]:
            if message.thread_ts is None and f"Usage of {subject}" in message.text:
                return message
        time.sleep(0.1)
    raise AssertionError(f"no usage post for {subject}")


def _thread_reply(stack: LocalStack, root: Message) -> Message:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replies = stack.standin.thread(root.channel, root.ts)[1:]
        if replies:
            return replies[0]
        time.sleep(0.1)
    raise AssertionError("nothing in the usage post's thread")


def test_usage_of_a_roaming_line_shows_the_international_share_and_a_chart(stack: LocalStack) -> None:
    before = len(stack.standin.messages(_OPS))
    ack = _ack(stack.command("usage demo-roaming --days 14"))
    assert "Reading 14 days of usage for demo-roaming" in ack
    post = _usage_post(stack, "demo-roaming", before)
    shown = "\n".join(str(b) for b in post.blocks)
    assert "international" in shown and "% international" in shown
    assert "against the plan" in shown
    reply = _thread_reply(stack, post)
    upload = stack.standin.upload_for(reply)
    assert isinstance(upload, Upload)
    assert upload.data.startswith(_PNG) and upload.name.endswith(".png")
    assert upload.thread_ts == post.ts


def test_without_file_support_the_table_goes_in_the_thread(stack: LocalStack) -> None:
    stack.standin.files_enabled = False
    try:
        before = len(stack.standin.messages(_OPS))
        stack.command("usage demo-healthy --days 7")
        post = _usage_post(stack, "demo-healthy", before)
        reply = _thread_reply(stack, post)
        assert stack.standin.upload_for(reply) is None
        assert "```" in reply.text and "SMS" in reply.text
        assert len([line for line in reply.text.splitlines() if " SMS" in line]) == 7
    finally:
        stack.standin.files_enabled = True


def test_a_group_shows_its_total_and_top_consumers(stack: LocalStack) -> None:
    before = len(stack.standin.messages(_OPS))
    ack = _ack(stack.command("usage group:trackers --days 3"))
    assert "group:trackers" in ack
    post = _usage_post(stack, "group:trackers", before)
    assert "Top consumers" in "\n".join(str(b) for b in post.blocks)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("usage demo-healthy --days 0", "--days takes a whole number of days from 1 to 365"),
        ("usage demo-healthy --days lots", "--days takes a whole number"),
        ("usage group:plant-7", "has more than 100 lines"),
        ("usage demo-healthy demo-roaming", "takes one line or one group"),
    ],
)
def test_bad_usage_requests_are_refused(stack: LocalStack, text: str, expected: str) -> None:
    ack = _ack(stack.command(text))
    assert expected in ack, ack
