"""CPU of an idle pipeline: what a quiet site costs, for a given epoch.

    FLOWBANK_PG_DSN=postgresql://flowbank:flowbank@127.0.0.1:5434/flowbank \\
        .venv/bin/python bench/idle_bench.py --epochs 1,0.5,0.2 --seconds 20

For each epoch: a throw-away database with one load-managed site (10 chargers registered, none
connected), a private Mosquitto and ``flowbank pipeline --epoch-s E`` (recovery on). After a
settling time, one building-load reading a second is published for ``--seconds`` and the
pipeline's CPU (utime + stime from /proc) is taken over that window, as % of one core. An idle
pipeline should cost next to nothing; a busy loop in the dataflow (an input that keeps the worker
spinning) shows up here first.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "integration")]

from control_bench import SITE, LoadPublisher, site_mapping  # noqa: E402
from e2e_harness import Platform, PrivateBroker, register_chargers  # noqa: E402
from pipeline_bench import cpu_seconds, create_database, drop_database, machine  # noqa: E402

from flowbank.config import read_settings  # noqa: E402


def measure(admin: str, epoch_s: float, seconds: float, settle: float) -> tuple[float, tuple[float, ...]]:
    workdir = Path(f"/tmp/flowbank-idle-bench-{secrets.token_hex(3)}")  # noqa: S108
    dsn, db_name = create_database(admin)
    broker: PrivateBroker | None = None
    try:
        ids = [f"IB-{i:04d}" for i in range(1, 11)]
        register_chargers(dsn, ids, "idle-bench-secret", site_id=SITE, scrypt_n=2**11)
        import psycopg

        from warehouse.control_store import save_site

        with psycopg.connect(dsn, autocommit=True) as conn:
            save_site(conn, site_mapping(ids, 100.0), timezone="UTC", updated_by="idle_bench")
        broker = PrivateBroker(workdir / "broker").start()
        with Platform(dsn, broker.endpoint, workdir, "IB-", broker=broker, quiet=True) as plat:
            pipeline = plat.start_pipeline("--epoch-s", str(epoch_s))
            publisher = LoadPublisher("127.0.0.1", broker.port)
            try:
                deadline = time.monotonic() + settle
                while time.monotonic() < deadline:
                    publisher.publish(10.0)
                    time.sleep(1.0)
                cpu0, t0 = cpu_seconds(pipeline.pid), time.monotonic()
                while time.monotonic() - t0 < seconds:
                    publisher.publish(10.0)
                    time.sleep(1.0)
                pct = 100.0 * (cpu_seconds(pipeline.pid) - cpu0) / (time.monotonic() - t0)
            finally:
                publisher.close()
            return pct, os.getloadavg()
    finally:
        if broker is not None:
            broker.stop()
        drop_database(admin, db_name)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", default="1,0.5,0.2", help="epoch lengths in s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per epoch")
    parser.add_argument("--settle", type=float, default=10.0, help="unmeasured seconds after the start")
    args = parser.parse_args()
    admin = read_settings({k: v for k, v in os.environ.items() if k.startswith("FLOWBANK_")}).pg_dsn.reveal()
    print(f"{machine()}\n\n| epoch | pipeline CPU % of one core | load avg 1/5/15 min at the end |\n|---|---|---|")
    for epoch in (float(e) for e in args.epochs.split(",")):
        pct, load = measure(admin, epoch, args.seconds, args.settle)
        print(f"| {epoch:g} s | {pct:.1f} | {' / '.join(f'{v:.1f}' for v in load)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
