"""Results that cannot be posted where they were asked for: the requester is told, not left waiting.

The bot has no ``chat:write.public``: a command typed in a DM, or in a channel the bot is not in,
gets its confirmation through the response_url, but the request's root message (and an approval
card) is refused by Slack with ``not_in_channel`` / ``channel_not_found``. The requester then
hears what happened and what to do.
"""

from __future__ import annotations

import time

from sqlite_utils import Database

from bot.local_stack import LocalStack
from storage import outbox, pending, requests
from storage.db import write
from tests.helpers.callbacks import CallbackBot, callback_bot_fixture, seed_request  # noqa: F401
from tests.helpers.stacks import stack_fixture

stack = stack_fixture(devices=50, scheduler=False)


def _db(stack: LocalStack) -> Database:
    assert stack.runtime is not None
    return stack.runtime.pool.get()


def _active_device(stack: LocalStack, skip: int) -> str:
    """An active line of the seeded fleet (a different one per *skip*)."""
    rows = _db(stack).execute(
        "SELECT key FROM devices WHERE state = 'active' ORDER BY key LIMIT 1 OFFSET ?", [skip]
    )
    return str(rows.fetchone()[0])


def _request_in(stack: LocalStack, channel: str) -> requests.TrackedRequest:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = _db(stack).execute("SELECT request_id FROM ts_requests WHERE channel = ?", [channel]).fetchone()
        if row is not None:
            found = requests.get_request(_db(stack), row[0])
            assert found is not None
            return found
        time.sleep(0.05)
    raise AssertionError(f"no request recorded for {channel}")


def test_a_command_in_a_channel_the_bot_is_not_in_tells_the_requester_what_to_do(stack: LocalStack) -> None:
    """Slack answers not_in_channel to the results message: the requester is told through the
    command's response_url to invite the bot and use `/ts request ID`; the post is a dead letter."""
    stack.standin.inject("chat.postMessage", error="not_in_channel", channel="C0NOTIN", count=20)
    device = _active_device(stack, 1)
    stack.command(f"suspend {device} --reason lost", channel="C0NOTIN")
    stack.click("Confirm", channel="C0NOTIN")
    tracked = _request_in(stack, "C0NOTIN")
    assert stack.settle()
    root = outbox.get(_db(stack), f"req:{tracked.request_id}")
    assert root is not None and root.state == "dead" and root.last_error == "not_in_channel"
    told = [m for m in stack.standin.messages("C0NOTIN") if m.user == "U012ADMIN" and "could not" in m.text]
    assert len(told) == 1
    text = told[0].text
    assert f"request `{tracked.request_id}`" in text and "I am not a member of <#C0NOTIN>" in text
    assert "invite @tsbot to <#C0NOTIN> (`/invite @tsbot`)" in text
    assert f"`/ts request {tracked.request_id}` shows it" in text
    assert stack.standin.calls("response_url")[-1].params["text"] == text


def test_a_command_in_a_dm_tells_the_requester_to_use_a_channel(stack: LocalStack) -> None:
    """A command typed in a DM between people: Slack answers channel_not_found to the results
    message, and the requester is told (in that DM, through the response_url) to run it in a
    channel the bot is in."""
    device = _active_device(stack, 2)
    stack.command(f"suspend {device} --reason spare", channel="D0PEOPLE")
    stack.click("Confirm", channel="D0PEOPLE")
    tracked = _request_in(stack, "D0PEOPLE")
    assert stack.settle()
    root = outbox.get(_db(stack), f"req:{tracked.request_id}")
    assert root is not None and root.state == "dead" and root.last_error == "channel_not_found"
    [told] = [m for m in stack.standin.messages("D0PEOPLE") if "could not" in m.text]
    assert told.user == "U012ADMIN"
    assert (
        "I cannot see that conversation" in told.text and "run the command in a channel I am in" in told.text
    )
    assert f"`/ts request {tracked.request_id}`" in told.text


def test_an_approval_card_that_cannot_be_posted_is_reported_by_direct_message(cb_bot: CallbackBot) -> None:
    """The approval card dies with channel_not_found and the command's response_url is past its
    30 minutes: the requester gets a direct message saying nothing was changed."""
    db = cb_bot.db
    old = time.time() - 40 * 60
    with write(db):
        action = pending.create(
            db,
            verb="suspend",
            actor="U012ADMIN",
            channel="C0GONE",
            devices=[f"iccid:8914800000{i:010d}" for i in range(30)],
            reason="decommissioned",
            options={},
            needs_approval=True,
            ttl=3600,
            response_url=cb_bot.standin.new_response_url("C0GONE", "U012ADMIN"),
            now=old,
        )
        outbox.enqueue_post(db, key=f"approval:{action.id}", channel="C0GONE", text="Approval needed")
    cb_bot.runtime.wake()
    cb_bot.settle()
    dm = cb_bot.standin.messages("D012ADMIN")
    assert len(dm) == 1 and dm[0].user is None
    assert "Your suspend of 30 devices needs a second person's approval" in dm[0].text
    assert "Nothing was changed" in dm[0].text and "`channel_not_found`" in dm[0].text
    assert cb_bot.standin.calls("response_url") == []


def test_other_dead_letters_tell_nobody(cb_bot: CallbackBot) -> None:
    """A results reply, or a root refused for another reason (invalid_blocks), is only a dead
    letter: no notice is queued."""
    url = cb_bot.standin.new_response_url("C0A", "U012ADMIN")
    cb_bot.standin.inject("chat.postMessage", error="invalid_blocks", channel="C0A")
    seed_request(
        cb_bot.runtime,
        verb="suspend",
        devices=["iccid:89148000000800139708"],
        channel="C0A",
        response_url=url,
    )
    with write(cb_bot.db):
        outbox.enqueue_post(cb_bot.db, key="cb:77", channel="C0GONE", text="a reply")
    cb_bot.runtime.wake()
    cb_bot.settle()
    assert {d.key.split(":")[0] for d in outbox.dead_letters(cb_bot.db)} == {"req", "cb"}
    assert (
        cb_bot.db.execute("SELECT count(*) FROM outbox WHERE key LIKE 'undeliverable:%'").fetchone()[0] == 0
    )
    assert cb_bot.standin.calls("response_url") == []
