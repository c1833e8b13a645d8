"""Micro-benchmark of ingest.publisher.EventPublisher against a real broker.

For each offered rate (0 = as fast as possible) it publishes contract MeterSample events through
``publish()`` -- encoding included, as in the bridge -- and reports:

* acked msgs/s: events / (first publish() .. last PUBACK);
* publish() call time p50/p99/max: what the asyncio loop pays per event (must stay tiny);
* enqueue -> PUBACK latency p50/p99/max, from the ``on_acked`` hook;
* CPU per event of the whole process (encode + publisher + paho): the steadiest figure on a
  shared, noisy machine.

Unpaced latency is mostly queueing (every event is enqueued at once); the paced runs show the
latency a steady load sees. Usage::

    .venv/bin/python bench/publisher_bench.py [--url mqtt://127.0.0.1:1884] [-n 20000]
        [--rates 0,1000,2500] [--seconds 5] [--subscriber]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from control.contract import MeterSample
from control.settings import parse_mqtt_url
from ingest.publisher import EventPublisher


def _pct(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1e6 if sorted_values else 0.0


def _events(n: int, prefix: str) -> list[MeterSample]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [MeterSample(charger_id=f"{prefix}-{i % 100}", connector_id=1, ts=t0 + timedelta(seconds=i),
                        transaction_id=f"tx-{i % 100}", energy_wh=1000.0 + i, power_w=7200.0, current_a=31.4,
                        current_l1_a=10.5, current_l2_a=10.4, current_l3_a=10.5, voltage_v=230.1, soc_pct=55.0)
            for i in range(n)]


def run(url: str, n: int, rate: float, max_inflight: int) -> str:
    endpoint = parse_mqtt_url("--url", url)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    events = _events(n, prefix)
    latencies: list[int] = []
    done = threading.Event()

    def on_acked(topic: str, enqueued_ns: int) -> None:
        latencies.append(time.monotonic_ns() - enqueued_ns)
        if len(latencies) >= n:
            done.set()

    call_ns: list[int] = []
    with tempfile.TemporaryDirectory() as spool_dir:
        publisher = EventPublisher(endpoint, client_id=f"{prefix}-pub", spool_dir=Path(spool_dir),
                                   max_inflight=max_inflight, on_acked=on_acked)
        publisher.start()
        deadline = time.monotonic() + 10
        while not publisher.stats().connected:
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot connect to {endpoint.url}")
            time.sleep(0.01)
        start, cpu_start = time.monotonic(), time.process_time()
        for i, event in enumerate(events):
            if rate > 0:
                lag = start + i / rate - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            t = time.perf_counter_ns()
            publisher.publish(event)
            call_ns.append(time.perf_counter_ns() - t)
        finished = done.wait(timeout=max(60.0, 5 * n / 1000))
        elapsed, cpu = time.monotonic() - start, time.process_time() - cpu_start
        stats = publisher.stats()
        publisher.stop(timeout=5)
    latencies.sort()
    call_ns.sort()
    offered = "unpaced" if rate <= 0 else f"{rate:,.0f}/s offered"
    return (f"{offered:>18}: {len(latencies):,}/{n:,} acked{'' if finished else ' (TIMED OUT)'} in {elapsed:.2f} s"
            f" = {len(latencies) / elapsed:,.0f} msgs/s acked | publish() p50 {_pct(call_ns, .5) * 1e3:.0f} us"
            f" p99 {_pct(call_ns, .99) * 1e3:.0f} us max {_pct(call_ns, 1) * 1e3:.0f} us"
            f" | enqueue->PUBACK p50 {_pct(latencies, .5):.2f} ms p99 {_pct(latencies, .99):.2f} ms"
            f" max {_pct(latencies, 1):.2f} ms | CPU {cpu / n * 1e6:.0f} us/event (whole process)"
            f" | dropped {stats.dropped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("FLOWBANK_MQTT_URL", "mqtt://127.0.0.1:1884"))
    parser.add_argument("-n", type=int, default=20_000, help="events in the unpaced run")
    parser.add_argument("--rates", default="0,1000,2500", help="offered msgs/s, comma separated; 0 = unpaced")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each paced run")
    parser.add_argument("--max-inflight", type=int, default=1_000)
    parser.add_argument("--subscriber", action="store_true",
                        help="run mosquitto_sub (QoS1) on the events, as the pipeline would")
    args = parser.parse_args()

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {os.cpu_count()} cores ({affinity} usable), {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, paho-mqtt {version('paho-mqtt')}")
    print(f"broker: {parse_mqtt_url('--url', args.url).url}, max_inflight {args.max_inflight}"
          f"{', with a QoS1 subscriber' if args.subscriber else ''}")
    subscriber = None
    if args.subscriber:
        mosquitto_sub = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
        endpoint = parse_mqtt_url("--url", args.url)
        subscriber = subprocess.Popen([mosquitto_sub, "-h", endpoint.host, "-p", str(endpoint.port), "-q", "1",
                                       "-t", "flowbank/v1/ev/+/meter_sample"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        for rate in (float(r) for r in args.rates.split(",")):
            n = args.n if rate <= 0 else int(rate * args.seconds)
            print(run(args.url, n, rate, args.max_inflight), flush=True)
    finally:
        if subscriber is not None:
            subscriber.terminate()
            subscriber.wait(timeout=5)


if __name__ == "__main__":
    main()
