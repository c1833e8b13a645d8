"""The lake sink's partition: one open writer per lake in a process (Bytewax 0.21 builds it again
when a process resumes from a recovery snapshot, without closing the first one)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from control import contract as c
from pipelines.sinks import LakeSink
from warehouse.analytics import LakeLockedError, ParquetLake

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def _sink(tmp_path: Path) -> LakeSink:
    return LakeSink(tmp_path / "lake", tmp_path / "analytics.duckdb", clock=lambda: NOW,
                    journal_dir=tmp_path / "journal")


def test_a_second_partition_in_the_same_process_replaces_the_first(tmp_path: Path) -> None:
    sink = _sink(tmp_path)
    first = sink.build_part("lake", "lake", None)
    sample = c.MeterSample("CP-1", 1, NOW, energy_wh=1_000.0, received_at=NOW)
    first.write_batch([sample])  # buffered (and journaled), not yet in a file
    second = sink.build_part("lake", "lake", None)  # would be LakeLockedError without the hand-over
    with pytest.raises(RuntimeError, match="closed lake partition"):
        first.write_batch([sample])
    second.write_batch([c.MeterSample("CP-1", 1, NOW.replace(minute=1), energy_wh=1_010.0, received_at=NOW)])
    second.close()
    first.close()  # closing twice is harmless
    files = str(tmp_path / "lake" / "meter_samples" / "**" / "*.parquet")  # every row landed, the first one's too
    with duckdb.connect() as con:
        counted = con.execute("select count(*), count(distinct ts) from read_parquet(?)", [files]).fetchall()
    assert counted == [(2, 2)]


def test_another_process_holding_the_lake_is_still_refused(tmp_path: Path) -> None:
    holder = ParquetLake(tmp_path / "lake")  # not a partition: stands for another process's writer
    try:
        with pytest.raises(LakeLockedError):
            _sink(tmp_path).build_part("lake", "lake", None)
    finally:
        holder.close()
