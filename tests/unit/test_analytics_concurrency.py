"""Several reader processes query the views while the writer process keeps appending Parquet
files, compacting and purging: no lock error, no half file, and new rows show up while the
writer is still running (the DuckDB file is never held read-write by anyone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flowbank.config import PROJECT_ROOT

WRITER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from control.contract import MeterSample
from control.records import SessionRecord, SessionState
from warehouse.analytics import ParquetLake, to_arrow

base = Path(sys.argv[1])
T0 = datetime.now(UTC).replace(microsecond=0)
with ParquetLake(base / "lake", views_db=base / "analytics.duckdb", grace=timedelta(seconds=1)) as lake:
    (base / "writer.ready").touch()
    deadline = time.monotonic() + 10
    while len(list(base.glob("reader-*.started"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    started, batches, compactions, purged = time.monotonic(), 0, 0, 0
    while (batches < 12 or purged == 0) and time.monotonic() - started < 8:
        samples = [MeterSample("CP1", 1, T0 + timedelta(seconds=batches * 50 + i), power_w=7000.0) for i in range(50)]
        lake.append("meter_samples", to_arrow("meter_samples", samples))
        session = SessionRecord("s1", "CP1", 1, "t1", T0, SessionState.OPEN, batches + 1, 10.0 * batches)
        lake.append("sessions", to_arrow("sessions", [session]))
        batches += 1
        if batches % 4 == 0:
            for day in lake.days("meter_samples"):
                compactions += lake.compact("meter_samples", day) is not None
        purged += len(lake.purge())
        time.sleep(0.03)
json.dump({"rows": batches * 50, "revision": batches, "compactions": compactions, "purged": purged}, sys.stdout)
(base / "writer.done").touch()
"""

READER = """
import json, sys, time
from pathlib import Path
from warehouse.analytics import AnalyticsReader, open_readonly

base, name = Path(sys.argv[1]), sys.argv[2]
db = base / "analytics.duckdb"
reader = AnalyticsReader(db)  # long-lived, as a dashboard holds it
query = "select (select count(*) from meter_samples), (select coalesce(max(revision), 0) from sessions)"
seen, done_seen = [], False
while True:
    done = (base / "writer.done").exists()
    for fresh in (True, False):
        if fresh:
            with open_readonly(db) as con:  # a new process-like connection each time, as flowbank sql does
                seen.append(con.execute(query).fetchone())
        else:
            seen.append(reader.cursor().execute(query).fetchone())
    if not (base / f"{name}.started").exists():
        (base / f"{name}.started").touch()
    if done:
        break
    time.sleep(0.01)
json.dump({"seen": seen}, sys.stdout)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen([sys.executable, "-W", "error", "-c", code, *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_readers_query_while_the_writer_appends_compacts_and_purges(tmp_path: Path) -> None:
    began = time.monotonic()
    writer = _spawn(WRITER, str(tmp_path))
    processes = [writer]
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "writer.ready").exists():
            assert writer.poll() is None, writer.communicate()[1]
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.02)
        readers = [_spawn(READER, str(tmp_path), f"reader-{i}") for i in range(2)]
        processes += readers
        results = []
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, 18 - (time.monotonic() - began)))
            assert process.returncode == 0, err
            assert "lock" not in err.lower() and "Traceback" not in err, err
            results.append(json.loads(out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    final, *reads = results
    assert final["compactions"] >= 2 and final["purged"] >= 1 and final["rows"] >= 600
    for read in reads:
        seen = [tuple(row) for row in read["seen"]]
        counts = [rows for rows, _ in seen]
        assert counts == sorted(counts), "a reader saw rows disappear"
        assert seen[-2:] == [(final["rows"], final["revision"])] * 2, "both connections, after the writer finished"
        during = {row for row in seen[:-2] if 0 < row[0] < final["rows"]}
        assert len(during) >= 3, f"new rows should show up while the writer runs: {sorted(during)}"
    print(final, [len(read["seen"]) for read in reads])  # shown with pytest -s
    assert time.monotonic() - began < 20
