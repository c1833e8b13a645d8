"""An external limit end to end: a simulated OCPP 2.0.1 charger reports a grid operator's limit
(NotifyChargingLimit) through the real bridge, Mosquitto and pipeline; load management caps that
charger, gives the other the capacity it cannot use, audits it and raises a grid-critical alert;
ClearedChargingLimit gives the capacity back and resolves the alert.

The simulator is driven on demand through its control file (``--control-file``, see
``ingest/sim/external.py``). Decisions are read from PostgreSQL as stored by the pipeline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_harness import Platform, PrivateBroker, register_chargers, wait_until
from site_run import save_site

pytestmark = pytest.mark.integration

PASSWORD = "e2e-external-limit-1"
SITE = "ext-site"
PREFIX = "EXT-"
CHARGERS = [f"{PREFIX}0001", f"{PREFIX}0002"]
CAPPED, OTHER = CHARGERS


def _latest(dsn: str, charger: str) -> dict[str, Any] | None:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select ts, new_limit_a, reason, binding, inputs, command_id from control_decisions"
                           " where charger_id = %s order by ts desc, command_id nulls first limit 1",
                           (charger,)).fetchone()


def _limits(dsn: str) -> dict[str, float] | None:
    rows = {c: _latest(dsn, c) for c in CHARGERS}
    if any(row is None for row in rows.values()):
        return None
    return {c: float(row["new_limit_a"]) for c, row in rows.items() if row is not None}


def _alerts(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select alert_id, state, charger_id from alerts where kind = 'grid_critical_limit'"
                            " order by ts").fetchall()
    return [(str(a), str(s), str(c)) for a, s, c in rows]


def _outcome(dsn: str, command_id: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select command_outcome from control_audit where command_id = %s", (command_id,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _control(path: Path, **line: Any) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


@pytest.mark.timeout(180)
def test_a_grid_operator_limit_from_a_charger_caps_it_and_frees_capacity(pg_dsn: str, broker: PrivateBroker,
                                                                        tmp_path: Path) -> None:
    register_chargers(pg_dsn, CHARGERS, PASSWORD, site_id=SITE, scrypt_n=2**11)
    save_site(pg_dsn, {
        "site_id": SITE, "name": "External limits", "circuits": [{"id": "main", "limit_a": 33}],
        "chargers": [{"id": cid, "circuit": "main", "max_current_a": 32} for cid in CHARGERS],
    })
    control = tmp_path / "sim-control.jsonl"
    started = time.monotonic()
    with Platform(pg_dsn, broker.endpoint, tmp_path / "platform", PREFIX, broker=broker) as platform:
        platform.start_pipeline()
        platform.start_bridge()
        platform.start_simulator("sim", [
            "--chargers", "2", "--id-prefix", PREFIX, "--v201-fraction", "1", "--dc", "0",
            "--single-phase-fraction", "0", "--two-connector-fraction", "0", "--seed", "5", "--speed", "1",
            "--meter-interval", "2", "--first-arrival-max", "2", "--dwell-min", "600", "--dwell-max", "900",
            "--sessions", "1", "--reaction-delay", "0.5", "--duration", "150", "--control-file", str(control),
            "--truth", str(tmp_path / "truth.jsonl"),
        ], password=PASSWORD)
        # 33 A main breaker, 1 A margin: two cars share 32 A.
        wait_until(lambda: _limits(pg_dsn) == {CAPPED: 16.0, OTHER: 16.0}, timeout=40,
                   what="both chargers at 16 A", on_timeout=lambda: str(_limits(pg_dsn)))

        # The grid operator caps EVSE 1 of the first charger at 5520 W: 8 A per phase on 3 x 230 V.
        _control(control, action="notify_charging_limit", charger=CAPPED, source="SO", evse=1, limit=5520,
                 unit="W", grid_critical=True)
        wait_until(lambda: _limits(pg_dsn) == {CAPPED: 8.0, OTHER: 24.0}, timeout=20,
                   what="the capped charger at 8 A and the other at 24 A", on_timeout=lambda: str(_limits(pg_dsn)))
        capped = _latest(pg_dsn, CAPPED)
        assert capped is not None
        assert (capped["reason"], capped["binding"]) == ("Limited by grid operator (SO)", "external")
        assert capped["inputs"][f"external_limit_event:{CAPPED}/1"]["value"] == "set SO: 5520 W, grid critical"
        assert capped["command_id"] is not None  # the new limit went to the charger, which took it
        assert wait_until(lambda: _outcome(pg_dsn, capped["command_id"]), timeout=10,
                          what="the 8 A command's result") == "accepted"
        opened = wait_until(lambda: [a for a in _alerts(pg_dsn) if a[1] == "open"], timeout=10,
                            what="the grid-critical alert")
        assert [a[2] for a in opened] == [CAPPED]

        _control(control, action="cleared_charging_limit", charger=CAPPED, source="SO", evse=1)
        wait_until(lambda: _limits(pg_dsn) == {CAPPED: 16.0, OTHER: 16.0}, timeout=20,
                   what="both chargers back at 16 A", on_timeout=lambda: str(_limits(pg_dsn)))
        wait_until(lambda: _alerts(pg_dsn) == [(opened[0][0], "resolved", CAPPED)], timeout=10,
                   what="the alert resolved", on_timeout=lambda: str(_alerts(pg_dsn)))
        back = _latest(pg_dsn, CAPPED)
        assert back is not None and back["reason"] == "Limited by site"
        assert back["inputs"][f"external_limit_event:{CAPPED}/1"]["value"].startswith("cleared SO")
        bridge_log = platform.child("bridge").log_text()
        assert "NotifyChargingLimit" not in bridge_log, "the bridge filed a limit as unusable input"
    print(f"[e2e-external-limit] took {time.monotonic() - started:.1f} s")
