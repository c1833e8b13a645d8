"""End to end, a pipeline crash: SIGKILL mid-stream, a restart, no session lost and no kWh counted
twice (the setting is in :mod:`e2e_fleet`). A module of its own so that it runs beside the fleet
test when the suite runs on two workers."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psycopg
import pytest
from e2e_fleet import (
    PASSWORD,
    Truth,
    check_lake_agrees,
    fleet_args,
    running_platform,
    stored_sessions,
    wait_for_sessions,
)
from e2e_harness import (
    PrivateBroker,
    own_database,  # noqa: F401 - pg_dsn: a database of its own
    wait_until,
)

from control.records import SessionState

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=185)]  # measured: scripts/test.sh runs it first


@pytest.mark.timeout(480)
def test_pipeline_survives_sigkill(pg_dsn: str, broker: PrivateBroker, tmp_path: Path) -> None:
    """SIGKILL the pipeline while every session is open, start it again (same pipeline id and
    data directory: Bytewax recovery + the broker's persistent session), let the fleet finish.
    No session is lost and no kWh is counted twice; the lake agrees; SIGTERM then stops the
    pipeline with exit code 0. 20 chargers, no faults: every difference is the crash's."""
    prefix, chargers = "E2EK-", 20
    shards = fleet_args(prefix, tmp_path, chargers=chargers, seed=11, duration_s=175, faults=[])
    with running_platform(pg_dsn, broker, tmp_path / "platform", prefix, chargers) as platform:
        pipeline = platform.child("pipeline")
        sims = [platform.start_simulator(name, args, password=PASSWORD) for name, args in shards.items()]

        def open_sessions() -> int:
            rows = stored_sessions(pg_dsn, prefix, chargers)
            return sum(r.record.state is SessionState.OPEN and r.record.sample_count >= 2 for r in rows.values())

        wait_until(lambda: open_sessions() >= 20, timeout=120, what="20 sessions open with samples", interval=1.0,
                   on_timeout=platform.tails)
        assert pipeline.kill() == -signal.SIGKILL
        assert any((platform.data_dir / "recovery").glob("part-*.sqlite3")), "no recovery store"
        time.sleep(5)  # the bridge keeps publishing; the broker queues for the pipeline's session
        platform.start_pipeline()
        assert "MQTT source connected (session present: True;" in pipeline.log_text()

        for sim in sims:
            assert sim.wait(timeout=300) == 0, sim.tail()
        truth = Truth.load(tmp_path / "truth16.jsonl", tmp_path / "truth201.jsonl")
        confirmed = truth.confirmed
        assert len(confirmed) == len(truth.sessions) >= 25, "every session of a fault-free fleet is confirmed"
        stored = wait_for_sessions(pg_dsn, prefix, chargers, set(confirmed))
        assert pipeline.stop() == 0, pipeline.tail()
        assert "pipeline stopped" in pipeline.log_text()

        assert set(stored) == set(confirmed), "a session was lost or invented by the crash"
        with psycopg.connect(pg_dsn) as conn:
            days: dict[str, float] = dict(conn.execute("select session_id, sum(energy_wh) from session_day_energy"
                                     " where starts_with(charger_id, %s) group by 1", (prefix,)).fetchall())
        for sid, s in confirmed.items():
            r = stored[sid].record
            assert (r.state, r.flags) == (SessionState.CLOSED, ()), (sid, r)
            assert r.energy_wh == pytest.approx(s["energy_wh"], rel=0.001), (sid, r.energy_wh, s)
            assert r.energy_wh == pytest.approx(s["meter_stop_wh"] - s["meter_start_wh"], abs=0.01), sid
            assert days[sid] == r.energy_wh, f"{sid}: the day rows add up to {days[sid]}, not {r.energy_wh}"
        check_lake_agrees(pg_dsn, platform.data_dir, prefix, stored)
        print(f"[e2e] {len(confirmed)} sessions survived the crash: {json.dumps(sorted(confirmed))[:200]}")
