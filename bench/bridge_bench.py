"""Benchmark of the OCPP bridge (issue 3): validated MeterValues frames/s and frame -> PUBACK latency.

What runs (all real, all local):

* a throw-away PostgreSQL database (created from ``FLOWBANK_PG_DSN``'s server like
  ``tests/conftest.py`` does, migrated, dropped at the end) with M chargers registered through
  ``warehouse.registry.ensure_demo_chargers``;
* a private Mosquitto on a free port with the settings of ``scripts/services.sh`` (so the bench
  does not flood subscribers of the shared broker), or the broker of ``--mqtt-url``;
* K bridge processes, ``python -m flowbank.cli bridge`` (``--reuse-port`` when K > 1: one port,
  the kernel spreads the connections), each with its own ``FLOWBANK_BRIDGE_ID`` and
  ``FLOWBANK_BRIDGE_STATS_FILE``, which makes the bridge keep a histogram of *frame received ->
  MQTT PUBACK* per published event (``ingest.latency``) and dump it on SIGUSR1;
* the load generator in separate process(es) (``bench/bridge_loadgen.py``): M websockets
  chargers, one MeterValues call in flight each (3-phase, 8 sampled values, full schema validation
  in the bridge), flat out or paced.

Phases: flat out first (the sustained rate is the count of CALLRESULTs over the window), then
paced at 50 % and 90 % of it (or ``--rates``). Each phase has a warm-up that is not measured.
Per phase the table shows frames/s, bridge CPU ms per frame (utime+stime of the bridge
processes from /proc, all threads: meaningful even though the load generator shares the cores),
the CPU of the bridge(s), load generator and broker in % of one core, how busy the whole machine
was, frame -> PUBACK p50/p99 (bridge side) and the client round trip p50/p99.

Usage::

    .venv/bin/python bench/bridge_bench.py                       # 1 bridge, 100 chargers
    .venv/bin/python bench/bridge_bench.py --processes 2         # scale-out on one port
    .venv/bin/python bench/bridge_bench.py --no-deflate --seconds 20 --rates 1000,1800
    .venv/bin/python bench/bridge_bench.py --profile var/prof     # cProfile the bridge, flat out only
    .venv/bin/python bench/bridge_stages.py --ocpp                # in-process stage costs, vs the ocpp library

The bridge runs from the tree the script sits in (``python -m flowbank.cli`` with that tree as
the working directory): to measure another version, run the ``bench/bridge_bench.py`` of a copy
of it (how the before/after figures in docs/benchmarks.md were taken). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere
from control.settings import Settings
from flowbank.config import read_settings
from ingest.latency import diff, merge, percentile

HERE = Path(__file__).resolve().parent
PASSWORD = "bench-charger-password-1"  # noqa: S105 - throw-away chargers in a throw-away database
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- machine and processes


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds, all threads (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - values[4], total


def machine_info(args: argparse.Namespace) -> list[str]:
    load = os.getloadavg()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return [f"machine: {os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}",
            f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
            f"websockets {version('websockets')}, paho-mqtt {version('paho-mqtt')}, orjson {version('orjson')}, "
            f"fastjsonschema {version('fastjsonschema')}",
            f"chargers {args.chargers}, bridge processes {args.processes}, load generators {args.loadgens}, "
            f"permessage-deflate offered: {not args.no_deflate}, warm-up {args.warmup:g} s, "
            f"window {args.seconds:g} s"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:g} s")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


MOSQUITTO_CONF = """per_listener_settings false
listener {port} 127.0.0.1
allow_anonymous true
log_dest stderr
log_type error
log_type warning
persistence false
max_queued_messages 0
max_queued_bytes 4294967296
max_inflight_messages 0
set_tcp_nodelay true
"""


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port))
    conf.chmod(0o644)
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL)
    wait_port(port, proc, "mosquitto")
    return proc, f"mqtt://127.0.0.1:{port}"


# --------------------------------------------------------------------------- database


def create_database(settings: Settings, chargers: list[str]) -> tuple[str, str]:
    from urllib.parse import urlsplit, urlunsplit

    from warehouse.migrate import apply_migrations
    from warehouse.registry import ensure_demo_chargers

    admin = settings.pg_dsn.reveal()
    name = f"flowbank_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    try:
        apply_migrations(dsn)
        ensure_demo_chargers(dsn, chargers, PASSWORD)  # scrypt: ~75 ms per charger
    except BaseException:
        drop_database(settings, name)
        raise
    return dsn, name


def drop_database(settings: Settings, name: str) -> None:
    statement = sql.SQL("drop database if exists {}").format(sql.Identifier(name))
    with psycopg.connect(settings.pg_dsn.reveal(), autocommit=True, connect_timeout=10) as conn:
        for _ in range(50):
            try:
                conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                time.sleep(0.2)
        conn.execute(statement)


# --------------------------------------------------------------------------- bridges and load generators


class Bridge:
    def __init__(self, index: int, env: dict[str, str], workdir: Path, reuse_port: bool,
                 profile_dir: Path | None) -> None:
        self.stats_path = workdir / f"bridge-{index}.stats.json"
        env = {**env, "FLOWBANK_BRIDGE_ID": f"bench-bridge-{index}",
               "FLOWBANK_BRIDGE_STATS_FILE": str(self.stats_path)}
        cmd = [sys.executable, "-m", "flowbank.cli", "bridge"] + (["--reuse-port"] if reuse_port else [])
        if profile_dir is not None:
            cmd = [sys.executable, str(HERE / "bridge_profile.py"), str(profile_dir / f"bridge-{index}"),
                   "bridge", *cmd[4:]]
        self.proc = subprocess.Popen(cmd, env=env, cwd=HERE.parent)
        self.seq = 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.stats_path.exists():
            if self.proc.poll() is not None:
                raise SystemExit(f"bridge exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("bridge did not start")
            time.sleep(0.1)

    def snapshot(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                data: dict[str, Any] = json.loads(self.stats_path.read_text())
            except (OSError, ValueError):
                data = {"seq": self.seq}
            if data["seq"] > self.seq:
                self.seq = data["seq"]
                return data
            time.sleep(0.01)
        raise SystemExit("bridge did not write its stats")


class Loadgen:
    def __init__(self, url: str, ids: list[str], first_index: int, deflate: bool, env: dict[str, str]) -> None:
        cmd = [sys.executable, str(HERE / "bridge_loadgen.py"), "--url", url, "--ids", ",".join(ids),
               "--password", PASSWORD, "--first-index", str(first_index)] + ([] if deflate else ["--no-deflate"])
        self.proc = subprocess.Popen(cmd, env=env, cwd=HERE.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f"load generator exited with code {self.proc.wait()}")
        result: dict[str, Any] = json.loads(answer)
        return result


# --------------------------------------------------------------------------- phases


@dataclass
class Row:
    name: str
    offered: float | None
    frames_s: float
    cpu_ms_per_frame: float
    sys_share: float  # of the bridge CPU, the kernel's part
    bridge_cpu_pct: float
    loadgen_cpu_pct: float
    broker_cpu_pct: float | None
    machine_busy_pct: float
    lat_p50_ms: float | None
    lat_p99_ms: float | None
    rtt_p50_ms: float | None
    rtt_p99_ms: float | None
    errors: int


def _ms(ns: float | None) -> float | None:
    return None if ns is None else ns / 1e6


def measure(name: str, rate: float, bridges: list[Bridge], loadgens: list[Loadgen], broker: int | None,
            warmup: float, seconds: float) -> Row:
    for lg in loadgens:
        lg.ask(f"rate {rate / len(loadgens)}")
    time.sleep(warmup)
    for lg in loadgens:
        lg.ask("mark")
    before = [b.snapshot() for b in bridges]
    cpu0 = [cpu_times(b.proc.pid) for b in bridges]
    broker0, busy0 = (cpu_seconds(broker) if broker else 0.0), machine_ticks()
    start = time.monotonic()
    time.sleep(seconds)
    marks = [lg.ask("mark") for lg in loadgens]
    elapsed = time.monotonic() - start
    after = [b.snapshot() for b in bridges]
    cpu1 = [cpu_times(b.proc.pid) for b in bridges]
    broker1, busy1 = (cpu_seconds(broker) if broker else 0.0), machine_ticks()
    frames = sum(m["results"] for m in marks)
    bridge_sys = sum(c[1] for c in cpu1) - sum(c[1] for c in cpu0)
    bridge_cpu = sum(sum(c) for c in cpu1) - sum(sum(c) for c in cpu0)
    lat = merge(*(diff(a["frame_to_puback"], b["frame_to_puback"]) for a, b in zip(after, before, strict=True)))
    rtt = merge(*(diff(m["rtt"]["new"], m["rtt"]["old"]) for m in marks))
    return Row(
        name=name, offered=rate or None, frames_s=frames / elapsed,
        cpu_ms_per_frame=bridge_cpu / frames * 1e3 if frames else float("nan"),
        sys_share=bridge_sys / bridge_cpu if bridge_cpu else 0.0,
        bridge_cpu_pct=100 * bridge_cpu / elapsed, loadgen_cpu_pct=100 * sum(m["cpu_s"] for m in marks) / elapsed,
        broker_cpu_pct=100 * (broker1 - broker0) / elapsed if broker else None,
        machine_busy_pct=100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        lat_p50_ms=_ms(percentile(lat, 0.5)), lat_p99_ms=_ms(percentile(lat, 0.99)),
        rtt_p50_ms=_ms(percentile(rtt, 0.5)), rtt_p99_ms=_ms(percentile(rtt, 0.99)),
        errors=sum(m["errors"] + m["other"] for m in marks),
    )


def table(rows: list[Row], cores: int) -> str:
    def f(v: float | None, spec: str = ".1f") -> str:
        return "-" if v is None else format(v, spec)

    head = ("| phase | offered/s | frames/s | bridge CPU ms/frame (kernel part) | bridge CPU % | loadgen CPU % "
            "| broker CPU % "
            f"| machine busy % ({cores} cores) | frame->PUBACK p50 / p99 ms | client RTT p50 / p99 ms | errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r.name} | {f(r.offered, '.0f')} | {r.frames_s:.0f} | {r.cpu_ms_per_frame:.3f} "
                     f"({r.sys_share:.0%}) "
                     f"| {r.bridge_cpu_pct:.0f} | {r.loadgen_cpu_pct:.0f} | {f(r.broker_cpu_pct, '.0f')} "
                     f"| {r.machine_busy_pct:.0f} | {f(r.lat_p50_ms, '.2f')} / {f(r.lat_p99_ms, '.2f')} "
                     f"| {f(r.rtt_p50_ms, '.2f')} / {f(r.rtt_p99_ms, '.2f')} | {r.errors} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chargers", type=int, default=100, help="M simulated chargers (connections)")
    p.add_argument("--processes", type=int, default=1, help="K bridge processes on one port (SO_REUSEPORT)")
    p.add_argument("--loadgens", type=int, default=1, help="load generator processes")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per phase")
    p.add_argument("--warmup", type=float, default=4.0, help="unmeasured warm-up per phase")
    p.add_argument("--rates", help="paced rates (frames/s, comma-separated) instead of 50%%,90%% of flat out")
    p.add_argument("--no-deflate", action="store_true", help="chargers do not offer permessage-deflate")
    p.add_argument("--mqtt-url", help="use this broker instead of a private Mosquitto")
    p.add_argument("--profile", type=Path, help="cProfile the bridge(s) into this directory (flat out only)")
    p.add_argument("--compare-ocpp", action="store_true",
                   help="also print bench/bridge_stages.py --ocpp (in-process stage costs, ocpp library validation)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args()
    settings = read_settings()
    cores = os.cpu_count() or 1
    info = machine_info(args)
    print("\n".join(info), flush=True)
    ids = [f"BENCH-{i:05d}" for i in range(args.chargers)]
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    broker_proc: subprocess.Popen[bytes] | None = None
    bridges: list[Bridge] = []
    loadgens: list[Loadgen] = []
    db_name = None
    rows: list[Row] = []
    try:
        if args.mqtt_url:
            mqtt_url = args.mqtt_url
        else:
            broker_proc, mqtt_url = start_broker(workdir)
        t = time.monotonic()
        dsn, db_name = create_database(settings, ids)
        print(f"database {db_name} with {len(ids)} chargers ready in {time.monotonic() - t:.1f} s", flush=True)
        port = free_port()
        env = {**os.environ, "FLOWBANK_PG_DSN": dsn, "FLOWBANK_MQTT_URL": mqtt_url,
               "FLOWBANK_BRIDGE_HOST": "127.0.0.1", "FLOWBANK_BRIDGE_PORT": str(port),
               "FLOWBANK_DATA_DIR": str(workdir / "data"), "FLOWBANK_LOG_LEVEL": "WARNING",
               "FLOWBANK_PROVISION_SERVICES": "false"}
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        bridges = [Bridge(k + 1, env, workdir, args.processes > 1, args.profile) for k in range(args.processes)]
        for b in bridges:
            b.wait_ready()
        url = f"ws://127.0.0.1:{port}/ocpp"
        share = -(-len(ids) // args.loadgens)
        loadgens = [Loadgen(url, ids[i:i + share], i, not args.no_deflate, env)
                    for i in range(0, len(ids), share)]
        t = time.monotonic()
        connected = sum(lg.ask("")["ready"] for lg in loadgens)
        print(f"{connected} chargers connected in {time.monotonic() - t:.1f} s", flush=True)
        broker_pid = broker_proc.pid if broker_proc else None
        if args.profile:
            for b in bridges:
                b.proc.send_signal(signal.SIGUSR2)  # start profiling the event loop thread
        flat = measure("flat out", 0, bridges, loadgens, broker_pid, args.warmup, args.seconds)
        rows.append(flat)
        print(table(rows, cores), flush=True)
        if args.profile:
            for b in bridges:
                b.proc.send_signal(signal.SIGUSR2)
        else:
            rates = ([float(r) for r in args.rates.split(",")] if args.rates
                     else [0.5 * flat.frames_s, 0.9 * flat.frames_s])
            for rate in rates:
                label = f"paced {rate / flat.frames_s:.0%}" if not args.rates else "paced"
                rows.append(measure(label, rate, bridges, loadgens, broker_pid, args.warmup, args.seconds))
        print()
        print("\n".join(info))
        print(table(rows, cores))
        if args.compare_ocpp:
            print()
            sys.stdout.flush()
            subprocess.run([sys.executable, str(HERE / "bridge_stages.py"), "--ocpp"], check=False)
        if args.json:
            args.json.write_text(json.dumps({"info": info, "rows": [r.__dict__ for r in rows]}, indent=1))
    finally:
        for lg in loadgens:
            try:
                lg.ask("stop")
            except (SystemExit, OSError, ValueError):
                pass
            stop_process(lg.proc)
        for b in bridges:
            stop_process(b.proc, 30.0)
        if broker_proc is not None:
            stop_process(broker_proc)
        if db_name is not None:
            drop_database(settings, db_name)
        shutil.rmtree(workdir, ignore_errors=True)
    if args.profile:
        print(f"\nprofiles (pstats files, summary.txt) in {args.profile}/bridge-*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
