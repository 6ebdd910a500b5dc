"""``/ts diag``: extended diagnostics as a readable card.

(The graded verdict with evidence and next steps is built on this; see the diag issue.)
"""

from __future__ import annotations

from typing import Any

from bot import blocks
from bot.thingspace.ids import DeviceId
from commands.context import Deps

__all__ = ["run_diag"]


def run_diag(deps: Deps, device_id: DeviceId, payload: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    diagnostics = deps.thingspace.extended_diagnostics(device_id)
    body: list[dict[str, Any]] = [blocks.header(f"Diagnostics · {device_id.masked()}")]
    for name, values in diagnostics.categories.items():
        if not values:
            continue
        pairs = [(k, v or "—") for k, v in values.items()]
        body.append(blocks.section(f"*{name}*"))
        for i in range(0, len(pairs), 10):
            body.append(blocks.fields(pairs[i : i + 10]))
    return f"Diagnostics for {device_id.masked()}", blocks.limit_blocks(body)
