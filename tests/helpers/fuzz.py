"""Strategies and example counts shared by the fuzz tests (``tests/unit/test_fuzz.py``,
``tests/e2e/test_fuzz_stack.py``)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st

#: ``HYPOTHESIS_PROFILE=slow`` multiplies every fuzz test's example count by this
SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "slow" else 1


def examples(n: int) -> int:
    """The example count of a fuzz test: *n*, or ``SCALE`` times it under the slow profile."""
    return n * SCALE


#: characters that have broken things before or are likely to: controls, NUL, bidi overrides,
#: zero-width, Slack's markup, quotes of every family, separators, surrogate-free astral text
NASTY = (
    "\x00\x01\x1b\x7f\x85\x9b\u200b\u200d\u202a\u202e\u2066\u2069\ufeff\ufffd"
    "<>&|!@#*_~`'\"\u2018\u2019\u201c\u201d,:;=-.\\/ \t\n"
)
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(list(NASTY)), st.characters(blacklist_categories=("Cs",)))
)

#: words that mean something to the grammar, mixed with noise
_WORDS = [
    "suspend",
    "resume",
    "sms",
    "status",
    "diag",
    "find",
    "history",
    "watch",
    "unwatch",
    "watches",
    "request",
    "help",
    "reach",
    "cancel-location",
    "--reason",
    "--dry-run",
    "--since",
    "--user",
    "--alert-after",
    "--wake-every",
    "--channel",
    "--limit",
    "group:plant-7",
    "iccid:89148000000800139708",
    "mdn:5551234567",
    "89148000000800139708",
    "0s",
    "99999999d",
    "24h",
    "<@U012ADMIN>",
    "<#C0OPS|ops>",
    "<!channel>",
    "<https://evil.example|x>",
    "<tel:5551234567|555-123-4567>",
    '"',
    "\u201c",
    "'",
    "mdn:55512\x0034567",
    "group:\u202e",
    "imei:",
    "eid:",
    ",",
    "=",
]
command_text = st.lists(st.one_of(st.sampled_from(_WORDS), nasty_text), max_size=12).map(" ".join)

#: any JSON value, nested a little
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)

_CALLBACK_KEYS = [
    "requestId",
    "deviceIds",
    "status",
    "callbackCount",
    "maxCallbackThreshold",
    "faultResponse",
    "deviceResponse",
    "username",
    "password",
    "comment",
    "stateChange",
    "cancelLocation",
    "smsSent",
    "smsDelivery",
    "smsMessage",
    "SmsMessage",
    "diagnostics",
    "reachability",
    "externalProvisioningChanges",
]
#: JSON objects shaped roughly like ThingSpace callbacks: the known keys with any values, and noise
callback_like = st.dictionaries(
    st.one_of(st.sampled_from(_CALLBACK_KEYS), st.text(max_size=10)), json_values, max_size=8
)
