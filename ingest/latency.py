"""Latency accounting for the bridge's own measurements (``bench/bridge_bench.py``).

:class:`LatencyHistogram` is a log-linear histogram of nanosecond latencies: exact below 128 ns,
then 64 buckets per power of two (a bucket is at most 1/64 ≈ 1.6 % wide), so memory stays a
few KB whatever the count. ``record`` is a handful of integer operations, cheap enough for
the publisher's per-PUBACK hook. Snapshots are cumulative; subtract two (:func:`diff`) to get
the latencies of a time window.

:class:`StatsFile` is what ``FLOWBANK_BRIDGE_STATS_FILE`` switches on in a bridge process: a
histogram of frame received -> PUBACK for every event the bridge publishes, written as JSON to
that file (atomically) when the bridge starts, on SIGUSR1 and when it stops.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

_SUB_BITS: Final = 6
_SUB: Final = 1 << _SUB_BITS  # 64 buckets per power of two
_EXACT: Final = 2 * _SUB  # values below this have a bucket of their own
_MAX_INDEX: Final = _SUB * 64  # room for any int64 latency

STATS_FILE_ENV: Final = "FLOWBANK_BRIDGE_STATS_FILE"


def bucket_index(value: int) -> int:
    if value < _EXACT:
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS - 1
    return (shift << _SUB_BITS) + (value >> shift)


def bucket_low(index: int) -> int:
    """The smallest value that falls in bucket ``index``."""
    if index < _EXACT:
        return index
    shift = (index >> _SUB_BITS) - 1
    return ((index & (_SUB - 1)) + _SUB) << shift


def bucket_mid(index: int) -> float:
    return (bucket_low(index) + bucket_low(index + 1) - 1) / 2


class LatencyHistogram:
    """Counts per bucket. One writer thread; ``snapshot()`` may run on another (a list copy)."""

    __slots__ = ("_counts", "count", "max_ns", "sum_ns")

    def __init__(self) -> None:
        self._counts = [0] * _MAX_INDEX
        self.count = 0
        self.sum_ns = 0
        self.max_ns = 0

    def record(self, latency_ns: int) -> None:
        if latency_ns < _EXACT:
            index = max(latency_ns, 0)
        else:
            shift = latency_ns.bit_length() - _SUB_BITS - 1
            index = (shift << _SUB_BITS) + (latency_ns >> shift)
        self._counts[index] += 1
        self.count += 1
        self.sum_ns += latency_ns
        if latency_ns > self.max_ns:
            self.max_ns = latency_ns

    def snapshot(self) -> dict[str, Any]:
        counts = list(self._counts)
        return {"count": self.count, "sum_ns": self.sum_ns, "max_ns": self.max_ns,
                "buckets": {str(i): c for i, c in enumerate(counts) if c}}


def diff(later: Mapping[str, Any], earlier: Mapping[str, Any] | None) -> dict[int, int]:
    """Bucket counts recorded between two snapshots (``earlier`` None: since the start)."""
    before = {int(k): v for k, v in (earlier or {}).get("buckets", {}).items()}
    out = {int(k): v - before.get(int(k), 0) for k, v in later.get("buckets", {}).items()}
    return {k: v for k, v in out.items() if v > 0}


def merge(*histograms: Mapping[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            out[index] = out.get(index, 0) + count
    return out


def percentile(buckets: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in ns, to the bucket's resolution; None when empty."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank, seen = q * (total - 1), 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen > rank:
            return bucket_mid(index)
    return bucket_mid(max(buckets))  # pragma: no cover - unreachable


class StatsFile:
    """The bridge's latency histogram and the file it is dumped to (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acked = LatencyHistogram()
        self._seq = 0

    def on_acked(self, topic: str, since_ns: int) -> None:
        """The publisher's hook (paho's thread): ``since_ns`` is when the frame arrived."""
        self.acked.record(time.monotonic_ns() - since_ns)

    def write(self, **extra: Any) -> None:
        self._seq += 1
        data = {"pid": os.getpid(), "seq": self._seq, "monotonic_ns": time.monotonic_ns(),
                "frame_to_puback": self.acked.snapshot(), **extra}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.path)
