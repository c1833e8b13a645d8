"""In-process costs of the bridge's hot path, stage by stage, for one 1.6 MeterValues frame.

No network, no broker: each stage of ``ChargerSession`` is timed on its own with the frame the
load generator of ``bench/bridge_bench.py`` sends (3-phase, 8 sampled values), best of 5 rounds
of ``-n`` calls, in CPU time (``time.process_time``) so a busy machine disturbs it less. The
remaining per-frame costs -- websockets, the asyncio loop, the publisher's thread and the kernel
-- only show in the whole-process figure of ``bench/bridge_bench.py``.

``--ocpp`` adds what the ``ocpp`` library's own path (unpack, jsonschema validation, key
conversion to snake_case) costs for the same frame.

Usage: ``.venv/bin/python bench/bridge_stages.py [--ocpp] [-n 2000]``. It measures the tree it
sits in, so running the copy of another version compares the two.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_loadgen import meter_values

from control.contract import OcppVersion
from ingest import replies
from ingest.normalize import normalize_call
from ingest.validation import parse_frame, validate_call

V16 = OcppVersion.V16


def _best(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


def _encoder() -> tuple[str, Callable[[Any], bytes], Callable[[Any], str]]:
    # Look for the file: an editable install would import a module this tree lacks from another.
    if (Path(replies.__file__).parent / "encoding.py").exists():  # the optimized bridge
        from ingest.encoding import encode_event, event_topic

        return "encode (ingest.encoding) + topic", encode_event, event_topic
    from control.contract import encode  # before: what the publisher called
    from control.topics import topic_for

    return "encode (control.contract) + topic", encode, topic_for


def stage_costs(n: int) -> list[tuple[str, float]]:
    raw = orjson.dumps([2, "m1", "MeterValues", meter_values(1, 10_001, datetime.now(UTC))])
    handled = frozenset(replies.handlers(V16))
    frame: Any = parse_frame(raw, V16)
    now = datetime.now(UTC)
    events = normalize_call(V16, "BENCH-00001", frame.action, frame.payload, received_at=now, transaction_id=None)
    label, encode, topic = _encoder()
    return [
        (f"parse (orjson, {len(raw)} bytes)", _best(lambda: parse_frame(raw, V16), n)),
        ("validate (fastjsonschema)", _best(lambda: validate_call(V16, frame, handled), n)),
        ("normalize to MeterSample", _best(lambda: normalize_call(V16, "BENCH-00001", frame.action, frame.payload,
                                                                  received_at=now), n)),
        (label, _best(lambda: (topic(events[0]), encode(events[0])), n)),
        ("reply (orjson)", _best(lambda: orjson.dumps([3, frame.message_id, {}]), n)),
    ]


def compare_validation(n: int) -> list[tuple[str, float]]:
    from ocpp.charge_point import camel_to_snake_case
    from ocpp.messages import _validate_payload, unpack

    raw = orjson.dumps([2, "m1", "MeterValues", meter_values(1, 10_001, datetime.now(UTC))])
    handled = frozenset(replies.handlers(V16))

    def stock() -> None:
        msg = unpack(raw.decode())
        _validate_payload(msg, "1.6")
        camel_to_snake_case(msg.payload)

    return [("bridge: parse + validate", _best(lambda: validate_call(V16, parse_frame(raw, V16), handled), n)),  # type: ignore[arg-type]
            ("ocpp library: unpack + jsonschema + snake_case", _best(stock, max(1, n // 4)))]


def report(rows: list[tuple[str, float]], title: str, *, total: bool = True) -> str:
    lines = [title, "| stage | CPU µs per frame |", "|---|---|"]
    lines += [f"| {name} | {us:.1f} |" for name, us in rows]
    if total:
        lines.append(f"| **sum** | **{sum(us for _, us in rows):.1f}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="calls per round")
    parser.add_argument("--ocpp", action="store_true", help="also time the ocpp library's validation path")
    args = parser.parse_args()
    print(report(stage_costs(args.n), f"hot-path stages of {Path(__file__).resolve().parent.parent}"))
    if args.ocpp:
        print()
        print(report(compare_validation(args.n), "validation of the same frame", total=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
