"""Benchmark of alert latency (issue 6): triggering frame (or timer deadline) -> alert stored and published.

Goal: p99 under 2 s; requirement: 30 s. Everything is real and local, every process started and
stopped here by PID:

* a private Mosquitto (``tests/integration/e2e_harness.PrivateBroker``, configured like
  ``scripts/services.sh``) and a throw-away PostgreSQL database (created on ``FLOWBANK_PG_DSN``'s
  server, migrated, dropped at the end);
* the production ``flowbank bridge`` and ``flowbank pipeline`` (recovery on, 1 s epochs, 1 worker,
  the production :class:`~control.alerts.AlertConfig`) through ``tests/integration/e2e_harness.py``.
  The one non-default setting is ``FLOWBANK_HEARTBEAT_INTERVAL_S`` (``--heartbeat-s``, 4 s): the
  interval the bridge gives chargers at boot, so that "offline" (silence for 2.5 intervals) comes
  after 10 s instead of 12.5 minutes;
* the chargers: ``--chargers`` raw-websockets OCPP 1.6 connections in a child process of this
  script (role ``chargers``), built with ``bench/bridge_loadgen.py`` (its connect and its
  MeterValues frames: 3-phase, 8 sampled values), one call in flight each. Background load: the
  chargers together send ``--rate`` MeterValues/s for the whole run.

Injected at random moments (seeded), on random chargers, never two at once on one charger:

* **fault**: StatusNotification ``Faulted`` with an error code (GroundFailure, HighTemperature,
  ...) -> a fault alert opens (or reopens, within the production 10 min hold-down); 2-10 s later
  StatusNotification ``Available``/``NoError`` -> it resolves. Reference: the time the frame was
  sent (its OCPP ``timestamp`` is the same instant, which is the alert's ``ts``);
* **silence** (connection open): the charger sends nothing for 2.5 heartbeat intervals + 3-8 s ->
  ``charger_offline`` at the deadline (its last frame at the bridge + 2.5 intervals: the alert's
  ``ts``); then one MeterValues -> the offline alert resolves and a ``charger_back_online`` notice
  is born resolved. Reference: the deadline (offline), the frame's send time (back online);
* **disconnect** (``--disconnects``): the charger closes its socket and reconnects after the
  production grace (60 s) + 3-8 s -> ``charger_offline`` at whichever deadline comes first: the
  silence (with the 4 s interval: 10 s after its last frame) or the close + the grace (60 s; with
  ``--heartbeat-s 30`` the silence allows 75 s, so the grace decides), then back online at the
  reconnection (reference: when the reconnect started, i.e. before the handshake);
* the fifth fault within 15 minutes among chargers of one model opens an ``error_spike`` (all
  chargers share a model): reference its ``ts``, the fault frame that tipped it.

Measured per alert transition the bench expected: (a) ``alert_transitions.recorded_at``
(``clock_timestamp()`` at the insert, inside the sink's transaction, so the commit follows within
milliseconds) minus the reference; (b) the arrival, at a subscriber of this process on
``flowbank/v1/alert/+/+``, of the first alert message with that alert id, state and ``ts``, minus
the reference. Missed = an expected transition not stored (or not published) within
``--settle-s`` after the load stops; unexpected = a stored transition no injection explains.

Usage::

    .venv/bin/python bench/alert_bench.py                          # 50 chargers, 300 frames/s, 180 s (~4 min)
    .venv/bin/python bench/alert_bench.py --rate 500 --faults 150 --silences 40 --json var/alerts.json
    .venv/bin/python bench/alert_bench.py --heartbeat-s 30 --silences 0 --disconnects 15   # the 60 s grace

The chargers stay connected, silent, until the figures are in: they go offline then (as they should);
those alerts are counted apart ("after the load"). Exit status 1 if an expected alert was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # run from anywhere
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from e2e_harness import Platform, PrivateBroker, register_chargers  # noqa: E402
from pipeline_bench import cpu_seconds, create_database, drop_database, machine, percentile  # noqa: E402

from control import contract as c  # noqa: E402
from control.settings import MqttEndpoint  # noqa: E402
from control.topics import ALERTS_ALL  # noqa: E402
from flowbank.config import read_settings  # noqa: E402

PASSWORD = "bench-charger-password-1"  # noqa: S105 - throw-away chargers in a throw-away database
PREFIX = "AB-"
OFFLINE_FACTOR = 2.5  # the production AlertConfig.offline_factor
DISCONNECT_GRACE_S = 60.0  # the production AlertConfig.disconnect_grace
ERROR_CODES = ("GroundFailure", "HighTemperature", "OverCurrentFailure", "PowerMeterFailure", "ConnectorLockFailure",
               "EVCommunicationError", "OverVoltage", "UnderVoltage")

# --------------------------------------------------------------------------- the chargers (child process)


@dataclass
class Injection:
    at_s: float  # seconds after the start of the load
    kind: str  # fault | resolve (queued by its fault) | silence | disconnect
    length_s: float  # fault until the resolve; silence / disconnect until the next frame / reconnect


def plan(chargers: int, *, faults: int, silences: int, disconnects: int, seconds: float, silence_s: float,
         seed: int) -> dict[int, list[Injection]]:
    """Random injections, none overlapping on one charger (3 s apart), all over before the run ends."""
    rng = random.Random(seed)
    out: dict[int, list[Injection]] = {i: [] for i in range(chargers)}
    wanted: list[tuple[str, Callable[[], float]]] = ([("fault", lambda: rng.uniform(2.0, 10.0))] * faults
              + [("silence", lambda: silence_s + rng.uniform(3.0, 8.0))] * silences
              + [("disconnect", lambda: DISCONNECT_GRACE_S + rng.uniform(3.0, 8.0))] * disconnects)
    for kind, length in wanted:
        span = length()
        for _ in range(200):
            index, at_s = rng.randrange(chargers), rng.uniform(10.0, seconds - span - 5.0)
            if at_s > 0 and all(at_s + span + 3.0 < o.at_s or o.at_s + o.length_s + 3.0 < at_s for o in out[index]):
                out[index].append(Injection(at_s, kind, span))
                break
    for items in out.values():
        items.sort(key=lambda i: i.at_s)
    return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Log:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def write(self, **record: Any) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()


async def _run_chargers(args: argparse.Namespace) -> None:
    import orjson
    from bridge_loadgen import _connect, meter_values

    ids = args.ids.split(",")
    injections = plan(len(ids), faults=args.faults, silences=args.silences, disconnects=args.disconnects,
                      seconds=args.seconds, silence_s=args.silence_s, seed=args.seed)
    log = Log(Path(args.log))
    sem = asyncio.Semaphore(16)
    counters = {"results": 0, "errors": 0, "meter": 0}
    last_sent = [0.0] * len(ids)  # per charger: when its latest frame went out

    async def open_one(charger_id: str) -> Any:
        async with sem:
            return await _connect(args.url, charger_id, args.password, True)

    sockets = list(await asyncio.gather(*(open_one(i) for i in ids)))

    async def call(index: int, action: str, payload: dict[str, Any], msg_id: str) -> float:
        sent = last_sent[index] = time.time()
        await sockets[index].send(orjson.dumps([2, msg_id, action, payload]), text=True)
        reply = await sockets[index].recv(decode=False)
        while reply.startswith(b"[2,"):  # the bridge's own CALL (its capability question after the boot): unanswered
            reply = await sockets[index].recv(decode=False)
        counters["results" if reply.startswith(b"[3,") else "errors"] += 1
        counters["meter"] += action == "MeterValues"
        return sent

    for n in range(len(ids)):  # boot (the heartbeat interval comes with it) and a known status
        await call(n, "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "AlertBench"}, "boot")
        await call(n, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                                             "timestamp": _stamp(time.time())}, "st0")
    sys.stdout.write(json.dumps({"ready": len(sockets)}) + "\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    loop = asyncio.get_running_loop()
    start = loop.time()
    log.write(kind="start", wall=time.time())
    interval = len(ids) / args.rate

    async def charger(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        cid = ids[index]
        payload = meter_values(0, 20_000 + index, datetime.now(UTC))
        todo = list(injections[index])
        seq, next_at = 0, start + rng.random() * interval
        while (now := loop.time()) < start + args.seconds:
            if todo and now >= start + todo[0].at_s:
                inj = todo.pop(0)
                seq += 1
                if inj.kind == "fault":  # the MeterValues go on until its resolve (queued as an injection)
                    code = rng.choice(ERROR_CODES)
                    sent = time.time()
                    stamp = _stamp(sent)
                    await call(index, "StatusNotification", {"connectorId": 1, "errorCode": code,
                                                             "status": "Faulted", "timestamp": stamp}, f"f{seq}")
                    log.write(kind="fault", charger=cid, sent=sent, stamp=stamp, code=code)
                    todo.insert(0, Injection(inj.at_s + inj.length_s, "resolve", 0.0))
                elif inj.kind == "resolve":
                    sent = time.time()
                    stamp = _stamp(sent)
                    await call(index, "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                             "status": "Available", "timestamp": stamp}, f"r{seq}")
                    log.write(kind="resolve", charger=cid, sent=sent, stamp=stamp)
                elif inj.kind == "silence":
                    log.write(kind="silence", charger=cid, last_sent=last_sent[index])
                    await asyncio.sleep(inj.length_s)
                    payload["meterValue"][0]["timestamp"] = _stamp(time.time())
                    sent = await call(index, "MeterValues", payload, f"b{seq}")
                    log.write(kind="back", charger=cid, sent=sent)
                else:  # disconnect
                    await sockets[index].close()
                    log.write(kind="disconnect", charger=cid, last_sent=last_sent[index], closed=time.time())
                    await asyncio.sleep(inj.length_s)
                    sent = time.time()
                    sockets[index] = await _connect(args.url, cid, args.password, True)
                    log.write(kind="reconnect", charger=cid, sent=sent)
                next_at = loop.time()
                continue
            if next_at > now:
                await asyncio.sleep(min(next_at - now, 0.2))
                continue
            next_at = max(next_at + interval, now - 1.0)
            seq += 1
            payload["meterValue"][0]["sampledValue"][0]["value"] = str(100_000 + seq * 3)
            payload["meterValue"][0]["timestamp"] = _stamp(time.time())
            await call(index, "MeterValues", payload, f"m{seq}")

    await asyncio.gather(*(charger(n) for n in range(len(ids))))
    log.write(kind="end", wall=time.time(), **counters)
    sys.stdout.write(json.dumps({"done": True, **counters}) + "\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)  # "stop": the sockets stay open until the bench has its figures
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# --------------------------------------------------------------------------- the alert listener


class AlertListener:
    """Every alert message on the broker, with its arrival time here."""

    def __init__(self, endpoint: MqttEndpoint) -> None:
        self.first: dict[tuple[str, str], list[tuple[datetime, float]]] = {}  # (alert id, state) -> (ts, arrival)
        self.messages = 0
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-alerts-{secrets.token_hex(3)}",
                                   protocol=mqtt.MQTTv5)
        self._subscribed = threading.Event()
        self._client.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(ALERTS_ALL, qos=1)
        self._client.on_subscribe = lambda cl, ud, mid, rc, pr: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(endpoint.host, endpoint.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(15):
            raise RuntimeError("the alert listener could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        alert = c.decode(bytes(msg.payload))
        if isinstance(alert, c.Alert):
            with self._lock:
                self.messages += 1
                self.first.setdefault((alert.alert_id, alert.state.value), []).append((alert.ts, arrived))

    def arrival(self, alert_id: str, state: str, ts: datetime) -> float | None:
        """The first message with this id and state and ``ts`` (to the millisecond: the contract's precision)."""
        with self._lock:
            seen = list(self.first.get((alert_id, state), ()))
        return next((arrived for t, arrived in seen if abs((t - ts).total_seconds()) < 0.001), None)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# --------------------------------------------------------------------------- matching


@dataclass
class Expected:
    kind: str  # the row label: fault opened, fault resolved, offline (silence), ...
    alert_kind: str
    charger: str | None
    to_state: str
    ref: float | None  # epoch s; None: the stored transition's ts (a deadline)
    ts_from: float  # the transition's ts must lie in [ts_from, ts_to]
    ts_to: float
    store_s: float | None = None
    mqtt_s: float | None = None


@dataclass
class Row:
    kind: str
    expected: int
    stored: int
    published: int
    store_ms: list[float | None] = field(default_factory=list)  # p50, p95, p99, max
    mqtt_ms: list[float | None] = field(default_factory=list)


def expectations(log: list[dict[str, Any]], heartbeat_s: float) -> list[Expected]:
    silence = heartbeat_s * OFFLINE_FACTOR
    out: list[Expected] = []
    for r in log:
        k, cid = r["kind"], r.get("charger")
        if k == "fault":
            t = datetime.fromisoformat(r["stamp"].replace("Z", "+00:00")).timestamp()
            out.append(Expected("fault opened", "fault", cid, "open", r["sent"], t - 0.0005, t + 0.0005))
        elif k == "resolve":
            t = datetime.fromisoformat(r["stamp"].replace("Z", "+00:00")).timestamp()
            out.append(Expected("fault resolved", "fault", cid, "resolved", r["sent"], t - 0.0005, t + 0.0005))
        elif k == "silence":  # deadline: its last frame at the bridge + the silence allowed
            t = r["last_sent"] + silence
            out.append(Expected("offline (silence, timer)", "charger_offline", cid, "open", None, t - 0.1, t + 1.0))
        elif k == "disconnect":  # whichever comes first: the silence, or the close + the grace
            if r["last_sent"] + silence <= r["closed"] + DISCONNECT_GRACE_S:
                t = r["last_sent"] + silence
                out.append(Expected("offline (closed, silence timer)", "charger_offline", cid, "open", None, t - 0.1,
                                    t + 1.0))
            else:  # in the charger's terms: its last frame + the time to the close + the grace (pipeline clocks)
                t = r["closed"] + DISCONNECT_GRACE_S
                out.append(Expected("offline (closed, grace timer)", "charger_offline", cid, "open", None, t - 0.5,
                                    t + 3.0))
        elif k in ("back", "reconnect"):  # resolved at the bridge's stamp of the first frame / connection
            t = r["sent"]
            out.append(Expected("back online: offline resolved", "charger_offline", cid, "resolved", t, t - 0.05,
                                t + 5.0))
            out.append(Expected("back online: notice", "charger_back_online", cid, "resolved", t, t - 0.05, t + 5.0))
    return out


def fetch_transitions(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select t.alert_id, a.kind, a.charger_id, t.from_state, t.to_state, t.ts, t.recorded_at"
                    " from alert_transitions t join alerts a using (alert_id) where t.actor = 'pipeline'"
                    " order by t.recorded_at")
        cols = [d.name for d in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def match(expected: list[Expected], transitions: list[dict[str, Any]], listener: AlertListener,
          log: list[dict[str, Any]]) -> tuple[list[Expected], list[dict[str, Any]]]:
    """Pair each expectation with its stored transition; returns (spike expectations, unexplained)."""
    unused = list(transitions)
    for e in expected:
        for t in unused:
            ts = t["ts"].timestamp()
            if (t["kind"], t["charger_id"], t["to_state"]) == (e.alert_kind, e.charger, e.to_state) \
                    and e.ts_from <= ts <= e.ts_to:
                ref = e.ref if e.ref is not None else ts
                e.store_s = t["recorded_at"].timestamp() - ref
                arrived = listener.arrival(t["alert_id"], t["to_state"], t["ts"])
                e.mqtt_s = None if arrived is None else arrived - ref
                unused.remove(t)
                break
    # Error spikes: referenced by their ts (the fault frame that made the count).
    fault_sent = {r["stamp"]: r["sent"] for r in log if r["kind"] == "fault"}
    spikes: list[Expected] = []
    for t in [t for t in unused if t["kind"] == "error_spike"]:
        stamp = _stamp(t["ts"].timestamp())
        ref = fault_sent.get(stamp, t["ts"].timestamp())
        label = "error spike opened" if t["to_state"] == "open" else "error spike resolved (window timer)"
        arrived = listener.arrival(t["alert_id"], t["to_state"], t["ts"])
        spikes.append(Expected(label, "error_spike", None, t["to_state"], ref, 0, 0,
                               t["recorded_at"].timestamp() - ref, None if arrived is None else arrived - ref))
        unused.remove(t)
    return spikes, unused


def summarise(label: str, items: list[Expected]) -> Row:
    def ms(values: list[float]) -> list[float | None]:
        values = sorted(values)
        return [None if (v := percentile(values, q)) is None else round(v * 1000.0, 1) for q in (0.5, 0.95, 0.99)] \
            + [round(values[-1] * 1000.0, 1) if values else None]

    stored = [e.store_s for e in items if e.store_s is not None]
    published = [e.mqtt_s for e in items if e.mqtt_s is not None]
    return Row(label, len(items), len(stored), len(published), ms(stored), ms(published))


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = read_settings({k: v for k, v in os.environ.items() if k.startswith("FLOWBANK_")})
    admin = settings.pg_dsn.reveal()
    workdir = Path(f"/tmp/flowbank-alert-bench-{secrets.token_hex(3)}")  # noqa: S108
    dsn, db_name = create_database(admin)
    ids = [f"{PREFIX}{i:04d}" for i in range(1, args.chargers + 1)]
    register_chargers(dsn, ids, PASSWORD, site_id="bench", scrypt_n=2**11)
    print(f"[bench] {machine()}; database {db_name}; work directory {workdir}", flush=True)
    broker = PrivateBroker(workdir / "broker").start()
    listener: AlertListener | None = None
    chargers: subprocess.Popen[str] | None = None
    charger_log = workdir / "injections.jsonl"
    result: dict[str, Any] = {}
    try:
        env = {"FLOWBANK_HEARTBEAT_INTERVAL_S": str(args.heartbeat_s)}
        with Platform(dsn, broker.endpoint, workdir, PREFIX, broker=broker, quiet=True, extra_env=env) as plat:
            bridge = plat.start_bridge()
            pipeline = plat.start_pipeline()
            listener = AlertListener(broker.endpoint)
            with (workdir / "chargers.err").open("ab") as err:
                chargers = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "chargers", "--url", plat.bridge_url, "--ids",
                     ",".join(ids), "--password", PASSWORD, "--rate", str(args.rate), "--seconds", str(args.seconds),
                     "--faults", str(args.faults), "--silences", str(args.silences), "--disconnects",
                     str(args.disconnects), "--silence-s", str(args.heartbeat_s * OFFLINE_FACTOR), "--seed",
                     str(args.seed), "--log", str(charger_log)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
            assert chargers.stdin is not None and chargers.stdout is not None
            ready = chargers.stdout.readline()
            if not ready:
                raise RuntimeError(f"the chargers exited ({chargers.poll()}); see {workdir / 'chargers.err'}")
            time.sleep(5.0)  # the boots and first statuses through the pipeline
            load0 = os.getloadavg()
            procs = {"bridge": bridge.pid, "pipeline": pipeline.pid, "chargers": chargers.pid}
            cpu0, t0 = {k: cpu_seconds(p) for k, p in procs.items()}, time.monotonic()
            chargers.stdin.write("go\n")
            chargers.stdin.flush()
            done = json.loads(chargers.stdout.readline() or "{}")
            elapsed = time.monotonic() - t0
            cpu = {k: round(100.0 * (cpu_seconds(p) - cpu0[k]) / elapsed, 1) for k, p in procs.items()}
            load1 = os.getloadavg()
            log = [json.loads(line) for line in charger_log.read_text().splitlines()]
            expected = expectations(log, args.heartbeat_s)
            # Settle: until every expected transition is stored and published, or the timeout.
            deadline = time.monotonic() + args.settle_s
            while True:
                transitions = fetch_transitions(dsn)
                for e in expected:
                    e.store_s = e.mqtt_s = None
                spikes, unexplained = match(expected, transitions, listener, log)
                complete = all(e.store_s is not None and e.mqtt_s is not None for e in expected)
                if complete or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            chargers.stdin.write("stop\n")
            chargers.stdin.flush()
            chargers.wait(timeout=30)
            meter_frames = done.get("meter", 0)
    finally:
        if chargers is not None and chargers.poll() is None:
            chargers.kill()
            chargers.wait(timeout=10)
        if listener is not None:
            listener.close()
        broker.stop()
        if not args.keep:
            drop_database(admin, db_name)
            shutil.rmtree(workdir, ignore_errors=True)
    labels = ["fault opened", "fault resolved", "offline (silence, timer)", "offline (closed, silence timer)",
              "offline (closed, grace timer)",
              "back online: offline resolved", "back online: notice"]
    rows = [summarise(label, [e for e in expected if e.kind == label]) for label in labels]
    rows = [r for r in rows if r.expected]
    for label in ("error spike opened", "error spike resolved (window timer)"):
        if mine := [s for s in spikes if s.kind == label]:
            rows.append(summarise(label, mine))
    rows.append(summarise("all", expected + spikes))
    # Once the load stops, the chargers are silent (their sockets open) until the bench has its figures: they
    # go offline then, as they should. Counted apart.
    load_end = next(r["wall"] for r in log if r["kind"] == "end")
    after_load = [t for t in unexplained if t["ts"].timestamp() >= load_end]
    unexplained = [t for t in unexplained if t["ts"].timestamp() < load_end]
    unexplained_kinds: dict[str, int] = {}
    for t in unexplained:
        unexplained_kinds[f"{t['kind']} -> {t['to_state']}"] = unexplained_kinds.get(
            f"{t['kind']} -> {t['to_state']}", 0) + 1
    result = {
        "machine": machine(), "chargers": args.chargers, "rate": args.rate, "seconds": round(elapsed, 1),
        "heartbeat_s": args.heartbeat_s, "meter_frames_per_s": round(meter_frames / elapsed, 1),
        "charger_errors": done.get("errors"), "cpu_pct": cpu, "loadavg_start": [round(v, 2) for v in load0],
        "loadavg_end": [round(v, 2) for v in load1], "rows": [asdict(r) for r in rows],
        "missed_store": [asdict(e) for e in expected if e.store_s is None],
        "missed_mqtt": [asdict(e) for e in expected if e.store_s is not None and e.mqtt_s is None],
        "unexplained": unexplained_kinds, "after_load": len(after_load),
        "mqtt_messages": listener.messages if listener else 0,
    }
    return result


def report(res: dict[str, Any]) -> None:
    print(f"\n{res['machine']}")
    print(f"{res['chargers']} OCPP 1.6 chargers, {res['meter_frames_per_s']:.0f} MeterValues/s for "
          f"{res['seconds']:.0f} s"
          f" (offered {res['rate']:.0f}); heartbeat interval {res['heartbeat_s']:g} s (offline after "
          f"{res['heartbeat_s'] * OFFLINE_FACTOR:g} s of silence); CALLERRORs {res['charger_errors']}; "
          f"CPU % of one core: {', '.join(f'{k} {v:.0f}' for k, v in res['cpu_pct'].items())}; load average "
          f"{' / '.join(map(str, res['loadavg_start']))} at the start, {' / '.join(map(str, res['loadavg_end']))} "
          f"at the end\n")
    print("| alert transition | expected | stored | published | -> stored p50 / p95 / p99 (max) "
          "| -> published p50 / p95 / p99 (max) |")
    print("|---|---|---|---|---|---|")
    for r in res["rows"]:
        def fmt(v: list[float | None]) -> str:
            return " / ".join(_s(x) for x in v[:3]) + f" ({_s(v[3])})"
        print(f"| {r['kind']} | {r['expected']} | {r['stored']} | {r['published']} | {fmt(r['store_ms'])} | "
              f"{fmt(r['mqtt_ms'])} |")
    print(f"\nmissed (not stored): {len(res['missed_store'])}; stored but not published: {len(res['missed_mqtt'])}; "
          f"stored transitions no injection explains: {res['unexplained'] or 'none'} (and {res['after_load']} "
          f"after the load stopped: the chargers fall silent)")
    for e in res["missed_store"][:10] + res["missed_mqtt"][:10]:
        print(f"  missed: {e}")


def _s(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=300.0, help="background MeterValues/s, all chargers together")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the load (injections within it)")
    parser.add_argument("--faults", type=int, default=120, help="fault episodes (a Faulted, then its NoError)")
    parser.add_argument("--silences", type=int, default=30, help="silent spells with the connection open")
    parser.add_argument("--disconnects", type=int, default=5, help="closed connections (60 s grace before offline)")
    parser.add_argument("--heartbeat-s", type=int, default=4, help="FLOWBANK_HEARTBEAT_INTERVAL_S (default 4)")
    parser.add_argument("--settle-s", type=float, default=60.0, help="wait this long for the last alerts")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the database and the work directory")
    sub = parser.add_subparsers(dest="role")
    ch = sub.add_parser("chargers", help=argparse.SUPPRESS)
    ch.add_argument("--url", required=True)
    ch.add_argument("--ids", required=True)
    ch.add_argument("--password", required=True)
    ch.add_argument("--rate", type=float, required=True)
    ch.add_argument("--seconds", type=float, required=True)
    ch.add_argument("--faults", type=int, required=True)
    ch.add_argument("--silences", type=int, required=True)
    ch.add_argument("--disconnects", type=int, required=True)
    ch.add_argument("--silence-s", type=float, required=True)
    ch.add_argument("--seed", type=int, required=True)
    ch.add_argument("--log", required=True)
    args = parser.parse_args()
    if args.role == "chargers":
        asyncio.run(_run_chargers(args))
        return 0
    res = run(args)
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0 if not res["missed_store"] and not res["missed_mqtt"] else 1


if __name__ == "__main__":
    sys.exit(main())
