"""The ground-truth log: what each simulated charger really delivered, as JSON lines.

One ``{"kind": "session", ...}`` line per finished session and one ``{"kind": "fault", ...}`` line
per injected fault (plus a ``{"kind": "bench", ...}`` summary in benchmark mode). Tests and
benchmarks compare the platform's numbers with these lines.

Session line fields:
  charger_id, ocpp_version, connector_id (2.0.1: the EVSE id), session_ref (local, joins faults),
  transaction_id (as the CSMS knows it: 1.6 the id from StartTransaction.conf, 2.0.1 our uuid;
  null if the CSMS never assigned one), id_tag, start_ts, stop_ts (UTC ISO 8601, simulated clock),
  energy_wh (exact energy the meter counted during the session), meter_start_wh / meter_stop_wh
  (the register values sent), stop_reason, faults (codes injected during the session), soc_start,
  soc_end, ev_model, remote_start_id, reservation_id, confirmed (the CSMS acknowledged both the
  start and the stop).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ingest.sim.clock import iso_z
from ingest.sim.model import Session

TruthSink = Callable[[dict[str, Any]], None]


def session_record(charger_id: str, ocpp_version: str, session: Session) -> dict[str, Any]:
    return {
        "kind": "session",
        "charger_id": charger_id,
        "ocpp_version": ocpp_version,
        "connector_id": session.connector_id,
        "session_ref": session.ref,
        "transaction_id": session.tx_id,
        "id_tag": session.id_tag,
        "start_ts": iso_z(session.start_ts),
        "stop_ts": iso_z(session.stop_ts) if session.stop_ts is not None else None,
        "energy_wh": round(session.energy_wh, 3),
        "meter_start_wh": session.meter_start_wh,
        "meter_stop_wh": session.meter_stop_wh,
        "stop_reason": session.stop_reason,
        "faults": list(session.faults),
        "soc_start": round(session.soc_start, 2),
        "soc_end": round(session.soc_end, 2) if session.soc_end is not None else None,
        "ev_model": session.ev_name,
        "remote_start_id": session.remote_start_id,
        "reservation_id": session.reservation_id,
        "confirmed": session.start_acked and session.stop_acked,
    }


def fault_record(charger_id: str, ts: datetime, code: str, *, connector_id: int | None,
                 session_refs: list[str], detail: str | None = None) -> dict[str, Any]:
    return {"kind": "fault", "charger_id": charger_id, "ts": iso_z(ts), "code": code,
            "connector_id": connector_id, "session_refs": session_refs, "detail": detail}


class JsonLinesFile:
    """Append JSON lines to a file, one flushed line per record (the file survives a crash)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(path, "a", encoding="utf-8", buffering=1)

    def __call__(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("ground-truth file already closed")
        self._file.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class MemorySink:
    """Collects records in a list (tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
