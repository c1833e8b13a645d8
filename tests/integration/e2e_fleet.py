"""What the two end-to-end pipeline tests share (``test_e2e_pipeline``, ``test_e2e_pipeline_crash``).

End to end: simulated chargers -> bridge -> Mosquitto -> pipeline -> TimescaleDB and the DuckDB lake,
every component a real process (``flowbank simulate|bridge|pipeline``), checked against the
simulator's ground truth (``--truth``).

Time runs at real speed (``--speed 1``) with short sessions (110-135 s). An accelerated
simulated clock would run ahead of the bridge's, and the platform would rightly flag every
frame as CLOCK_SKEW (beyond 5 min) or, with a start in the past, as REPLAYED_OFFLINE (beyond
2 min); the tolerances are not settings of ``flowbank pipeline``, and faking them would test
less. Real time is also what makes the "replayed more than 2 min late" case real.

The fleet is two simulator processes, so that every session's energy can be held to 0.1 %:

* OCPP 1.6 on 50 kW DC chargers: the 1.6 register is whole Wh, and >= 110 s at >= 34 kW (the
  EVs taper above 55 % SoC) is >= 1 kWh, so 1 Wh is under 0.1 %;
* OCPP 2.0.1 on AC chargers: the register has 0.1 Wh, and >= 110 s at >= 3.7 kW is >= 112 Wh.

Sessions cut short by a fault are compared with the registers as sent instead (exactly) and
with the truth to within the register resolution.

The broker is a private Mosquitto configured like the development one (see
``e2e_harness.PrivateBroker``); the database is the session's fresh one. Charger ids have a fixed
prefix per test because the simulator seeds every charger's faults from its id: with ``--seed``
the same faults hit the same chargers at the same simulated second in every run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_harness import Platform, PrivateBroker, read_jsonl, register_chargers, wait_until

from control.records import SessionRecord, SessionState
from ingest.sim import msg16, msg201
from ingest.sim.events import StopReason
from ingest.sim.faults import FaultCode
from warehouse import queries
from warehouse.analytics_views import open_readonly

PASSWORD = "e2e-charger-password-1"
INTERVAL_S = 10.0  # --meter-interval
SCRYPT_N = 2**11  # cheap hashes: 100 chargers log in at once, and each costs one scrypt run
ERROR_CODES = ("GroundFailure", "OverCurrentFailure", "HighTemperature")
# Long enough that a sample queued at the start of it is delivered > 2 min late (REPLAYED_OFFLINE
# on 1.6, which has no "offline" marker), or short enough that none is.
LONG_OFFLINE_S, SHORT_OFFLINE_S = 135.0, 105.0
MALFORMED_SIGNATURE = {"not_json": '"Heartbeat", {', "wrong_shape": '"messageTypeId"',
                       "schema_violation": '"one"', "unknown_action": "FlyToTheMoon"}


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class Truth:
    sessions: list[dict[str, Any]]
    faults: list[dict[str, Any]]

    @classmethod
    def load(cls, *paths: Path) -> Truth:
        records = [r for path in paths for r in read_jsonl(path)]
        return cls([r for r in records if r["kind"] == "session"], [r for r in records if r["kind"] == "fault"])

    @staticmethod
    def sid(s: dict[str, Any]) -> str:
        return f"{s['charger_id']}:{s['connector_id']}:{s['transaction_id']}"

    @property
    def confirmed(self) -> dict[str, dict[str, Any]]:
        return {self.sid(s): s for s in self.sessions if s["confirmed"]}

    def faults_of(self, s: dict[str, Any], *codes: str) -> list[dict[str, Any]]:
        return [f for f in self.faults if f["code"] in codes and s["session_ref"] in f["session_refs"]]

    def offline_windows(self, charger_id: str) -> list[tuple[datetime, datetime]]:
        return [(ts(f["ts"]), ts(f["ts"]) + timedelta(seconds=float(f["detail"].rstrip("s"))))
                for f in self.faults if f["code"] == FaultCode.OFFLINE and f["charger_id"] == charger_id]

    def offline_backlog_s(self, s: dict[str, Any]) -> float | None:
        """How long the session's data waited in the charger's offline queue, at most: from the
        later of the outage's and the session's start to the reconnect (None: never offline).
        The first queued frame comes at most one meter interval after that start."""
        start, stop = ts(s["start_ts"]), ts(s["stop_ts"])
        waits = [(b - max(a, start)).total_seconds() for a, b in self.offline_windows(s["charger_id"])
                 if a <= stop and start <= b]
        return max(waits, default=None)

    def touched_by_offline(self, s: dict[str, Any]) -> bool:
        return self.offline_backlog_s(s) is not None

    def clean(self, s: dict[str, Any]) -> bool:
        """Nothing happened to its data (a malformed frame from its charger is not its data)."""
        return set(s["faults"]) <= {FaultCode.MALFORMED} and not self.touched_by_offline(s)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def expected_stop_reason(s: dict[str, Any]) -> str:
    reason = StopReason(s["stop_reason"])
    return msg16.STOP_REASONS[reason] if s["ocpp_version"] == "1.6" else msg201.STOP_REASONS[reason][0]


def resolution_wh(s: dict[str, Any]) -> float:
    return 1.0 if s["ocpp_version"] == "1.6" else 0.1


# --------------------------------------------------------------------------- the platform


def fleet_args(prefix: str, truth_dir: Path, *, chargers: int, seed: int, duration_s: float,
               faults: list[str]) -> dict[str, list[str]]:
    """Arguments of the two simulator shards (see the module docstring)."""
    half = chargers // 2
    common = ["--id-prefix", prefix, "--seed", str(seed), "--speed", "1", "--sessions", "1",
              "--first-arrival-max", "20", "--dwell-min", "110", "--dwell-max", "135", "--pause-probability", "0",
              "--meter-interval", str(INTERVAL_S), "--duration", str(duration_s), "--drain-timeout", "10",
              "--response-timeout", "10", *faults]
    return {
        "sim16": ["--chargers", str(half), "--v201-fraction", "0", "--dc", str(half),
                  "--truth", str(truth_dir / "truth16.jsonl"), *common],
        "sim201": ["--chargers", str(chargers - half), "--first-index", str(half + 1), "--v201-fraction", "1",
                   "--dc", "0", "--truth", str(truth_dir / "truth201.jsonl"), *common],
    }


@contextlib.contextmanager
def running_platform(pg_dsn: str, broker: PrivateBroker, workdir: Path, prefix: str,
                     chargers: int) -> Iterator[Platform]:
    """Chargers registered, pipeline and bridge running; every child stopped on the way out."""
    register_chargers(pg_dsn, [f"{prefix}{i:04d}" for i in range(1, chargers + 1)], PASSWORD, scrypt_n=SCRYPT_N)
    with Platform(pg_dsn, broker.endpoint, workdir, prefix, broker=broker) as platform:
        platform.start_pipeline()
        platform.start_bridge()
        yield platform


def stored_sessions(pg_dsn: str, prefix: str, chargers: int) -> dict[str, queries.SessionRow]:
    """Every stored session of our chargers, read the way the dashboards read them."""
    window = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    with psycopg.connect(pg_dsn) as conn:
        return {row.record.session_id: row for i in range(1, chargers + 1)
                for row in queries.sessions_for_charger(conn, f"{prefix}{i:04d}", *window)}


def wait_for_sessions(pg_dsn: str, prefix: str, chargers: int, expected: set[str], *, dead_letters: int = 0,
                      timeout: float = 120.0) -> dict[str, queries.SessionRow]:
    """Until every expected session is stored and closed, the expected number of dead letters
    too, and nothing has been written for 3 s (a SIGTERM right after would leave what is still
    in flight with the broker for the next start: not lost, but not stored in this test)."""
    def letters() -> int:
        return int(pg_one(pg_dsn, "select count(*) from dead_letters where starts_with(charger_id, %s)", prefix))

    def settled() -> dict[str, queries.SessionRow] | None:
        rows = stored_sessions(pg_dsn, prefix, chargers)
        done = all(sid in rows and rows[sid].record.state is SessionState.CLOSED for sid in expected)
        quiet = not rows or datetime.now(UTC) - max(r.written_at for r in rows.values()) > timedelta(seconds=3)
        return rows if done and quiet and letters() >= dead_letters else None

    def missing() -> str:
        rows = stored_sessions(pg_dsn, prefix, chargers)
        late = sorted(sid for sid in expected if sid not in rows or rows[sid].record.state is not SessionState.CLOSED)
        return (f"{len(late)} of {len(expected)} sessions missing or still open: {late[:10]}; "
                f"{letters()} of {dead_letters} dead letters")

    return wait_until(settled, timeout=timeout, what="the pipeline to store every session", interval=1.0,
                      on_timeout=missing)


def lake_sessions(data_dir: Path, prefix: str) -> dict[str, tuple[str, float, int, list[str]]]:
    with open_readonly(data_dir / "analytics.duckdb") as con:
        rows = con.execute("select session_id, state, energy_wh, revision, flags from sessions "
                           "where starts_with(charger_id, ?)", [prefix]).fetchall()
    return {str(r[0]): (str(r[1]), float(r[2]), int(r[3]), list(r[4])) for r in rows}


def lake_count(data_dir: Path, table: str, prefix: str) -> int:
    with open_readonly(data_dir / "analytics.duckdb") as con:
        row = con.execute(f"select count(*) from {table} where starts_with(charger_id, ?)", [prefix]).fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def pg_one(pg_dsn: str, query: str, *params: Any) -> Any:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    return row[0] if row else None


def check_lake_agrees(pg_dsn: str, data_dir: Path, prefix: str, stored: dict[str, queries.SessionRow]) -> None:
    lake = lake_sessions(data_dir, prefix)
    assert set(lake) == set(stored), f"sessions only in the lake: {sorted(set(lake) - set(stored))[:5]}, " \
                                     f"only in TimescaleDB: {sorted(set(stored) - set(lake))[:5]}"
    for sid, row in stored.items():
        r = row.record
        assert lake[sid] == (r.state.value, r.energy_wh, r.revision, [f.value for f in r.flags]), sid
    for table in ("meter_samples", "dead_letters"):
        in_pg = pg_one(pg_dsn, f"select count(*) from {table} where starts_with(charger_id, %s)", prefix)  # noqa: S608
        assert lake_count(data_dir, table, prefix) == in_pg, f"{table}: the lake and TimescaleDB differ"


def check_energy(truth: Truth, s: dict[str, Any], r: SessionRecord) -> None:
    """Energy from the registers, against what the meter really counted."""
    sid, res = Truth.sid(s), resolution_wh(s)
    if truth.faults_of(s, FaultCode.REGISTER_RESET):
        # The energy between the last reading before the reset and the reset itself is in no
        # reading: at most one meter interval at the session's peak power is unknowable. 2 % on
        # top: the interval runs a little long under load, and the power in the unseen interval
        # can exceed every sampled one (DC power rises with the battery's voltage); a run missed
        # the bound without it by 0.003 Wh in 215 Wh.
        lost = (r.peak_power_w or 0.0) * 1.02 * INTERVAL_S / 3600.0
        assert s["energy_wh"] - lost - res <= r.energy_wh <= s["energy_wh"] + res, (sid, r.energy_wh, s)
        return
    assert r.energy_wh == pytest.approx(s["meter_stop_wh"] - s["meter_start_wh"], abs=0.01), (sid, "registers", s)
    if truth.clean(s) or s["energy_wh"] * 0.001 >= res:
        assert r.energy_wh == pytest.approx(s["energy_wh"], rel=0.001), (sid, r.energy_wh, s)
    else:  # cut short by a fault: below 1 kWh (1.6) or 100 Wh (2.0.1) the register step is over 0.1 %
        assert abs(r.energy_wh - s["energy_wh"]) < res, (sid, r.energy_wh, s)
