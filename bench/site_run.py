"""A load-managed site for hours of simulated time (issue 5's "done when"), measured.

    .venv/bin/python bench/site_run.py                              # 2 simulated hours at 60x: ~2.5 min
    .venv/bin/python bench/site_run.py --sim-hours 0.5 --speed 30 --chargers 4 --json var/site.json

What runs (all real, all local): a throw-away database, a private Mosquitto, ``flowbank
bridge``, ``flowbank pipeline`` and ``flowbank simulate`` (AC chargers, EVs arriving at random,
charging along their curves, following SetChargingProfile after a reaction delay), through
``tests/integration/e2e_harness.py``. The site (``tests/integration/site_run.py``): one main
breaker (``--main-a``, metered), the chargers at 32 A, two rules (an evening-style cap in a
window and an Eco pause outside an off-peak window, both placed in the run's real time), a HEMS
publishing a building load that swings every few seconds, random mode switches (Boost
confirmed) and one operator limit while it runs.

Afterwards ``check_site_run`` reads the stored rows: at every decision the limits in force plus
the building load stay under the breaker minus the margin (and under the operator limit while
it holds), no setpoint was violated or refused, and every decision has its reason, binding
constraint, inputs and command outcome. Per mode switch it also measures, on the platform's
clock: switch -> the first decision that changes the switched connector's limit (switches that
change nothing, e.g. on a connector without an EV, are not counted), -> the acceptance of the
lowered profiles of that decision (``command_results``), -> the first meter sample at or under
the new limit (``bridge_received_at``) of each connector it lowered. Exit status 1 if any check
failed.

Simulated time runs ``--speed`` times faster than the platform's clock; decisions, command
results and the checks use the platform's clock, so this is fair for the controller. The
simulator's own reaction delay (1.5 simulated s by default) shrinks with the speed: the
latencies measured here are the platform's, the charger's hardware adds its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))
from e2e_harness import Platform, PrivateBroker, register_chargers  # noqa: E402
from pipeline_bench import create_database, drop_database, machine  # noqa: E402
from site_run import LoadSwinger, check_site_run, iter_chargers, save_site, site_mapping  # noqa: E402

from flowbank.config import read_settings  # noqa: E402
from warehouse import control_store  # noqa: E402

PASSWORD = "bench-site-password-1"  # noqa: S105 - throw-away chargers in a throw-away database
SITE = "bench-site"


def _rules(start: datetime) -> list[dict[str, Any]]:
    """An evening-style cap for a minute of real time, and an Eco off-peak pause, in UTC."""
    def hhmmss(t: datetime) -> str:
        return f"{t:%H:%M:%S}"

    cap_from, cap_to = start + timedelta(seconds=40), start + timedelta(seconds=100)
    return [
        {"id": "cap", "name": "Limit to 10 A in the evening window", "action": {"kind": "cap_current", "current_a": 10},
         "condition": {"schedule": {"zone": "UTC", "start": hhmmss(cap_from), "end": hhmmss(cap_to)}}},
        {"id": "eco-off-peak", "name": "Off-peak window for Eco", "action": {"kind": "pause"},
         "condition": {"modes": ["eco"], "outside": True,
                       "schedule": {"zone": "UTC", "start": hhmmss(start + timedelta(seconds=20)),
                                    "end": hhmmss(start + timedelta(seconds=200))}}},
    ]


def _percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:.0f} ms / p99 {p99 * 1000:.0f} ms / max {ordered[-1] * 1000:.0f} ms"


def _switch_latencies(dsn: str, switches: list[tuple[datetime, str]]) -> dict[str, list[float]]:
    """Per switch: -> first decision; for connectors lowered by it: -> profile accepted, -> obeyed."""
    out: dict[str, list[float]] = {"decision": [], "accepted": [], "obeyed": []}
    with psycopg.connect(dsn) as conn:
        for at, charger in switches:
            # The decision that changed the switched connector's own limit (a switch on a connector
            # without an EV, or one that leaves its limit as it was, is not counted).
            first = conn.execute("select min(ts) from control_decisions where site_id = %s and charger_id = %s"
                                 " and ts >= %s and ts < %s + interval '10 s'", (SITE, charger, at, at)).fetchone()
            if first is None or first[0] is None:
                continue
            out["decision"].append((first[0] - at).total_seconds())
            lowered = conn.execute(
                """select d.charger_id, d.connector_id, d.new_limit_a, d.command_id from control_decisions d
                   where d.site_id = %s and d.ts >= %s and d.ts < %s + interval '2 s'
                     and d.old_limit_a is not null and d.new_limit_a < d.old_limit_a""",
                (SITE, first[0], first[0])).fetchall()
            for charger, connector, limit, command_id in lowered:
                accepted = conn.execute("select min(ts) from command_results where command_id = %s"
                                        " and outcome = 'accepted'", (command_id,)).fetchone()
                if accepted and accepted[0]:
                    out["accepted"].append((accepted[0] - at).total_seconds())
                obeyed = conn.execute(
                    "select min(bridge_received_at) from meter_samples where charger_id = %s and connector_id = %s"
                    " and bridge_received_at > %s and bridge_received_at < %s + interval '30 s'"
                    " and greatest(current_l1_a, current_l2_a, current_l3_a, current_a) <= %s + 1.0",
                    (charger, connector, first[0], first[0], limit)).fetchone()
                if obeyed and obeyed[0]:
                    out["obeyed"].append((obeyed[0] - at).total_seconds())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim-hours", type=float, default=2.0)
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--chargers", type=int, default=6)
    parser.add_argument("--main-a", type=float, default=63.0)
    parser.add_argument("--switch-every", type=float, default=6.0, help="real seconds between mode switches")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the database and the work directory")
    args = parser.parse_args()
    real_s = args.sim_hours * 3600 / args.speed
    settings = read_settings()
    admin = settings.pg_dsn.reveal()
    dsn, db_name = create_database(admin)
    workdir = Path(tempfile.mkdtemp(prefix="flowbank-site-run-"))
    prefix = f"SR{secrets.token_hex(2).upper()}-"
    chargers = list(iter_chargers(prefix, args.chargers))
    rng = random.Random(args.seed)
    print(f"[site-run] {machine()}; load average {os.getloadavg()[0]:.1f}; {args.sim_hours:g} simulated hours at "
          f"{args.speed:g}x = {real_s:.0f} s; {args.chargers} chargers on {args.main_a:g} A")
    switches: list[tuple[datetime, str]] = []
    ok = False
    try:
        register_chargers(dsn, chargers, PASSWORD, site_id=SITE, scrypt_n=2**11)
        start = datetime.now(UTC)
        save_site(dsn, site_mapping(SITE, chargers, main_a=args.main_a), rules=_rules(start))
        with PrivateBroker(workdir / "broker") as broker, \
                Platform(dsn, broker.endpoint, workdir / "platform", prefix, broker=broker, quiet=True) as plat:
            plat.start_pipeline()
            plat.start_bridge()
            hems = LoadSwinger(broker.endpoint, SITE, low_a=5, high_a=args.main_a * 0.45, swing_every_s=4,
                               seed=args.seed).start()
            sim = plat.start_simulator("sim", [
                "--chargers", str(args.chargers), "--id-prefix", prefix, "--dc", "0", "--single-phase-fraction",
                "0.2", "--two-connector-fraction", "0", "--v201-fraction", "0.5", "--seed", str(args.seed),
                "--speed", str(args.speed), "--meter-interval", "10", "--first-arrival-max", "600",
                "--arrival-mean", "1200", "--dwell-min", "1200", "--dwell-max", "5400",
                "--duration", str(real_s)], password=PASSWORD)
            op_at = start + timedelta(seconds=real_s * 0.6)
            op_end = op_at + timedelta(seconds=min(30.0, real_s * 0.15))
            op_set = False
            deadline = time.monotonic() + real_s
            while time.monotonic() < deadline and sim.running():
                time.sleep(args.switch_every)
                now = datetime.now(UTC)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    busy = [row[0] for row in conn.execute(
                        "select charger_id from live_state where charger_id = any(%s) and status in"
                        " ('Charging', 'Paused', 'Waiting for vehicle') order by charger_id", (chargers,))]
                    charger = rng.choice(busy or chargers)  # switches where an EV is plugged in matter
                    current = control_store.current_mode(conn, charger, 1).value
                    mode = rng.choice([m for m in ("standard", "eco", "boost") if m != current])
                    result = control_store.set_mode(conn, charger, 1, mode, requested_by="bench", now=now,
                                                    confirmed=True)
                    if result.accepted:
                        switches.append((now, charger))
                    if not op_set and now >= op_at:
                        control_store.set_operator_limit(conn, "bench-grid", site_id=SITE, limit_a=20.0,
                                                         starts_at=now, ends_at=op_end, source="bench")
                        op_at, op_set = now, True
            hems.stop()
            time.sleep(5)
        report = check_site_run(dsn, SITE, main_a=args.main_a,
                                operator_limits=[(op_at + timedelta(seconds=2), op_end, 20.0)] if op_set else [])
        latencies = _switch_latencies(dsn, switches)
        print(f"[site-run] {report.summary()}")
        print(f"[site-run] {len(switches)} mode switches; switch -> decision {_percentiles(latencies['decision'])};"
              f" -> lowered profile accepted {_percentiles(latencies['accepted'])};"
              f" -> measured current under the new limit {_percentiles(latencies['obeyed'])}")
        for problem in report.problems:
            print(f"[site-run] PROBLEM: {problem}")
        ok = not report.problems
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "machine": machine(), "platform": platform.platform(), "sim_hours": args.sim_hours,
                "speed": args.speed, "chargers": args.chargers, "main_a": args.main_a,
                "decisions": report.decisions, "accepted": report.commands_accepted,
                "other_outcomes": dict(report.commands_other), "compliance": dict(report.compliance),
                "worst_headroom_a": report.worst_headroom_a, "problems": report.problems,
                "switches": len(switches), "latency_s": latencies}, indent=2))
    finally:
        if not args.keep:
            drop_database(admin, db_name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
