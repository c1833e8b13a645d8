"""``python -m ingest.sim --url ws://127.0.0.1:9000/ocpp ...``: the simulator without the flowbank CLI."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ingest.sim.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.sim", description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:9000/ocpp", help="CSMS base URL (charger id appended)")
    parser.add_argument("--log-level", default="WARNING")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run(args, url=args.url, stop=stop)

    return asyncio.run(_main())


if __name__ == "__main__":
    sys.exit(main())
