"""`flowbank run`: the whole platform on one machine, each component its own process.

Starts the services (provisioning them when they are ours), then the bridge and the simulated
chargers (and the pipeline and dashboard as they come), prints where to connect, and on Ctrl-C
or SIGTERM stops the children in reverse order: SIGTERM first, SIGKILL after a grace period.
If any child dies on its own, everything is stopped and the exit code says so.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

from control.settings import Settings
from flowbank.services import run_services

GRACE_S = 10.0
DEMO_PASSWORD = "flowbank-demo"  # noqa: S105 - local demo chargers on loopback only


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def _flowbank(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowbank.cli", *args]


def _register_demo_chargers(settings: Settings, count: int) -> list[str]:
    from warehouse.registry import ensure_demo_chargers

    ids = [f"SIM-{i:04d}" for i in range(1, count + 1)]
    ensure_demo_chargers(settings.pg_dsn.reveal(), ids, DEMO_PASSWORD)
    return ids


def _stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for child in reversed(children):
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[run] {child.name} did not stop within {GRACE_S:.0f} s; killing it", file=sys.stderr)
            child.process.kill()
            child.process.wait()


def run_platform(settings: Settings, args: argparse.Namespace) -> int:
    if run_services(settings, check_only=False) != 0:
        print("[run] services are not healthy; not starting the platform", file=sys.stderr)
        return 1
    children = [
        Child("pipeline", _flowbank("pipeline")),
        Child("bridge", _flowbank("bridge")),
        Child("maintenance", _flowbank("maintain", "--every", "3600")),
        Child("data-quality", _flowbank("dq", "--every", "900")),
    ]
    if args.chargers > 0:
        _register_demo_chargers(settings, args.chargers)
        children.append(Child("simulator", _flowbank(
            "simulate", "--chargers", str(args.chargers), "--password", DEMO_PASSWORD,
            "--speed", str(args.speed), "--truth", str(settings.data_dir / "simulator-truth.jsonl"),
        )))

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    try:
        for child in children:
            # Children ignore the terminal's Ctrl-C: this process decides the stop order.
            child.process = subprocess.Popen(child.argv, env=env, start_new_session=True)  # noqa: S603
            if child.name == "bridge":
                time.sleep(1.0)  # let the bridge bind its port before chargers dial in
        scheme = "wss" if settings.bridge_tls_cert else "ws"
        print(f"\n[run] OCPP endpoint:  {scheme}://{settings.bridge_host}:{settings.bridge_port}/ocpp/<charge-point-id>")
        print(f"[run] MQTT broker:    {settings.mqtt.url}")
        print(f"[run] PostgreSQL:     {settings.pg_dsn_display}")
        print(f"[run] analytics SQL:  {sys.executable} -m flowbank.cli sql  (DuckDB over {settings.data_dir / 'lake'})")
        if args.chargers:
            print(f"[run] simulated chargers: SIM-0001..SIM-{args.chargers:04d} (password {DEMO_PASSWORD!r})")
        print("[run] Ctrl-C stops everything.\n", flush=True)
        exit_code = 0
        while not stopping.wait(0.5):
            for child in children:
                code = child.process.poll() if child.process else None
                if code is not None:
                    print(f"[run] {child.name} exited with code {code}; stopping the platform", file=sys.stderr)
                    exit_code = 1
                    stopping.set()
                    break
        print("[run] stopping...", file=sys.stderr)
        _stop_all(children)
        print("[run] stopped", file=sys.stderr)
        return exit_code
    finally:
        _stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
