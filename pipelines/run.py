"""`flowbank pipeline`: the dataflow with Bytewax recovery on.

Recovery keeps each key's session state in SQLite partitions under ``data_dir/recovery``;
after a crash (even SIGKILL) the flow resumes from the last snapshot and the broker re-delivers
what was not yet acknowledged (see :mod:`pipelines.mqtt_source`). SIGTERM and SIGINT stop it
cleanly: sources and sinks are closed and the lake's buffered rows are written.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from control.settings import Settings

if TYPE_CHECKING:
    from bytewax.recovery import RecoveryConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--workers", type=int, default=1, help="worker threads in this process")
    parser.add_argument("-i", "--process-id", type=int, help="this process's index in a cluster (with -a)")
    parser.add_argument("-a", "--addresses", help="cluster addresses 'host:port;host:port' (with -i)")
    parser.add_argument("--partitions", type=int, default=1,
                        help="MQTT clients sharing the subscription (more than one: shared subscription)")
    parser.add_argument("--epoch-s", type=float, default=1.0, help="snapshot interval in seconds")
    parser.add_argument("--recovery-partitions", type=int, default=1,
                        help="SQLite partitions of the recovery store (fixed once created)")
    parser.add_argument("--no-recovery", action="store_true", help="run without state recovery")


def _recovery(settings: Settings, partitions: int) -> RecoveryConfig:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    directory = Path(settings.data_dir) / "recovery"
    if not any(directory.glob("part-*.sqlite3")):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, partitions)  # type: ignore[no-untyped-call]
    return RecoveryConfig(directory)  # type: ignore[no-untyped-call]


def run(settings: Settings, args: argparse.Namespace) -> int:
    if (args.process_id is None) != (args.addresses is None):
        print("flowbank pipeline: -i/--process-id and -a/--addresses go together", flush=True)
        return 2
    # Imported here so that `flowbank --help` does not load Bytewax.
    from bytewax.errors import BytewaxRuntimeError
    from bytewax.run import cli_main

    from pipelines.flow import build_dataflow, production_parts

    # Bytewax dies at once on SIGTERM. Both signals instead raise KeyboardInterrupt, which stops
    # the flow and closes sources and sinks. If it lands inside a sink's write, Bytewax reports
    # that write as failed: its transaction is rolled back and its messages were not acked, so
    # the broker delivers them again on the next start. Nothing is lost; it is a clean stop.
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    flow = build_dataflow(production_parts(settings, partitions=args.partitions))
    recovery = None if args.no_recovery else _recovery(settings, args.recovery_partitions)
    addresses = args.addresses.split(";") if args.addresses else None
    log.info("pipeline starting: %d worker(s), recovery %s", args.workers, "off" if recovery is None else "on")
    try:
        cli_main(  # type: ignore[no-untyped-call]
            flow, workers_per_process=args.workers, process_id=args.process_id, addresses=addresses,
            epoch_interval=timedelta(seconds=args.epoch_s), recovery_config=recovery)
    except (KeyboardInterrupt, BytewaxRuntimeError):
        if not stop_requested.is_set():
            raise
    log.info("pipeline stopped")
    return 0
