"""The ``flowbank`` command.

Each subcommand builds the settings once in :func:`main` and passes them down. Heavy modules
(the bridge, Bytewax, Streamlit) are imported only by the subcommand that needs them, so
``flowbank --help`` and ``flowbank services`` stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from control.settings import Settings, SettingsError, describe

Handler = Callable[[Settings, argparse.Namespace], int]


def _cmd_services(settings: Settings, args: argparse.Namespace) -> int:
    from flowbank.services import run_services

    return run_services(settings, check_only=args.check)


def _cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    for key, value in describe(settings).items():
        print(f"{key} = {value}")
    return 0


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from flowbank.runner import run_platform

    return run_platform(settings, args)


def _cmd_bridge(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.server import run_bridge

    return run_bridge(settings, reuse_port=args.reuse_port)


def _cmd_files(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.upload_server import run_upload_server

    return run_upload_server(settings, host=args.host, port=args.port)


def _cmd_chargers(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.chargers_cli import run as run_chargers

    return run_chargers(settings, args)


def _cmd_meter(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.building_meter import run_meter

    return run_meter(settings, args.config, once=args.once)


def _cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.building_meter import run_load

    return run_load(settings, args)


def _control_handler(command: str) -> Handler:
    def handler(settings: Settings, args: argparse.Namespace) -> int:
        from warehouse.control_cli import run as run_control

        return run_control(settings, command, args)

    return handler


def _cmd_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    from flowbank.dashboard_cmd import run as run_dashboard

    return run_dashboard(settings, args)


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.sim.cli import run as run_simulator

    url = args.url or f"ws://{settings.bridge_host}:{settings.bridge_port}/ocpp"

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_simulator(args, url=url, stop=stop)

    return asyncio.run(main())


def _lazy(module: str) -> Callable[[Settings, argparse.Namespace], int]:
    """A command whose module (and its heavy imports) loads only when that command runs."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        run: Callable[[Settings, argparse.Namespace], int] = importlib.import_module(module).run
        return run(settings, args)

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowbank", description="FlowBankOS: open EV-charging management.")
    parser.add_argument("--log-level", help="override FLOWBANK_LOG_LEVEL for this command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("services", help="provision and check PostgreSQL/TimescaleDB and Mosquitto, apply migrations")
    p.add_argument("--check", action="store_true", help="only check what runs where; provision and migrate nothing")
    p.set_defaults(handler=_cmd_services)

    p = sub.add_parser("settings", help="print the effective settings (secrets redacted)")
    p.set_defaults(handler=_cmd_settings)

    p = sub.add_parser("run", help="run the whole platform locally until Ctrl-C")
    p.add_argument("--chargers", type=int, default=10, help="number of simulated chargers (0 for none)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated clock speed factor for the demo chargers")
    p.add_argument("--no-dashboard", action="store_true",
                   help="do not start the dashboards (and their local sign-in provider)")
    p.add_argument("--oidc-port", type=int, default=9400, help="port of the dashboards' local OIDC provider")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("bridge", help="run the OCPP 1.6J/2.0.1 ingest bridge")
    p.add_argument("--reuse-port", action="store_true",
                   help="share the port with other bridge processes (SO_REUSEPORT) to scale out")
    p.set_defaults(handler=_cmd_bridge)

    p = sub.add_parser("files", help="receive diagnostics/log uploads from chargers (GetDiagnostics / GetLog)")
    p.add_argument("--host", help="listen address (default: FLOWBANK_BRIDGE_HOST)")
    p.add_argument("--port", type=int, help="listen port (default: FLOWBANK_UPLOAD_PORT, 8090)")
    p.set_defaults(handler=_cmd_files)

    p = sub.add_parser("pipeline", help="run the streaming dataflow (sessions, live state, warehouse) with recovery")
    from pipelines.run import add_arguments as add_pipeline_arguments

    add_pipeline_arguments(p)
    p.set_defaults(handler=_lazy("pipelines.run"))

    p = sub.add_parser("sql", help="query the analytics database (DuckDB over the Parquet lake), read-only")
    from warehouse.sql_cli import add_arguments as add_sql_arguments

    add_sql_arguments(p)
    p.set_defaults(handler=_lazy("warehouse.sql_cli"))

    p = sub.add_parser("maintain", help="housekeeping: retention of raw samples (drop_chunks), periodically")
    from warehouse.maintenance_cli import add_arguments as add_maintenance_arguments

    add_maintenance_arguments(p)
    p.set_defaults(handler=_lazy("warehouse.maintenance_cli"))

    p = sub.add_parser("dq", help="validate the latest warehouse batches (Great Expectations), store the results")
    from warehouse.dq_cli import add_arguments as add_dq_arguments  # no great_expectations import here

    add_dq_arguments(p)
    p.set_defaults(handler=_lazy("warehouse.dq_cli"))

    p = sub.add_parser("report", help="history exports: CSV, PDF, fleet, cost sharing, reimbursement, Parquet, costs")
    from reports.cli import add_arguments as add_report_arguments
    from reports.cli import add_history_arguments

    add_report_arguments(p)
    p.set_defaults(handler=_lazy("reports.cli"))

    p = sub.add_parser("history", help="generate a simulated year of history fast (for demos and benchmarks)")
    add_history_arguments(p)
    p.set_defaults(handler=_lazy("flowbank.history_gen"))

    p = sub.add_parser("notify", help="deliver alerts: notification centres, webhooks, e-mail, push (until Ctrl-C)")
    from pipelines.notifier import add_arguments as add_notify_arguments

    add_notify_arguments(p)
    p.set_defaults(handler=_lazy("pipelines.notifier"))

    p = sub.add_parser("chargers", help="manage the charger registry (Basic-auth credentials)")
    from ingest.chargers_cli import add_arguments as add_charger_arguments

    add_charger_arguments(p)
    p.set_defaults(handler=_cmd_chargers)

    p = sub.add_parser("simulate", help="run simulated OCPP chargers against a bridge")
    p.add_argument("--url", help="bridge base URL (default: ws://BRIDGE_HOST:BRIDGE_PORT/ocpp)")
    from ingest.sim.cli import add_arguments as add_sim_arguments

    add_sim_arguments(p)
    p.set_defaults(handler=_cmd_simulate)

    p = sub.add_parser("dashboard", help="run the Streamlit dashboard (with a local OIDC provider for sign-in)")
    from flowbank.dashboard_cmd import add_arguments as add_dashboard_arguments

    add_dashboard_arguments(p)
    p.set_defaults(handler=_cmd_dashboard)

    p = sub.add_parser("meter", help="read a building meter over Modbus TCP and publish its load until Ctrl-C")
    p.add_argument("--config", type=Path, required=True, help="the meter's TOML file (see ingest/README.md)")
    p.add_argument("--once", action="store_true", help="read once and print the reading (commissioning)")
    p.set_defaults(handler=_cmd_meter)

    p = sub.add_parser("load", help="building load by hand: publish one reading as a HEMS would")
    from ingest.building_meter import add_load_arguments

    add_load_arguments(p)
    p.set_defaults(handler=_cmd_load)

    from warehouse import control_cli

    for name, help_text, add in (
        ("site", "load management: create, list, show, remove sites (circuits, chargers, rules)",
         control_cli.add_site_arguments),
        ("mode", "set a connector's charging mode: standard, eco, boost", control_cli.add_mode_arguments),
        ("limit", "operator limits: cap a site or charger until a time", control_cli.add_limit_arguments),
        ("command", "send a command to chargers and wait for each result (bulk)", control_cli.add_command_arguments),
        ("departure", "when a fleet vehicle must leave, with what charge (priority while at risk)",
         control_cli.add_departure_arguments),
        ("decisions", "the load-management audit log", control_cli.add_decision_arguments),
    ):
        p = sub.add_parser(name, help=help_text)
        add(p)
        p.set_defaults(handler=_control_handler(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from flowbank.config import read_settings

    try:
        settings = read_settings()
    except SettingsError as exc:
        print(f"flowbank: bad setting: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.Formatter.converter = time.gmtime  # log timestamps in UTC
    if logging.getLogger().level > logging.DEBUG:
        # Libraries that log every frame or connection at INFO.
        for noisy in ("ocpp", "websockets.server", "websockets.client"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
