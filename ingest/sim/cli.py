"""``flowbank simulate``: argument parsing and the async entry point.

Times given as *simulated* seconds run ``--speed`` times faster in real time. The password is
taken from ``--password`` / ``--password-prefix`` or, better (not visible in ``ps``), from the
``FLOWBANK_SIM_PASSWORD`` environment variable; it is never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import UTC, datetime

from ingest.sim.clock import ScaledClock, parse_ts
from ingest.sim.faults import ERROR_CODES, FaultConfig
from ingest.sim.fleet import FleetConfig, run_fleet
from ingest.sim.plan import Behaviour, FleetMix
from ingest.sim.runtime import LinkSettings
from ingest.sim.station import StationOptions
from ingest.sim.truth import JsonLinesFile

PASSWORD_ENV = "FLOWBANK_SIM_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
CHAOS = {"offline_rate": 0.5, "error_rate": 0.2, "register_reset_prob": 0.05, "duplicate_prob": 0.01,
         "malformed_rate": 1.0, "slow_reply_prob": 0.02, "no_reply_prob": 0.01}


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _positive(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--chargers", type=int, default=4, help="number of simulated chargers (default 4)")
    fleet.add_argument("--v201-fraction", type=_fraction, default=0.5, help="share speaking OCPP 2.0.1")
    fleet.add_argument("--two-connector-fraction", type=_fraction, default=0.5, help="share of AC with 2 connectors")
    fleet.add_argument("--single-phase-fraction", type=_fraction, default=0.25, help="share of AC single-phase")
    fleet.add_argument("--dc", type=int, default=1, help="how many chargers are 50 kW DC (default 1)")
    fleet.add_argument("--id-prefix", default="SIM-", help="charger ids are <prefix><4 digits> (default SIM-)")
    fleet.add_argument("--first-index", type=int, default=1)

    auth = parser.add_argument_group("authentication (Basic, user = charger id)")
    auth.add_argument("--password", default=None, help=f"shared password (default: ${PASSWORD_ENV})")
    auth.add_argument("--password-prefix", default=None, help="password = <prefix><charger id>")
    auth.add_argument("--no-auth", action="store_true", help="send no Authorization header")

    sim = parser.add_argument_group("simulation")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--speed", type=_positive, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--start", default=None, help="simulated start time, ISO 8601 UTC (default: now)")
    sim.add_argument("--duration", type=_positive, default=None, help="stop after this many real seconds")
    sim.add_argument("--sessions", type=int, default=None, help="EV visits per connector, then exit")
    sim.add_argument("--arrival-mean", type=float, default=1800.0, help="mean idle gap between EVs (sim s)")
    sim.add_argument("--first-arrival-max", type=float, default=300.0, help="first EV within (sim s)")
    sim.add_argument("--dwell-min", type=float, default=1200.0, help="shortest transaction (sim s)")
    sim.add_argument("--dwell-max", type=float, default=14400.0, help="longest transaction (sim s)")
    sim.add_argument("--pause-probability", type=_fraction, default=0.1, help="EV pauses mid-session")
    sim.add_argument("--id-tags", type=_csv, default=None, help="comma-separated RFID tags to use")
    sim.add_argument("--meter-interval", type=float, default=10.0,
                     help="MeterValueSampleInterval in sim seconds (default 10, min 0.01)")
    sim.add_argument("--heartbeat", type=int, default=300, help="heartbeat (s) until BootNotification sets it")
    sim.add_argument("--reaction-delay", type=float, default=1.5, help="profile reaction delay (sim s)")
    sim.add_argument("--ramp", type=float, default=10.0, help="current ramp in A/s (DC: x2 kW/s)")
    sim.add_argument("--ac-soc", action="store_true", help="also report SoC on AC (real AC EVs do not)")
    sim.add_argument("--truth", default="var/sim/truth.jsonl", help="ground-truth JSON-lines file (appended)")
    sim.add_argument("--response-timeout", type=_positive, default=30.0, help="wait for CSMS answers (real s)")
    sim.add_argument("--drain-timeout", type=float, default=5.0, help="flush queues at exit (real s)")
    sim.add_argument("--no-validate", action="store_true", help="skip schema validation of our own CALLs")
    sim.add_argument("--control-file", default=None,
                     help="JSON lines appended to this file are done as they arrive: external limits "
                          "(2.0.1 NotifyChargingLimit / ClearedChargingLimit), see ingest/sim/external.py")

    bench = parser.add_argument_group("benchmark")
    bench.add_argument("--rate", type=_positive, default=None,
                       help="flood: target periodic samples/s across all chargers (EVs stay plugged in)")

    faults = parser.add_argument_group("fault injection (rates per simulated hour)")
    faults.add_argument("--chaos", action="store_true", help="turn on every fault at a moderate level")
    faults.add_argument("--offline-rate", type=float, default=None, help="connection drops per charger-hour")
    faults.add_argument("--offline-mean", type=float, default=600.0, help="mean offline time (sim s)")
    faults.add_argument("--error-rate", type=float, default=None, help="hardware errors per connector-hour")
    faults.add_argument("--error-mean", type=float, default=300.0, help="mean Faulted time (sim s)")
    faults.add_argument("--error-codes", type=_csv, default=("GroundFailure", "OverCurrentFailure",
                                                             "HighTemperature"),
                        help=f"codes to draw from: {','.join(ERROR_CODES)}")
    faults.add_argument("--register-reset-prob", type=_fraction, default=None, help="per session")
    faults.add_argument("--duplicate-prob", type=_fraction, default=None, help="per outgoing CALL")
    faults.add_argument("--malformed-rate", type=float, default=None, help="broken frames per charger-hour")
    faults.add_argument("--slow-reply-prob", type=_fraction, default=None, help="per CSMS call")
    faults.add_argument("--slow-reply-s", type=float, default=10.0, help="delay of a slow reply (real s)")
    faults.add_argument("--no-reply-prob", type=_fraction, default=None, help="per CSMS call")


def _fault(args: argparse.Namespace, name: str) -> float:
    value = getattr(args, name)
    if value is not None:
        return float(value)
    return CHAOS[name] if args.chaos else 0.0


def config_from_args(args: argparse.Namespace, *, url: str, password: str | None) -> FleetConfig:
    """``password`` is the shared one (from the environment when not given); never logged."""
    if args.meter_interval < 0.01:
        raise SystemExit("--meter-interval must be >= 0.01")
    behaviour_kw = {"id_tags": args.id_tags} if args.id_tags else {}
    return FleetConfig(
        link=LinkSettings(url=url, password=None if args.no_auth else password,
                          password_prefix=None if args.no_auth else args.password_prefix,
                          validate=not args.no_validate, response_timeout_s=args.response_timeout),
        mix=FleetMix(chargers=args.chargers, v201_fraction=args.v201_fraction,
                     two_connector_fraction=args.two_connector_fraction,
                     single_phase_fraction=args.single_phase_fraction, dc_chargers=min(args.dc, args.chargers),
                     id_prefix=args.id_prefix, first_index=args.first_index),
        behaviour=Behaviour(arrival_mean_s=args.arrival_mean, first_arrival_max_s=args.first_arrival_max,
                            dwell_min_s=args.dwell_min, dwell_max_s=args.dwell_max,
                            pause_probability=args.pause_probability,
                            register_reset_probability=_fault(args, "register_reset_prob"),
                            sessions_per_connector=args.sessions, **behaviour_kw),
        faults=FaultConfig(offline_per_hour=_fault(args, "offline_rate"), offline_mean_s=args.offline_mean,
                           error_per_hour=_fault(args, "error_rate"), error_mean_s=args.error_mean,
                           error_codes=tuple(args.error_codes),
                           register_reset_probability=_fault(args, "register_reset_prob"),
                           duplicate_probability=_fault(args, "duplicate_prob"),
                           malformed_per_hour=_fault(args, "malformed_rate"),
                           slow_reply_probability=_fault(args, "slow_reply_prob"), slow_reply_s=args.slow_reply_s,
                           no_reply_probability=_fault(args, "no_reply_prob")),
        options=StationOptions(sample_interval_s=args.meter_interval, heartbeat_interval_s=args.heartbeat,
                               reaction_delay_s=args.reaction_delay, ramp_a_per_s=args.ramp, ac_soc=args.ac_soc),
        seed=args.seed,
        duration_s=args.duration,
        drain_timeout_s=args.drain_timeout,
        bench_rate=args.rate,
        control_file=args.control_file,
    )


def _password_for(args: argparse.Namespace) -> str | None:
    """The shared password: ``--password``, else the environment (``--password-prefix`` wins over both)."""
    if args.no_auth:
        return None
    return args.password if args.password is not None else os.environ.get(PASSWORD_ENV)


async def run(args: argparse.Namespace, *, url: str, stop: asyncio.Event) -> int:
    """Run the fleet against ``url`` (``ws://host:port/ocpp``; the charger id is appended)."""
    start = parse_ts(args.start) if args.start else datetime.now(UTC)
    password = _password_for(args)
    config = config_from_args(args, url=url, password=password)
    clock = ScaledClock(start, args.speed)
    truth = JsonLinesFile(args.truth)
    try:
        report = await run_fleet(config, clock=clock, truth=truth, stop=stop)
        if report.bench:
            truth(report.bench)
    finally:
        truth.close()
    summary = {"chargers": report.chargers, "booted": report.booted, "sessions": report.sessions,
               "truth": str(args.truth), **({"bench": report.bench} if report.bench else {})}
    print(json.dumps(summary), flush=True)  # the command's result, for scripts and benchmarks
    return 0 if report.booted > 0 else 1

