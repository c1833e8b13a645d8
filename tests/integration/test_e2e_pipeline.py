"""End to end, the fleet: 100 simulated chargers with faults on, through every real process, checked
against the simulator's ground truth (the setting is in :mod:`e2e_fleet`)."""

from __future__ import annotations

import collections
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from e2e_fleet import (
    ERROR_CODES,
    INTERVAL_S,
    LONG_OFFLINE_S,
    MALFORMED_SIGNATURE,
    PASSWORD,
    SHORT_OFFLINE_S,
    Truth,
    check_energy,
    check_lake_agrees,
    expected_stop_reason,
    fleet_args,
    running_platform,
    ts,
    wait_for_sessions,
)
from e2e_harness import (
    PrivateBroker,
    own_database,  # noqa: F401 - pg_dsn: a database of its own
)

from control.records import QualityFlag, SessionState
from ingest.sim.faults import FaultCode
from warehouse import queries

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=195)]  # measured: scripts/test.sh runs it first


@pytest.mark.timeout(480)
def test_simulated_fleet_end_to_end(pg_dsn: str, broker: PrivateBroker, tmp_path: Path) -> None:
    """100 chargers (50 OCPP 1.6 DC + 50 OCPP 2.0.1 AC, 150 connectors, one session each) with
    faults on: register resets, duplicated frames, malformed frames, offline periods (some long
    enough for 1.6 samples to arrive > 2 min late), hardware errors. Nothing the CSMS confirmed
    is missing, nothing is invented, every clean session's energy is within 0.1 % of what the
    meter counted, every fault is classified on the session it hit, and the DuckDB lake agrees
    with TimescaleDB. About 4 minutes: the simulation itself runs 190 s of real time."""
    prefix, chargers = "E2EF-", 100
    faults = ["--register-reset-prob", "0.15", "--duplicate-prob", "0.03", "--malformed-rate", "3",
              "--offline-rate", "3", "--offline-mean", "140", "--error-rate", "1", "--error-mean", "60",
              "--error-codes", ",".join(ERROR_CODES)]
    shards = fleet_args(prefix, tmp_path, chargers=chargers, seed=114, duration_s=190, faults=faults)
    with running_platform(pg_dsn, broker, tmp_path / "platform", prefix, chargers) as platform:
        sims = [platform.start_simulator(name, args, password=PASSWORD) for name, args in shards.items()]
        for sim in sims:
            assert sim.wait(timeout=300) == 0, sim.tail()
        truth = Truth.load(tmp_path / "truth16.jsonl", tmp_path / "truth201.jsonl")
        confirmed = truth.confirmed
        assert len(confirmed) >= 100, f"only {len(confirmed)} confirmed sessions: the fleet did not run"
        malformed = [f for f in truth.faults if f["code"] == FaultCode.MALFORMED]
        stored = wait_for_sessions(pg_dsn, prefix, chargers, set(confirmed), dead_letters=len(malformed))
        # SIGTERM: a clean stop that writes the lake's buffered rows.
        assert platform.child("pipeline").stop() == 0, platform.child("pipeline").tail()

        # Nothing missing, nothing invented (a duplicated StartTransaction is not a second session).
        all_truth = {Truth.sid(s) for s in truth.sessions}
        assert set(confirmed) <= set(stored)
        assert not set(stored) - all_truth, f"sessions the fleet never had: {sorted(set(stored) - all_truth)}"

        counts: collections.Counter[str] = collections.Counter()
        for sid, s in confirmed.items():
            r = stored[sid].record
            assert (r.state, r.stop_reason) == (SessionState.CLOSED, expected_stop_reason(s)), (sid, r, s)
            check_energy(truth, s, r)
            flags = set(r.flags)
            if truth.clean(s):
                assert not flags, (sid, flags, s)
                counts["clean"] += 1
            if truth.faults_of(s, FaultCode.REGISTER_RESET):
                assert QualityFlag.REGISTER_RESET in flags and not stored[sid].excluded, (sid, flags)
                counts["register_reset"] += 1
            if any(f["detail"].split()[0] in ("MeterValues", "TransactionEvent", "StopTransaction")
                   for f in truth.faults_of(s, FaultCode.DUPLICATE)):
                assert QualityFlag.DUPLICATE in flags, (sid, flags, truth.faults_of(s, FaultCode.DUPLICATE))
                counts["duplicate"] += 1
            backlog = truth.offline_backlog_s(s)
            if backlog is not None and backlog >= INTERVAL_S:
                # 2.0.1 marks queued events "offline"; 1.6 has only the delay to go by (> 2 min).
                if s["ocpp_version"] == "2.0.1" or backlog >= LONG_OFFLINE_S:
                    assert QualityFlag.REPLAYED_OFFLINE in flags, (sid, flags, backlog, s)
                    counts[f"replayed_offline_{s['ocpp_version']}"] += 1
                elif backlog <= SHORT_OFFLINE_S:
                    assert QualityFlag.REPLAYED_OFFLINE not in flags, (sid, flags, backlog, s)
                    counts["offline_not_late_1.6"] += 1
            if truth.faults_of(s, *ERROR_CODES):
                counts["hardware_error"] += 1  # closed with the charger's reason: checked above
        # The seed gives every kind of fault at least once (a change of seed must keep it so).
        for kind in ("clean", "register_reset", "duplicate", "replayed_offline_2.0.1", "replayed_offline_1.6",
                     "hardware_error"):
            assert counts[kind] >= 1, f"the run exercised no {kind!r} session: {dict(counts)}"
        assert counts["clean"] >= 40, dict(counts)

        with psycopg.connect(pg_dsn) as conn:
            # Hardware errors: a Faulted status on the connector at the fault's time (1.6 names the code).
            # (A charger offline at that moment reports its status only on reconnecting, stamped then.)
            for fault in (f for f in truth.faults if f["code"] in ERROR_CODES
                          and not any(a <= ts(f["ts"]) <= b for a, b in truth.offline_windows(f["charger_id"]))):
                row = conn.execute(
                    "select error_code from status_events where charger_id = %s and connector_id = %s"
                    " and status = 'Faulted' and ts = %s", (fault["charger_id"], fault["connector_id"],
                                                            ts(fault["ts"]))).fetchone()
                assert row is not None, f"no Faulted status for {fault}"
                if int(fault["charger_id"].removeprefix(prefix)) <= chargers // 2:  # the 1.6 shard
                    assert row[0] == fault["code"], (fault, row)
            # Raw samples: each on its session's connector, with the session's id.
            orphans = conn.execute(
                "select count(*) from meter_samples where starts_with(charger_id, %s) and transaction_id is not null"
                " and (session_id is null or connector_id = 0)", (prefix,)).fetchone()
            assert orphans == (0,), "samples stored without their session or on connector 0"
            # Malformed frames: one dead letter each, from the bridge, with the raw frame.
            letters = queries.recent_dead_letters(conn, datetime(2000, 1, 1, tzinfo=UTC), limit=10_000)
        ours = [d for d in letters if (d.charger_id or "").startswith(prefix)]
        got = collections.Counter(
            (d.charger_id, next((k for k, sig in MALFORMED_SIGNATURE.items() if sig in d.raw), d.reason))
            for d in ours)
        sent = collections.Counter((f["charger_id"], f["detail"]) for f in malformed)
        assert sum(sent.values()) >= 5 and all(d.source == "bridge" for d in ours)
        assert got == sent, f"dead letters {got - sent} not sent, malformed frames {sent - got} not stored"

        check_lake_agrees(pg_dsn, platform.data_dir, prefix, stored)
        print(f"[e2e] {len(confirmed)} confirmed sessions, {sum(sent.values())} malformed frames, {dict(counts)}")
