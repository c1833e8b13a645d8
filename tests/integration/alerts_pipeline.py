"""The production dataflow with test-sized alert tunables, for the end-to-end alert test.

    python tests/integration/alerts_pipeline.py '{"disconnect_grace_s": 5, "hold_down_s": 5, ...}'

Settings come from the FLOWBANK_* environment like ``flowbank pipeline`` (one worker, no
recovery); SIGTERM stops it cleanly. Only the AlertConfig differs from production.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from dataclasses import replace
from datetime import timedelta

from bytewax.errors import BytewaxRuntimeError
from bytewax.run import cli_main

from control.alerts import AlertConfig
from pipelines.flow import build_dataflow, production_parts
from warehouse.config import read_settings


def alert_config(tunables: dict[str, float]) -> AlertConfig:
    values: dict[str, object] = {}
    for name, value in tunables.items():
        if name.endswith("_s"):
            values[name.removesuffix("_s")] = timedelta(seconds=value)
        else:
            values[name] = value
    return AlertConfig(**values)  # type: ignore[arg-type]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = alert_config(json.loads(sys.argv[1]))
    settings = read_settings()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    flow = build_dataflow(replace(production_parts(settings), alert_config=config))
    try:
        cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=1))  # type: ignore[no-untyped-call]
    except (KeyboardInterrupt, BytewaxRuntimeError):
        pass
    logging.getLogger(__name__).info("pipeline stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
