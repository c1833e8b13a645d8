"""Load generator for ``bench/bridge_bench.py``: M raw-websockets OCPP 1.6 chargers in one process.

Each charger connects with Basic auth (``ocpp1.6``, permessage-deflate offered unless
``--no-deflate``, as websockets clients do by default), sends one BootNotification, then
MeterValues frames (3-phase, 8 sampled values: energy register, power, current and voltage per
phase, like ``ingest/sim``) with **one call in flight**, as a real charger does. Paced mode gives
every connection an equal share of the target rate (spread evenly in time; a connection more
than a second behind its schedule skips ahead rather than bursting); rate 0 means flat out (the
next frame goes as soon as the CALLRESULT is in).

Control is line-based on stdin, answers are JSON lines on stdout:

* ``rate R`` -- frames/s for this process (0 = flat out); answers ``{"ok": true}``;
* ``mark`` -- answers the counters since the previous mark: CALLRESULTs, CALLERRORs, other
  replies, the round-trip histogram (client send -> CALLRESULT, ns buckets of
  :class:`ingest.latency.LatencyHistogram`) and this process's CPU seconds;
* ``stop`` -- closes the connections and exits.

Started by the bench as ``python bench/bridge_loadgen.py --url ws://... --ids CP1,CP2 --password P``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from ingest.latency import LatencyHistogram

PHASES = ("L1", "L2", "L3")


def meter_values(seq: int, transaction_id: int, now: datetime) -> dict[str, Any]:
    def sv(measurand: str, value: str, unit: str, phase: str | None = None) -> dict[str, str]:
        out = {"value": value, "context": "Sample.Periodic", "format": "Raw", "measurand": measurand,
               "location": "Outlet", "unit": unit}
        if phase is not None:
            out["phase"] = phase
        return out

    amps = [16.0 + (seq % 7) * 0.01, 15.98, 16.02]
    values = [sv("Energy.Active.Import.Register", f"{100_000 + seq * 3:.0f}", "Wh"),
              sv("Power.Active.Import", f"{sum(amps) * 230.0:.1f}", "W")]
    values += [sv("Current.Import", f"{a:.2f}", "A", p) for a, p in zip(amps, PHASES, strict=True)]
    values += [sv("Voltage", f"{230.0 + i * 0.4:.1f}", "V", f"{p}-N") for i, p in enumerate(PHASES)]
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"connectorId": 1, "transactionId": transaction_id,
            "meterValue": [{"timestamp": stamp, "sampledValue": values}]}


class Shared:
    def __init__(self) -> None:
        self.interval = -1.0  # seconds between one connection's frames; 0 = flat out, < 0 = paused
        self.epoch = 0  # bumped on every rate change: connections re-plan their schedule
        self.results = self.errors = self.other = 0
        self.rtt = LatencyHistogram()
        self.running = True


async def _connect(url: str, charger_id: str, password: str, deflate: bool) -> ClientConnection:
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    for attempt in range(20):
        try:
            return await connect(f"{url}/{charger_id}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                 additional_headers={"Authorization": f"Basic {token}"},
                                 compression="deflate" if deflate else None, ping_interval=None,
                                 open_timeout=60, max_size=1 << 20)
        except OSError:
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"{charger_id}: cannot connect to {url}")


async def _charger(ws: ClientConnection, index: int, shared: Shared) -> None:
    loop = asyncio.get_running_loop()
    boot = orjson.dumps([2, "boot", "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "B1"}])
    await ws.send(boot, text=True)
    await ws.recv(decode=False)
    transaction_id = 10_000 + index
    payload = meter_values(0, transaction_id, datetime.now(UTC))  # updated in place: cheap for the generator
    entry = payload["meterValue"][0]
    values = entry["sampledValue"]
    call: list[Any] = [2, "", "MeterValues", payload]
    seq, epoch, next_at, last_stamp = 0, -1, 0.0, ""
    while shared.running:
        interval = shared.interval
        if interval < 0:  # paused
            await asyncio.sleep(0.05)
            continue
        if interval > 0:
            now = loop.time()
            if epoch != shared.epoch:
                epoch, next_at = shared.epoch, now + random.random() * interval
            elif now - next_at > 1.0:
                next_at = now
            if next_at > now:  # short naps, so a rate change takes effect at once
                await asyncio.sleep(min(next_at - now, 0.2))
                continue
            next_at += interval
        seq += 1
        values[0]["value"] = str(100_000 + seq * 3)  # the energy register counts up
        values[2]["value"] = f"{16.0 + (seq % 7) * 0.01:.2f}"
        stamp = _stamp()
        while stamp <= last_stamp:  # a sample per millisecond at most: a repeated time is a duplicate reading
            await asyncio.sleep(0.001)
            stamp = _fresh_stamp()
        entry["timestamp"] = last_stamp = stamp
        call[1] = f"m{seq}"
        frame = orjson.dumps(call)
        sent = time.monotonic_ns()
        await ws.send(frame, text=True)
        reply = await ws.recv(decode=False)
        while reply.startswith(b"[2,"):  # the bridge's own CALL (its capability question after the boot): unanswered
            reply = await ws.recv(decode=False)
        rtt = time.monotonic_ns() - sent
        if reply.startswith(b"[3,"):
            shared.results += 1
            shared.rtt.record(rtt)
        elif reply.startswith(b"[4,"):
            shared.errors += 1
        else:
            shared.other += 1


_last_stamp: list[Any] = [0.0, ""]


def _stamp() -> str:
    """The current UTC time, ISO 8601 with milliseconds (recomputed at most every 10 ms)."""
    now = time.monotonic()
    if now - _last_stamp[0] > 0.01:
        _last_stamp[:] = [now, _fresh_stamp()]
    stamp: str = _last_stamp[1]
    return stamp


def _fresh_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    ids = args.ids.split(",")
    shared = Shared()
    sem = asyncio.Semaphore(16)

    async def open_one(charger_id: str) -> ClientConnection:
        async with sem:
            return await _connect(args.url, charger_id, args.password, not args.no_deflate)

    sockets = await asyncio.gather(*(open_one(i) for i in ids))
    tasks = [asyncio.create_task(_charger(ws, args.first_index + n, shared)) for n, ws in enumerate(sockets)]
    _emit({"ready": len(sockets)})
    cpu0, wall0, rtt0 = time.process_time(), time.monotonic(), shared.rtt.snapshot()
    counts0 = (0, 0, 0)
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if line.startswith("rate"):
            rate = float(line.split()[1])
            shared.interval = len(sockets) / rate if rate > 0 else 0.0
            shared.epoch += 1
            _emit({"ok": True})
        elif line == "mark":
            counts = (shared.results, shared.errors, shared.other)
            rtt, cpu, wall = shared.rtt.snapshot(), time.process_time(), time.monotonic()
            _emit({"results": counts[0] - counts0[0], "errors": counts[1] - counts0[1],
                   "other": counts[2] - counts0[2], "cpu_s": cpu - cpu0, "wall_s": wall - wall0,
                   "rtt": {"new": rtt, "old": rtt0}})
            cpu0, wall0, rtt0, counts0 = cpu, wall, rtt, counts
        elif line in ("stop", ""):
            break
    shared.running = False
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    _emit({"stopped": True})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="ws://host:port/ocpp")
    parser.add_argument("--ids", required=True, help="comma-separated charger ids")
    parser.add_argument("--password", required=True)
    parser.add_argument("--first-index", type=int, default=0, help="numbers the chargers' transaction ids")
    parser.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    asyncio.run(main(parser.parse_args()))
