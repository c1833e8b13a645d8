"""Load management end to end: simulated chargers, bridge, Mosquitto, pipeline, and back.

A site with a 40 A main breaker and a metered building load that swings, three simulated AC
chargers with EVs arriving, a rule, a mode switch and an operator limit during the run. The
stored decisions never add up past the breaker, every setpoint was accepted and obeyed, and the
audit log explains each one (see ``site_run.check_site_run``). The mode switch shows up in the
chargers' measured current; the time it took is printed (measured, not asserted: the figure
belongs to ``bench/site_run.py`` and docs/benchmarks.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from e2e_harness import (
    Platform,
    PrivateBroker,
    own_database,  # noqa: F401 - pg_dsn: a database of its own
    register_chargers,
    wait_until,
)
from site_run import LoadSwinger, check_site_run, iter_chargers, save_site, site_mapping

from warehouse import control_store

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=45)]  # measured: scripts/test.sh runs it first

PASSWORD = "e2e-control-password-1"
SITE = "ctl-site"
MAIN_A = 40.0


def _draws(dsn: str, charger: str, since: datetime) -> list[tuple[datetime, float]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select bridge_received_at, greatest(current_l1_a, current_l2_a, current_l3_a, current_a)"
            " from meter_samples where charger_id = %s and bridge_received_at > %s order by bridge_received_at",
            (charger, since)).fetchall()
    return [(ts, float(amps)) for ts, amps in rows if amps is not None]


def _limit(dsn: str, charger: str) -> tuple[datetime, float, str] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select ts, new_limit_a, reason from control_decisions where charger_id = %s"
                           " order by ts desc limit 1", (charger,)).fetchone()
    return None if row is None else (row[0], float(row[1]), row[2])


@pytest.mark.timeout(300)
def test_a_load_managed_site_keeps_its_limits_end_to_end(pg_dsn: str, broker: PrivateBroker, tmp_path: Path) -> None:
    prefix, count = "CTL-", 3
    chargers = list(iter_chargers(prefix, count))
    register_chargers(pg_dsn, chargers, PASSWORD, site_id=SITE, scrypt_n=2**11)
    save_site(pg_dsn, site_mapping(SITE, chargers, main_a=MAIN_A))
    with Platform(pg_dsn, broker.endpoint, tmp_path / "platform", prefix, broker=broker) as platform:
        platform.start_pipeline()
        platform.start_bridge()
        hems = LoadSwinger(broker.endpoint, SITE, low_a=4, high_a=14, swing_every_s=6).start()
        try:
            platform.start_simulator("sim", [
                "--chargers", str(count), "--id-prefix", prefix, "--dc", "0", "--single-phase-fraction", "0",
                "--two-connector-fraction", "0", "--v201-fraction", "0.34", "--seed", "5", "--speed", "1",
                "--meter-interval", "1", "--first-arrival-max", "3", "--dwell-min", "600", "--dwell-max", "900",
                "--sessions", "1", "--reaction-delay", "0.5", "--ramp", "20", "--duration", "120",
            ], password=PASSWORD)
            # Every connector gets a limit once its EV is plugged in.
            wait_until(lambda: all(_limit(pg_dsn, c) for c in chargers), timeout=60, what="a limit for every charger")
            time.sleep(5)

            # Boost on one charger: the others are lowered (decreases first) and draw less.
            others = chargers[1:]
            before = {c: _limit(pg_dsn, c) for c in others}
            switched_at = datetime.now(UTC)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                result = control_store.set_mode(conn, chargers[0], 1, "boost", requested_by="owner@test",
                                                now=switched_at, confirmed=True)
            assert result.accepted, result.message

            def lowered() -> dict[str, float] | None:
                now = {c: _limit(pg_dsn, c) for c in others}
                if all(now[c] and before[c] and now[c][0] > before[c][0] and now[c][1] < before[c][1]  # type: ignore
                       for c in others):
                    return {c: now[c][1] for c in others}  # type: ignore[index]
                return None

            new_limits = wait_until(lowered, timeout=20, what="the other chargers' lower limits after Boost")
            reaction = {}
            for charger, limit in new_limits.items():
                obeyed = wait_until(lambda c=charger, lim=limit: next(
                    (ts for ts, amps in _draws(pg_dsn, c, switched_at) if amps <= lim + 1.0), None),
                    timeout=30, what=f"{charger} drawing at most its new {limit} A")
                reaction[charger] = (obeyed - switched_at).total_seconds()
            print(f"[e2e-control] Boost on {chargers[0]}: others lowered to {new_limits}; measured current "
                  f"under the new limit after {reaction} s")
            assert _limit(pg_dsn, chargers[0])[2] in ("Boost", "Limited by site")  # type: ignore[index]

            # An operator limit: the whole site's EVs at 12 A for 15 s.
            op_start = datetime.now(UTC)
            op_end = op_start + timedelta(seconds=15)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                control_store.set_operator_limit(conn, "grid-e2e", site_id=SITE, limit_a=12.0, starts_at=op_start,
                                                 ends_at=op_end, source="test")
            wait_until(lambda: sum(_limit(pg_dsn, c)[1] for c in chargers) <= 12.0,  # type: ignore[index]
                     timeout=15, what="the EV limits under the 12 A operator limit")
            time.sleep(max(0.0, (op_end - datetime.now(UTC)).total_seconds()) + 8)
        finally:
            hems.stop()
        time.sleep(3)  # the last results and compliance checks land

    report = check_site_run(pg_dsn, SITE, main_a=MAIN_A,
                            operator_limits=[(op_start + timedelta(seconds=2), op_end, 12.0)])
    print(f"[e2e-control] {report.summary()}")
    assert not report.problems, report.problems
    assert report.decisions >= 6 and report.commands_accepted >= report.decisions - 3
    assert report.compliance["compliant"] + report.compliance["late"] >= 3
