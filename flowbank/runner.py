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


DEMO_SITE = "demo"


def _demo_site(settings: Settings, count: int) -> str | None:
    """Put the demo's AC chargers on a load-managed site (63 A main breaker) unless a site
    ``demo`` exists already (someone's own configuration is never overwritten). The fleet is
    the one ``flowbank simulate`` builds with its defaults (seed 1); the DC charger stays off it."""
    import psycopg

    from ingest.sim.model import ChargerKind
    from ingest.sim.plan import FleetMix, build_fleet
    from warehouse import control_store

    specs = [s for s in build_fleet(FleetMix(chargers=count, dc_chargers=min(1, count)), seed=1)
             if s.hardware.kind is not ChargerKind.DC]
    if not specs:
        return None
    with psycopg.connect(settings.pg_dsn.reveal(), autocommit=True) as conn:
        if control_store.site_mapping(conn, DEMO_SITE) is not None:
            return DEMO_SITE
        control_store.save_site(conn, {
            "site_id": DEMO_SITE, "name": "Demo depot",
            "circuits": [{"id": "main", "limit_a": 63, "name": "Main breaker"}],
            "chargers": [{"id": s.charger_id, "circuit": "main", "max_current_a": s.hardware.max_current_a,
                          "phases": ["L1", "L2", "L3"] if s.hardware.kind is ChargerKind.AC3 else ["L1"],
                          "connectors": [{"id": n} for n in range(1, s.connectors + 1)]} for s in specs],
        }, updated_by="flowbank run")
    return DEMO_SITE


def _demo_people(settings: Settings, charger_ids: list[str], site: str | None) -> None:
    """One demo user per role on the demo chargers (see warehouse/demo_seed.py)."""
    from datetime import UTC, datetime

    import psycopg

    from warehouse.demo_seed import seed_demo_access

    with psycopg.connect(settings.pg_dsn.reveal(), autocommit=True) as conn:
        seed_demo_access(conn, charger_ids=charger_ids, site_id=site, now=datetime.now(UTC))


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
        Child("files", _flowbank("files")),  # diagnostics uploads from chargers (support console)
        Child("maintenance", _flowbank("maintain", "--every", "900")),  # retention, costs of recent sessions
        Child("data-quality", _flowbank("dq", "--every", "900")),
        Child("notifier", _flowbank("notify")),
    ]
    if not args.no_dashboard:
        # Streamlit with a local OpenID Connect provider holding one demo user per role; it
        # prints the address and how to sign in as each.
        children.append(Child("dashboard", _flowbank("dashboard", "--oidc-port", str(args.oidc_port))))
    site = None
    if args.chargers > 0:
        demo_ids = _register_demo_chargers(settings, args.chargers)
        site = _demo_site(settings, args.chargers)
        _demo_people(settings, demo_ids, site)
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
        if site:
            print(f"[run] load management: site {site!r} (flowbank site show {site}; flowbank decisions --site {site})")
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
