"""Run ``flowbank bridge`` under cProfile (used by ``bench/bridge_bench.py --profile DIR``).

The event-loop (main) thread is profiled between two SIGUSR2 signals, so connecting and the
scrypt password checks stay out of it; the publisher's pump thread and paho's network threads
(the command channel) are profiled for their whole life (they are idle before the load starts).
Times are each thread's CPU time (``time.thread_time``), so waiting for the GIL or for I/O does
not count (``PROFILE_WALL=1``: wall-clock time for the event loop, which shows those waits; the
per-call cost of ``thread_time`` inflates functions with many small calls either way). At exit
the profiles are written as pstats files to ``DIR`` with a ``summary.txt`` of the top functions
by own time.

Usage: ``python bench/bridge_profile.py DIR bridge [--reuse-port]`` (the environment as for
``flowbank bridge``).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROFILED_THREADS = ("mqtt-pump", "paho-mqtt-client")


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, cProfile.Profile] = {}
    loop_profile = cProfile.Profile(time.perf_counter if os.environ.get("PROFILE_WALL") else time.thread_time)
    original_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        if not self.name.startswith(PROFILED_THREADS):
            original_run(self)
            return
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()
            profiles[self.name] = profile

    threading.Thread.run = run  # type: ignore[method-assign]
    state = {"on": False}

    def toggle(signum: int, frame: FrameType | None) -> None:
        if state["on"]:
            loop_profile.disable()
        else:
            loop_profile.enable()
        state["on"] = not state["on"]

    signal.signal(signal.SIGUSR2, toggle)
    from flowbank.cli import main as cli

    rc = cli(sys.argv[2:])
    loop_profile.disable()
    summary = io.StringIO()
    for name, profile in [("event-loop", loop_profile), *sorted(profiles.items())]:
        path = out / f"{name}.prof"
        profile.dump_stats(path)
        stats: Any = pstats.Stats(str(path), stream=summary)
        summary.write(f"\n=================== {name}\n")
        stats.sort_stats("tottime").print_stats(30)
    (out / "summary.txt").write_text(summary.getvalue())
    return rc


if __name__ == "__main__":
    sys.exit(main())
