"""Benchmark of the streaming side (issue 4): bridge -> MQTT -> pipeline -> TimescaleDB.

What runs (all real, all local, every process started and stopped here by PID):

* a private Mosquitto on a free port, configured like ``scripts/services.sh`` (the pipeline
  subscribes to every charger's events: on the shared broker it would ingest other people's
  load too), and a throw-away PostgreSQL database (created on ``FLOWBANK_PG_DSN``'s server,
  migrated, dropped at the end);
* ``flowbank bridge`` and ``flowbank pipeline`` (recovery on, as in production), started through
  ``tests/integration/e2e_harness.py``;
* the bridge benchmark's load generator (``bench/bridge_loadgen.py``): M raw-websockets OCPP 1.6
  chargers, one MeterValues CALL in flight each (3-phase, 8 sampled values), paced to the
  target rate.

Phases, with the same bridge and load generator, one per offered rate (``--rates``):

1. **pipeline**: the dataflow (sessions, verdicts, live state, TimescaleDB, Parquet lake);
2. **pipeline, catching up alone** (``--catch-up N``): the pipeline is stopped, N frames queue up
   at the broker for its persistent session, then it works them off with the machine to itself
   (no bridge or load generator competing for the cores): its capacity on this machine;
3. **naive baseline**: instead of the pipeline, one paho subscriber that does one INSERT per
   meter-sample message into a plain table (autocommit), in its own process.

Per phase: warm-up, then a measured window of ``--seconds``; then the load stops and the bench
waits until the consumer has stored everything (the drain time says how far behind it was).

* **offered**: CALLRESULTs/s at the load generator (frames the bridge accepted) in the window;
* **stored**: rows written to TimescaleDB during the window, per second (``received_at`` is
  ``now()`` at the insert, i.e. the start of the writer's transaction); when it is below the
  offered rate the consumer is saturated and this is its capacity;
* **to TimescaleDB p50/p99**: ``received_at - bridge_received_at`` of the rows whose frame reached
  the bridge in the window (the bridge stamps each frame on arrival: ``bridge_received_at``);
* **to live state p50/p99** (pipeline only): a subscriber to the retained
  ``flowbank/v1/live/#`` topics takes each LiveState on arrival; its ``last_seen_at`` is the
  bridge's arrival stamp of the newest frame of that charger, the frame the state reflects
  (the bench sends only MeterValues, so there is no other kind of frame to confuse it with);
* CPU of each process in % of one core over the window (from /proc), and the load average.

Usage::

    .venv/bin/python bench/pipeline_bench.py                        # 1,000 frames/s, 60 s, 100 chargers
    .venv/bin/python bench/pipeline_bench.py --rates 1000,400       # and a rate the consumers keep up with
    .venv/bin/python bench/pipeline_bench.py --seconds 30 --skip-baseline --json var/pipeline_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from dbutil import drop_database  # noqa: E402  (the tests' own, shared by the benches)
from e2e_harness import Child, Platform, PrivateBroker, mqtt_url, register_chargers, wait_until  # noqa: E402
from mqtt_sessions import end_sessions, pipeline_client_ids  # noqa: E402

from control.settings import MqttEndpoint  # noqa: E402
from flowbank.config import read_settings  # noqa: E402

HERE = Path(__file__).resolve().parent
PASSWORD = "bench-charger-password-1"  # noqa: S105 - throw-away chargers in a throw-away database
TICK = os.sysconf("SC_CLK_TCK")
NAIVE_TABLE = "naive_samples"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text()
    parts = fields[fields.rfind(")") + 2:].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def postgres_cpu_seconds() -> float:
    """CPU of every running PostgreSQL process (server and backends; the bench's own database's
    connections are long-lived, so a window's difference is theirs plus the server's)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
    return total


def busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, Linux {platform.release()}"


# --------------------------------------------------------------------------- the naive consumer


def naive_consumer(dsn: str, url: str, ready_file: str) -> None:
    """The baseline: every meter-sample message, one INSERT, autocommit, on paho's thread."""
    from urllib.parse import urlsplit

    from control.contract import MeterSample, decode

    parts = urlsplit(url)
    conn = psycopg.connect(dsn, autocommit=True)
    # A persistent session, like the pipeline's, so that its catch-up phase can be measured too.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flowbank-bench-naive", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        event = decode(bytes(msg.payload))
        if isinstance(event, MeterSample):
            conn.execute(f"insert into {NAIVE_TABLE} (charger_id, connector_id, ts, energy_wh, power_w, "  # noqa: S608
                         "bridge_received_at) values (%s, %s, %s, %s, %s, %s)",
                         (event.charger_id, event.connector_id, event.ts, event.energy_wh, event.power_w,
                          event.received_at))

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("flowbank/v1/ev/+/meter_sample", qos=1)

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        Path(ready_file).write_text("ready")

    client.on_subscribe = on_subscribe
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30, clean_start=False,
                   properties=props)
    client.loop_forever()


# --------------------------------------------------------------------------- live-state listener


class LiveListener:
    """Latency of the live state: arrival here minus the bridge stamp of the frame it reflects."""

    def __init__(self, endpoint: MqttEndpoint) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (last_seen_at epoch s, latency s, to made s)
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-live-{secrets.token_hex(3)}",
                                   protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe("flowbank/v1/live/#", qos=0)
        self._client.connect(endpoint.host, endpoint.port, keepalive=30)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        data = json.loads(msg.payload)["data"] if msg.payload else {}
        seen, made = data.get("last_seen_at"), data.get("updated_at")
        if seen and made:
            stamp = datetime.fromisoformat(seen.replace("Z", "+00:00")).timestamp()
            made_at = datetime.fromisoformat(made.replace("Z", "+00:00")).timestamp()
            with self._lock:
                self.samples.append((stamp, arrived - stamp, made_at - stamp))

    def latencies(self, start: float, end: float, *, to_made: bool = False) -> list[float]:
        """Frame at the bridge -> here, or (``to_made``) -> the LiveState made by the pipeline."""
        with self._lock:
            return sorted(made if to_made else lat for stamp, lat, made in self.samples if start <= stamp < end)

    def timeline(self, start: float, end: float) -> list[dict[str, float]]:
        """Per second of the window (by the frame's bridge stamp): states, p50 and max latency (ms)."""
        seconds: dict[int, list[float]] = {}
        with self._lock:
            for stamp, lat, _ in self.samples:
                if start <= stamp < end:
                    seconds.setdefault(int(stamp - start), []).append(lat)
        rows = []
        for second in sorted(seconds):
            lats = sorted(seconds[second])
            rows.append({"second": second, "states": len(lats), "p50_ms": round(lats[len(lats) // 2] * 1000, 1),
                         "max_ms": round(lats[-1] * 1000, 1)})
        return rows

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# --------------------------------------------------------------------------- one phase


@dataclass
class PhaseResult:
    name: str
    seconds: float
    offered_per_s: float
    stored_per_s: float
    store_p50_ms: float | None
    store_p99_ms: float | None
    store_max_ms: float | None
    live_p50_ms: float | None = None
    live_p99_ms: float | None = None
    live_made_p50_ms: float | None = None  # frame -> LiveState made (the pipeline's clock): the rest is delivery
    live_made_p99_ms: float | None = None
    drain_s: float = 0.0
    missing: int = 0  # frames the bridge answered that were not stored when the drain ended
    arrived: int = 0  # rows whose frame reached the bridge in the window (all stored, after the drain)
    cpu_pct: dict[str, float] = field(default_factory=dict)
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    timeline: list[dict[str, float]] = field(default_factory=list)  # live state per second (--timeline)


class LoadGen:
    def __init__(self, url: str, ids: list[str], log: Path) -> None:
        self._log = open(log, "ab")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "bridge_loadgen.py"), "--url", url, "--ids", ",".join(ids), "--password",
             PASSWORD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            start_new_session=True)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited ({self.process.poll()}); see {self._log.name}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, text: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.command("stop")
                self.process.wait(timeout=30)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def table_stats(dsn: str, table: str, start: datetime, end: datetime) -> tuple[int, int, list[float | None]]:
    """(rows stored during the window, rows whose frame arrived in the window, lag p50/p99/max in s)."""
    query = sql.SQL(
        "select (select count(*) from {t} where received_at >= %(s)s and received_at < %(e)s),"
        " count(*), percentile_cont(array[0.5, 0.99]) within group (order by"
        " extract(epoch from received_at - bridge_received_at)), max(extract(epoch from received_at -"
        " bridge_received_at)) from {t} where bridge_received_at >= %(s)s and bridge_received_at < %(e)s"
    ).format(t=sql.Identifier(table))
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, {"s": start, "e": end}).fetchone()
    assert row is not None
    p = row[2] or [None, None]
    return int(row[0]), int(row[1]), [p[0], p[1], float(row[3]) if row[3] is not None else None]


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def run_phase(name: str, *, dsn: str, table: str, bridge_url: str, ids: list[str], rate: float, seconds: float,
              warmup: float, consumers: dict[str, int], workdir: Path, live: LiveListener | None,
              drain_timeout: float, timeline: bool = False) -> PhaseResult:
    before = count(dsn, table)
    gen = LoadGen(bridge_url, ids, workdir / f"loadgen-{name.replace(' ', '-')}-{rate:.0f}.log")
    try:
        gen.command(f"rate {rate}")
        time.sleep(warmup)
        answered = gen.command("mark")["results"]
        procs = {**consumers, "loadgen": gen.process.pid}
        cpu0 = {k: cpu_seconds(pid) for k, pid in procs.items()}
        pg0, busy0 = postgres_cpu_seconds(), busy_seconds()
        start, t0 = datetime.now(UTC), time.monotonic()
        time.sleep(seconds)
        marked = gen.command("mark")
        end, elapsed = datetime.now(UTC), time.monotonic() - t0
        cpu = {k: round(100.0 * (cpu_seconds(pid) - cpu0[k]) / elapsed, 1) for k, pid in procs.items()}
        cpu["postgres"] = round(100.0 * (postgres_cpu_seconds() - pg0) / elapsed, 1)
        busy1 = busy_seconds()  # the machine: % of all its cores, x the core count = % of one core
        cpu["machine"] = round(100.0 * (os.cpu_count() or 1) * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]), 1)
        loadavg = os.getloadavg()
        gen.command("rate 0.001")  # (nearly) stop sending; the last mark counts what went out meanwhile
        time.sleep(0.5)
        answered += marked["results"] + gen.command("mark")["results"]
    finally:
        gen.stop()
    # Drain: until every frame the bridge answered is stored (each is one row), or the timeout.
    stop_at = time.monotonic()
    while (missing := answered - (count(dsn, table) - before)) > 0 and time.monotonic() - stop_at < drain_timeout:
        time.sleep(0.5)
    drain, drained, missing = time.monotonic() - stop_at, missing <= 0, max(missing, 0)
    stored_in_window, arrived_in_window, lag = table_stats(dsn, table, start, end)
    lives = live.latencies(start.timestamp(), end.timestamp()) if live is not None else []
    made = live.latencies(start.timestamp(), end.timestamp(), to_made=True) if live is not None else []
    offered = marked["results"] / marked["wall_s"] if marked["wall_s"] > 0 else 0.0

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 1)

    return PhaseResult(
        name=name, seconds=round(elapsed, 1), offered_per_s=round(offered, 1),
        stored_per_s=round(stored_in_window / elapsed, 1),
        store_p50_ms=ms(lag[0]), store_p99_ms=ms(lag[1]), store_max_ms=ms(lag[2]),
        live_p50_ms=ms(percentile(lives, 0.5)), live_p99_ms=ms(percentile(lives, 0.99)),
        live_made_p50_ms=ms(percentile(made, 0.5)), live_made_p99_ms=ms(percentile(made, 0.99)),
        drain_s=round(drain, 1) if drained else -1.0, missing=missing, arrived=arrived_in_window,
        cpu_pct=cpu, loadavg=(round(loadavg[0], 2), round(loadavg[1], 2), round(loadavg[2], 2)),
        timeline=live.timeline(start.timestamp(), end.timestamp()) if live is not None and timeline else [],
    )


def catch_up(name: str, plat: Platform, consumer: Child, restart: Callable[[], object], *, dsn: str, table: str,
             ids: list[str], frames: int, workdir: Path, timeout: float) -> PhaseResult:
    """One consumer alone: stopped, ``frames`` MeterValues queue up at the broker (its persistent
    session), then it starts again and works them off with the machine to itself."""
    consumer.stop()
    gen = LoadGen(plat.bridge_url, ids, workdir / f"loadgen-catch-up-{consumer.name}.log")
    try:
        gen.command("rate 0")  # flat out
        answered = 0
        while answered < frames:
            time.sleep(1.0)
            answered += gen.command("mark")["results"]
        gen.command("rate 0.001")
        time.sleep(0.5)
        answered += gen.command("mark")["results"]
    finally:
        gen.stop()
    before, restarted, t0 = count(dsn, table), datetime.now(UTC), time.monotonic()
    restart()  # the naive consumer may work off much of the backlog before its SUBACK says it is ready
    while (missing := answered - (count(dsn, table) - before)) > 0 and time.monotonic() - t0 < timeout:
        time.sleep(0.25)
    done, missing = missing <= 0, max(missing, 0)
    # From the first row stored to the last: the consumer's start-up is not part of its rate.
    query = sql.SQL("select count(*), extract(epoch from max(received_at) - min(received_at)) from {}"
                    " where received_at >= %s").format(sql.Identifier(table))
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, (restarted,)).fetchone()
    stored, elapsed = (int(row[0]), float(row[1] or 0.0)) if row else (0, 0.0)
    elapsed = max(elapsed, 1e-3)
    loadavg = os.getloadavg()
    return PhaseResult(
        name=name, seconds=round(elapsed, 1), offered_per_s=0.0,
        drain_s=round(elapsed, 1) if done else -1.0, missing=missing, stored_per_s=round(stored / elapsed, 1),
        store_p50_ms=None, store_p99_ms=None, store_max_ms=None,
        arrived=answered,
        cpu_pct={consumer.name: round(100.0 * cpu_seconds(consumer.pid) / (time.monotonic() - t0), 1)},  # a new process
        loadavg=(round(loadavg[0], 2), round(loadavg[1], 2), round(loadavg[2], 2)))


# --------------------------------------------------------------------------- main


def create_database(admin_dsn: str) -> tuple[str, str]:
    from urllib.parse import urlsplit, urlunsplit

    from warehouse.migrate import apply_migrations

    name = f"flowbank_pbench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    apply_migrations(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:  # the baseline's plain table
        conn.execute(sql.SQL("create table {} (charger_id text not null, connector_id integer not null,"
                             " ts timestamptz not null, energy_wh double precision, power_w double precision,"
                             " bridge_received_at timestamptz, received_at timestamptz not null default now())"
                             ).format(sql.Identifier(NAIVE_TABLE)))
    return dsn, name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1000", help="frames/s offered, one phase each (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per phase (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured seconds before the window")
    parser.add_argument("--chargers", type=int, default=100, help="simulated connections (default 100)")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="wait this long for a backlog")
    parser.add_argument("--catch-up", type=int, default=30_000,
                        help="frames the pipeline works off alone after a stop (0: skip that phase)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--pipeline-args", nargs=argparse.REMAINDER, default=[],
                        help="the rest is passed to `flowbank pipeline` (e.g. --epoch-s 0.5); last on the line")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--timeline", action="store_true",
                        help="per second of the pipeline's window: live states, p50 and max latency (in --json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    sub = parser.add_subparsers(dest="role")
    naive = sub.add_parser("naive-consumer", help=argparse.SUPPRESS)
    naive.add_argument("--dsn", required=True)
    naive.add_argument("--mqtt", required=True)
    naive.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    if args.role == "naive-consumer":
        naive_consumer(args.dsn, args.mqtt, args.ready_file)
        return 0

    rates = [float(r) for r in args.rates.split(",")]
    settings = read_settings({k: v for k, v in os.environ.items() if k.startswith("FLOWBANK_")})
    admin = settings.pg_dsn.reveal()
    workdir = Path(f"/tmp/flowbank-pipeline-bench-{secrets.token_hex(3)}")  # noqa: S108
    dsn, db_name = create_database(admin)
    ids = [f"PB-{i:04d}" for i in range(1, args.chargers + 1)]
    register_chargers(dsn, ids, PASSWORD, scrypt_n=2**11)
    print(f"[bench] {machine()}; database {db_name}; work directory {workdir}", flush=True)
    results: list[PhaseResult] = []
    broker = PrivateBroker(workdir / "broker").start()
    live: LiveListener | None = None
    try:
        with Platform(dsn, broker.endpoint, workdir, "PB-", broker=broker, quiet=True) as plat:
            bridge = plat.start_bridge()
            pipeline = plat.start_pipeline(*args.pipeline_args)
            live = LiveListener(broker.endpoint)
            for rate in rates:
                results.append(run_phase(
                    "pipeline", dsn=dsn, table="meter_samples", bridge_url=plat.bridge_url, ids=ids, rate=rate,
                    seconds=args.seconds, warmup=args.warmup, workdir=workdir, live=live,
                    consumers={"bridge": bridge.pid, "pipeline": pipeline.pid}, drain_timeout=args.drain_timeout,
                    timeline=args.timeline))
                print(json.dumps(asdict(results[-1])), flush=True)
            if args.catch_up > 0:
                results.append(catch_up("pipeline, catching up alone", plat, pipeline, plat.start_pipeline, dsn=dsn,
                                        table="meter_samples", ids=ids, frames=args.catch_up, workdir=workdir,
                                        timeout=args.drain_timeout))
                print(json.dumps(asdict(results[-1])), flush=True)
            pipeline.stop()
            end_sessions(broker.endpoint, pipeline_client_ids(plat.pipeline_id))  # no queueing for it meanwhile
            if not args.skip_baseline:
                ready = workdir / "naive.ready"
                naive_child = Child("naive", [sys.executable, str(Path(__file__).resolve()), "naive-consumer", "--dsn",
                                              dsn, "--mqtt", mqtt_url(broker.endpoint), "--ready-file", str(ready)],
                                    plat.env(), workdir / "logs" / "naive.log")
                plat.children.append(naive_child.start())
                def start_naive() -> None:
                    ready.unlink(missing_ok=True)
                    if not naive_child.running():
                        naive_child.start()
                    wait_until(ready.exists, timeout=30, what="the naive consumer to subscribe",
                               on_timeout=naive_child.tail)

                start_naive()
                for rate in rates:
                    results.append(run_phase(
                        "naive baseline", dsn=dsn, table=NAIVE_TABLE, bridge_url=plat.bridge_url, ids=ids,
                        rate=rate, seconds=args.seconds, warmup=args.warmup, workdir=workdir, live=None,
                        consumers={"bridge": bridge.pid, "naive": naive_child.pid}, drain_timeout=args.drain_timeout))
                    print(json.dumps(asdict(results[-1])), flush=True)
                if args.catch_up > 0:
                    results.append(catch_up("naive baseline, catching up alone", plat, naive_child, start_naive,
                                            dsn=dsn, table=NAIVE_TABLE, ids=ids, frames=args.catch_up,
                                            workdir=workdir, timeout=args.drain_timeout))
                    print(json.dumps(asdict(results[-1])), flush=True)
    finally:
        if live is not None:
            live.close()
        broker.stop()
        if not args.keep:
            drop_database(admin, db_name)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


def report(results: list[PhaseResult], args: argparse.Namespace) -> None:
    print(f"\n{args.chargers} OCPP 1.6 connections, MeterValues paced to the offered rate; {args.seconds:.0f} s "
          f"measured after {args.warmup:.0f} s of warm-up per phase.\n")
    print("| consumer | offered frames/s | stored rows/s | frame -> TimescaleDB p50 / p99 (max) | "
          "frame -> live state p50 / p99 (of which made by the pipeline) | "
          "backlog drained after | CPU % of one core | load avg 1/5/15 min |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        live = (f"{_s(r.live_p50_ms)} / {_s(r.live_p99_ms)} ({_s(r.live_made_p50_ms)} / {_s(r.live_made_p99_ms)})"
                if r.live_p50_ms is not None else "-")
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r.cpu_pct.items())
        drain = f"{r.drain_s:.0f} s" if r.drain_s >= 0 else f"not within the timeout: {r.missing} rows missing"
        offered = f"{r.offered_per_s:.0f}" if r.offered_per_s else f"({r.arrived} queued)"
        print(f"| {r.name} | {offered} | {r.stored_per_s:.0f} | {_s(r.store_p50_ms)} / "
              f"{_s(r.store_p99_ms)} ({_s(r.store_max_ms)}) | {live} | {drain} | {cpu} | "
              f"{' / '.join(f'{v:.1f}' for v in r.loadavg)} |")
    pipeline = [r for r in results if r.name == "pipeline"]
    naive = [r for r in results if r.name == "naive baseline"]
    print()
    for p, n in zip(pipeline, naive, strict=False):
        if n.stored_per_s:
            print(f"at {p.offered_per_s:.0f} frames/s offered: pipeline / naive stored rows/s = "
                  f"{p.stored_per_s / n.stored_per_s:.2f}")
    alone = {r.name.split(",")[0]: r.stored_per_s for r in results if r.name.endswith("catching up alone")}
    if alone.get("naive baseline"):
        print(f"catching up alone: pipeline / naive rows/s = {alone['pipeline'] / alone['naive baseline']:.2f}")


def _s(ms: float | None) -> str:
    """Milliseconds as text: ms below 10 s, seconds above."""
    if ms is None:
        return "-"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
