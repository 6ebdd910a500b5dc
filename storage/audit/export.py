"""Streaming exports of the audit log: JSON lines and CSV, one row at a time (constant memory).

Both read the rows oldest first through one cursor and write each as it comes; nothing is held
but the current row. Ids are kept in full (exports are for auditors, and the files must be
access-controlled like the database); no secret is ever in a row (see ``storage.audit.events``).

* **JSON lines** (``--format json``): one object per line, keys sorted, exactly the hashed row
  plus ``prev_hash`` and ``hash`` (``storage.audit.events.export_line``), so an auditor can
  recompute every hash from the file alone. ``targets`` is a list, ``detail`` an object.
* **CSV** (``--format csv``): a header, then one line per row; ``targets`` joined by spaces,
  ``detail`` as compact JSON. For spreadsheets: a text cell that starts with ``= + - @`` or a
  tab/CR gets a leading ``'`` so a spreadsheet shows it instead of running it as a formula
  (CSV injection). Use JSON lines to re-verify hashes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, Final, TextIO

from storage.audit.events import export_line

__all__ = ["CSV_HEADER", "write_csv", "write_jsonl"]

CSV_HEADER: Final = (
    "id",
    "at",
    "actor",
    "channel",
    "verb",
    "targets",
    "reason",
    "outcome",
    "request_id",
    "detail",
    "prev_hash",
    "hash",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def write_jsonl(rows: Iterable[tuple[Any, ...]], out: TextIO) -> int:
    """Write *rows* (stored columns) as JSON lines; returns how many."""
    count = 0
    for columns in rows:
        out.write(export_line(columns))
        out.write("\n")
        count += 1
    return count


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def write_csv(rows: Iterable[tuple[Any, ...]], out: TextIO) -> int:
    """Write *rows* (stored columns) as CSV with a header; returns how many rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    count = 0
    for (
        rid,
        at,
        actor,
        channel,
        verb,
        targets,
        reason,
        outcome,
        request_id,
        detail,
        prev_hash,
        digest,
    ) in rows:
        writer.writerow(
            (
                rid,
                at,
                _cell(actor),
                _cell(channel),
                verb,
                _cell(" ".join(json.loads(targets))),
                _cell(reason),
                outcome,
                _cell(request_id),
                detail,
                prev_hash,
                digest,
            )
        )
        count += 1
    return count
