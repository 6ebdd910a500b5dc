"""Exports stream: exporting 200,000 rows through the CLI holds only a few rows in memory at a time."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli.main import main
from storage.audit.log import AuditLog
from storage.schema import open_database
from tests.helpers.audit import START, event

ROWS = 200_000
#: Far below what holding the rows would take (200k rows of ~400 bytes as text alone: ~80 MB).
PEAK_LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "tsbot.db"
    db = open_database(path, synchronous="NORMAL")
    log = AuditLog(db)
    kinds = [event(i, at=START + timedelta(seconds=i)) for i in range(100)]
    batch = 20_000
    for _ in range(ROWS // batch):
        log.record_many(kinds * (batch // len(kinds)))
    assert log.count() == ROWS
    db.conn.close()
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "rows", "extra"),
    [
        ("json", ROWS, []),
        # CSV through a filter (one actor of three): the same cursor, a third of the run time
        ("csv", 68_000, ["--actor", "U0ALICE"]),  # 34 of the 100 cycled events are hers
    ],
)
def test_export_memory_stays_bounded(
    big_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, rows: int, extra: list[str]
) -> None:
    """Peak Python memory while exporting stays under a few MB however many rows go out."""
    out = tmp_path / f"audit.{fmt}"
    tracemalloc.start()
    try:
        code = main(["audit", "export", "--format", fmt, "--db", str(big_db), "--output", str(out), *extra])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0
    assert f"exported {rows} audit rows" in capsys.readouterr().err
    with out.open(encoding="utf-8") as written:
        lines = sum(1 for _ in written)
    assert lines == rows + (1 if fmt == "csv" else 0)
    assert peak < PEAK_LIMIT, f"peak {peak / 1e6:.1f} MB"
    print(
        f"\n{fmt} export of {rows} rows: peak traced memory {peak / 1e6:.2f} MB, file {out.stat().st_size / 1e6:.0f} MB"
    )
