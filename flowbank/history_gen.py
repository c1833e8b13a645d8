"""A year of charging history in a minute: `flowbank history generate --chargers 1000 --days 365`.

Not a real-time simulation: sessions are drawn per charger and day from the simulator's models
(:data:`ingest.sim.ev.CATALOGUE` cars with their battery, phases, current limit and efficiency
against the charger's rating), and the meter curve of each session is closed-form: constant power
until the battery reaches the target state of charge (no taper), then idle until unplugged. What
the dataflow would have derived is written directly: ``sessions``, ``session_day_energy`` (split
at UTC midnight, quantized like :mod:`pipelines.energy_split` so the days add up exactly),
``meter_samples`` (every ``sample_interval_s`` while charging, plus begin/end readings) and
``status_events`` for faults, into TimescaleDB by COPY and into the Parquet lake, plus the
registry rows the reports need (chargers with non-ASCII names; users, tokens and memberships
when ``0008_access.sql``'s tables exist; vehicles with cost centres; tariffs). Costs are then
computed with :func:`warehouse.tariff_store.compute_costs`.

Deterministic for a seed. About 1 % of sessions end in a fault (error outcome), 0.5 % are
corrupted (``implausible_power``: excluded), 1 % have a ``gap`` flag (kept).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

import polars as pl
import psycopg
from psycopg import sql

from control.schedules import Weekday, WeeklyWindow
from control.tariffs import PriceWindow, Tariff, TariffVersion, flat_tariff
from ingest.sim.ev import CATALOGUE, EvModel
from pipelines.energy_split import quantize
from warehouse.tariff_store import assign_tariff, compute_costs, save_tariff, save_vehicle

log = logging.getLogger(__name__)

VOLTAGE_V: Final = 230.0
PREFIX: Final = "HG"
_UTC_US: Final = pl.Datetime("us", "UTC")
_FIRST_NAMES: Final = ("Zoë", "Jürgen", "Ана", "Łukasz", "Søren", "Émilie", "Ömer", "María", "Noël", "Björn")
_LAST_NAMES: Final = ("Ångström", "Groß", "Petrović", "Nowak", "Kjærgaard", "Dubois", "Yılmaz", "Núñez")
_PLACES: Final = ("Garage Müller", "Depot Süd", "Hôtel Königshof", "Parkhaus Straße 5", "Home Østerbro")
_CENTRES: Final = ("CC-100 Sales", "CC-200 Service", "CC-300 Logistics")
_FAULTS: Final = (("PowerLoss", "PowerMeterFailure"), ("EmergencyStop", "GroundFailure"),
                  ("Other", "OverCurrentFailure"))


@dataclass(frozen=True, slots=True)
class Charger:
    charger_id: str
    site_id: str
    name: str
    phases: int
    max_current_a: float
    fleet: bool  # a depot (vehicles with cost centres, morning sessions) or a home (evening)
    tokens: tuple[str, ...]  # id_tags charging here (a shared charger has several)

    @property
    def max_power_w(self) -> float:
        return self.phases * VOLTAGE_V * self.max_current_a


@dataclass(frozen=True, slots=True)
class Generated:
    chargers: int
    sessions: int
    samples: int
    day_rows: int
    first_day: date
    last_day: date
    users: int


def fleet(chargers: int, seed: int) -> list[Charger]:
    """Sites of 10 chargers; every third site a depot; every fourth home charger is shared."""
    rnd = random.Random(seed)  # noqa: S311 - simulated data, not secrets
    out = []
    for i in range(chargers):
        site = i // 10
        depot = site % 3 == 0
        phases, amps = rnd.choice(((3, 16.0), (3, 32.0), (1, 32.0)))
        shared = not depot and i % 4 == 0
        tokens = tuple(f"{PREFIX}-TAG-{i:05d}-{k}" for k in range(3 if shared else 1))
        out.append(Charger(f"{PREFIX}-{i:05d}", f"{PREFIX.lower()}-site-{site:03d}",
                           f"{_PLACES[site % len(_PLACES)]} #{i % 10 + 1}", phases, amps, depot, tokens))
    return out


def _ev_for(tag: str) -> EvModel:
    return CATALOGUE[sum(map(ord, tag)) % len(CATALOGUE)]


def _sessions_of(ch: Charger, first_day: date, days: int, rnd: random.Random, register: float
                 ) -> tuple[list[dict[str, Any]], float]:
    rows: list[dict[str, Any]] = []
    for d in range(days):
        day = first_day + timedelta(days=d)
        count = rnd.choices((0, 1, 2), (0.3, 0.55, 0.15))[0]
        hour = 0.0
        for k in range(count):
            base = (6.5 if ch.fleet else 17.0) + 7 * k
            start_h = max(hour, base + rnd.random() * 3)
            plugged_h = rnd.uniform(1.5, 9.0 if k == count - 1 else 5.0)
            hour = start_h + plugged_h + 0.5
            tag = rnd.choice(ch.tokens)
            ev = _ev_for(tag)
            amps = min(ch.max_current_a, ev.ac_max_current_a)
            power = min(ch.phases, ev.ac_phases) * VOLTAGE_V * amps
            soc0, target = rnd.uniform(10, 60), rnd.uniform(80, 100)
            need_wh = (target - soc0) / 100 * ev.battery_wh / ev.efficiency
            charge_s = min(need_wh / power * 3600, plugged_h * 3600)
            started = datetime.combine(day, time(), UTC) + timedelta(seconds=round(start_h * 3600))
            ended = started + timedelta(seconds=round(plugged_h * 3600))
            energy = quantize(power * charge_s / 3600)
            flags: list[str] = []
            stop, fault = "EVDisconnected", None
            roll = rnd.random()
            if roll < 0.005:
                flags = ["implausible_power"]
            elif roll < 0.015:
                flags = ["gap"]
            elif roll < 0.025:
                stop, fault = rnd.choice(_FAULTS)
            mode = rnd.choices(("standard", "eco", "boost"), (0.7, 0.2, 0.1))[0]
            rows.append({
                "session_id": f"{ch.charger_id}:1:{len(rows) + 1}", "charger_id": ch.charger_id, "connector_id": 1,
                "transaction_id": str(len(rows) + 1), "site_id": ch.site_id, "started_at": started,
                "ended_at": ended, "state": "closed", "revision": 3, "energy_wh": energy, "id_tag": tag,
                "meter_start_wh": register, "meter_stop_wh": register + energy, "peak_power_w": power,
                "avg_power_w": energy / plugged_h, "duration_s": plugged_h * 3600, "charging_s": charge_s,
                "idle_s": plugged_h * 3600 - charge_s, "stop_reason": stop, "mode": mode, "flags": flags,
                "excluded": "implausible_power" in flags, "sample_count": 0, "last_sample_at": ended,
                "power_w": power, "charge_s": charge_s, "fault": fault, "phases": min(ch.phases, ev.ac_phases)})
            register += energy
    return rows, register


def _day_split(sessions: pl.DataFrame) -> pl.DataFrame:
    """session_day_energy: the curve's energy at each UTC midnight, quantized, differenced."""
    out = []
    for r in sessions.select("session_id", "charger_id", "started_at", "ended_at", "energy_wh", "charge_s",
                             "revision").iter_rows():
        sid, cp, start, end, energy, charge_s, rev = r
        day, prev = start.date(), 0.0
        while True:
            midnight = datetime.combine(day + timedelta(days=1), time(), UTC)
            if midnight >= end:
                out.append((sid, cp, day, energy - prev, rev))
                break
            at = min(energy, quantize(energy * (midnight - start).total_seconds() / charge_s)) if charge_s else energy
            out.append((sid, cp, day, at - prev, rev))
            prev, day = at, day + timedelta(days=1)
    return pl.DataFrame(out, schema={"session_id": pl.String(), "charger_id": pl.String(), "day": pl.Date(),
                                     "energy_wh": pl.Float64(), "revision": pl.Int64()}, orient="row")


def _samples(sessions: pl.DataFrame, interval_s: int) -> pl.DataFrame:
    """Begin, periodic (while charging) and end readings, vectorized."""
    charging_end = pl.col("started_at") + pl.duration(microseconds=(pl.col("charge_s") * 1e6).cast(pl.Int64()))
    periodic = (sessions.with_columns(charging_end.alias("charge_end"))
                .with_columns(pl.datetime_ranges("started_at", "charge_end", interval=f"{interval_s}s",
                                                 closed="none").alias("ts"))
                .explode("ts").drop_nulls("ts").with_columns(pl.lit("Sample.Periodic").alias("context")))
    begin = sessions.with_columns(pl.col("started_at").alias("ts"), pl.lit("Transaction.Begin").alias("context"))
    done = sessions.with_columns(charging_end.alias("ts"), pl.lit("Sample.Periodic").alias("context")).filter(
        pl.col("ts") < pl.col("ended_at"))
    end = sessions.with_columns(pl.col("ended_at").alias("ts"), pl.lit("Transaction.End").alias("context"))
    cols = ["ts", "charger_id", "connector_id", "context", "transaction_id", "session_id", "started_at", "charge_s",
            "power_w", "meter_start_wh", "energy_wh", "phases"]
    every = pl.concat([f.select(cols) for f in (begin, periodic, done, end)])
    elapsed = (pl.col("ts") - pl.col("started_at")).dt.total_microseconds() / 1e6
    charging = elapsed < pl.col("charge_s")
    return every.select(
        "ts", "charger_id", "connector_id", "context", "transaction_id", "session_id",
        (pl.col("meter_start_wh") + pl.min_horizontal(pl.col("energy_wh"),
                                                      pl.col("power_w") * elapsed / 3600)).alias("energy_wh"),
        pl.when(charging).then(pl.col("power_w")).otherwise(0.0).alias("power_w"),
        pl.when(charging).then(pl.col("power_w") / (VOLTAGE_V * pl.col("phases"))).otherwise(0.0).alias("current_a"),
    ).sort("charger_id", "ts")


def _copy(conn: psycopg.Connection[Any], table: str, frame: pl.DataFrame) -> None:
    text = frame.with_columns([pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ") for c, t in frame.schema.items()
                               if isinstance(t, pl.Datetime)]).write_csv(include_header=False, null_value="")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    with conn.cursor() as cur, cur.copy(sql.SQL("copy {} ({}) from stdin (format csv)").format(
            sql.Identifier(table), columns)) as copy:
        step = 1 << 24
        for at in range(0, len(text), step):
            copy.write(text[at:at + step].encode())


def _has(conn: psycopg.Connection[Any], table: str, column: str | None = None) -> bool:
    return conn.execute("select 1 from information_schema.columns where table_schema = current_schema() "
                        "and table_name = %s and (%s::text is null or column_name = %s) limit 1",
                        (table, column, column)).fetchone() is not None


def demo_tariffs(first_day: date) -> tuple[Tariff, Tariff]:
    """A time-of-use tariff (night 22-06 cheaper, a price rise after ~half a year) and a flat one."""
    start = datetime.combine(first_day, time(), UTC) - timedelta(days=1)
    night = WeeklyWindow(time(22, 0), time(6, 0), frozenset(Weekday))
    tou = Tariff(f"{PREFIX}-tou", "EUR", "Europe/Berlin", (
        TariffVersion(start, Decimal("0.3450"), Decimal("0.19"), (PriceWindow(night, Decimal("0.2290"), "night"),)),
        TariffVersion(start + timedelta(days=183), Decimal("0.3690"), Decimal("0.19"),
                      (PriceWindow(night, Decimal("0.2410"), "night"),)),
    ))
    return tou, flat_tariff(f"{PREFIX}-flat", "EUR", "Europe/Berlin", Decimal("0.3100"), Decimal("0.19"), start)


def generate(conn: psycopg.Connection[Any], *, chargers: int, days: int, first_day: date, seed: int = 1,
             sample_interval_s: int = 900, lake: Any = None, now: datetime) -> Generated:
    """Write the history (see the module docstring). ``lake``: a ``ParquetLake`` to fill too.
    Chargers ``HG-*`` already present make this refuse (generate into a fresh database)."""
    if conn.execute("select 1 from sessions where charger_id like %s limit 1", (f"{PREFIX}-%",)).fetchone():
        raise ValueError("generated history is already stored here (chargers HG-*)")
    rnd = random.Random(seed)  # noqa: S311 - simulated data, not secrets
    cps = fleet(chargers, seed)
    rows: list[dict[str, Any]] = []
    for ch in cps:
        made, _ = _sessions_of(ch, first_day, days, rnd, rnd.uniform(1e5, 5e6))
        rows.extend(made)
    sessions = pl.DataFrame(rows, schema_overrides={"started_at": _UTC_US, "ended_at": _UTC_US,
                                                    "last_sample_at": _UTC_US, "flags": pl.List(pl.String()),
                                                    "fault": pl.String()}, infer_schema_length=None)
    samples = _samples(sessions, sample_interval_s)
    counts = samples.group_by("session_id").len()
    sessions = sessions.join(counts, on="session_id").with_columns(pl.col("len").cast(pl.Int64()).alias("sample_count"))
    day_rows = _day_split(sessions)
    faults = sessions.filter(pl.col("fault").is_not_null()).select(
        (pl.col("ended_at") - timedelta(seconds=1)).alias("ts"), "charger_id", "connector_id",
        pl.lit("Faulted").alias("status"), pl.col("fault").alias("error_code"))
    stored = sessions.select("session_id", "charger_id", "connector_id", "transaction_id", "site_id", "state",
                             "revision", "started_at", "ended_at", "energy_wh", "id_tag", "meter_start_wh",
                             "meter_stop_wh", "peak_power_w", "avg_power_w", "duration_s", "charging_s", "idle_s",
                             "stop_reason", "mode", "flags", "sample_count", "last_sample_at")
    with conn.transaction():
        has_centres = _has(conn, "chargers", "cost_centre")
        registry = pl.DataFrame([{"charger_id": c.charger_id, "site_id": c.site_id, "display_name": c.name,
                                  **({"cost_centre": _CENTRES[i % 3] if c.fleet else None} if has_centres else {})}
                                 for i, c in enumerate(cps)])
        _copy(conn, "chargers", registry)
        _copy(conn, "sessions", stored.with_columns(
            ("{" + pl.col("flags").list.join(",") + "}").alias("flags")))
        _copy(conn, "session_day_energy", day_rows)
        _copy(conn, "meter_samples", samples)
        if faults.height:
            _copy(conn, "status_events", faults)
        users = _write_people(conn, cps, rnd)
        tou, flat = demo_tariffs(first_day)
        save_tariff(conn, tou, name="Time of use (Stadtwerke)")
        save_tariff(conn, flat, name="Flat rate")
        sites = sorted({c.site_id for c in cps})
        for n, site in enumerate(sites):
            if n % 7 != 6:  # every seventh site has no tariff: its sessions show "Add tariff to compute cost"
                assign_tariff(conn, tou.tariff_id if n % 2 == 0 else flat.tariff_id, site_id=site)
    if lake is not None:
        lake.append("sessions", stored.with_columns(sessions["excluded"]))
        lake.append("session_day_energy", day_rows)
        lake.append("meter_samples", samples.drop("session_id").with_columns(
            pl.lit([], pl.List(pl.String())).alias("quirks"),
            *[pl.lit(None, pl.Float64()).alias(c) for c in ("current_l1_a", "current_l2_a", "current_l3_a",
                                                          "current_offered_a", "voltage_v", "soc_pct",
                                                          "temperature_c")],
            pl.lit(None, _UTC_US).alias("bridge_received_at")))
        if faults.height:
            lake.append("status_events", faults.with_columns(pl.lit(None, pl.String()).alias("vendor_error_code"),
                                                             pl.lit(None, pl.String()).alias("info"),
                                                             pl.lit(None, _UTC_US).alias("bridge_received_at")))
    start = datetime.combine(first_day, time(), UTC)
    compute_costs(conn, start, start + timedelta(days=days), now=now, lake=lake)
    with conn.transaction():
        conn.execute("analyze sessions, session_day_energy, session_costs, meter_samples, chargers")
    return Generated(len(cps), sessions.height, samples.height, day_rows.height, first_day,
                     first_day + timedelta(days=days - 1), users)


def _write_people(conn: psycopg.Connection[Any], cps: Sequence[Charger], rnd: random.Random) -> int:
    """Users (one per token; non-ASCII names), tokens and memberships when 0008's tables exist;
    vehicles with cost centres at depots."""
    vehicles = []
    for i, ch in enumerate(cps):
        if ch.fleet:
            for tag in ch.tokens:
                vehicles.append((tag, f"V-{tag[-7:]}", f"{_ev_for(tag).name} {tag[-7:-2]}", _CENTRES[(i // 10) % 3]))
    for tag, vid, name, centre in vehicles:
        save_vehicle(conn, tag, vid, name, cost_centre=centre)
    if not _has(conn, "user_tokens"):
        log.warning("no user_tokens table (0008_access.sql): users and memberships not generated")
        return 0
    users, tokens, members = [], [], []
    for ch in cps:
        for k, tag in enumerate(ch.tokens):
            uid = f"u-{tag.lower()}"
            name = f"{rnd.choice(_FIRST_NAMES)} {rnd.choice(_LAST_NAMES)}"
            users.append({"user_id": uid, "email": f"{uid}@example.org", "display_name": name})
            tokens.append({"id_tag": tag, "user_id": uid})
            members.append({"user_id": uid, "charger_id": ch.charger_id, "role": "owner" if k == 0 else "member"})
    _copy(conn, "users", pl.DataFrame(users))
    _copy(conn, "user_tokens", pl.DataFrame(tokens))
    _copy(conn, "memberships", pl.DataFrame(members))
    return len(users)


def run(settings: Any, args: Any) -> int:
    """``flowbank history generate``."""
    from warehouse.analytics import LakeLockedError, ParquetLake, lake_paths

    now = datetime.now(UTC)
    first = date.fromisoformat(args.start) if args.start else (now - timedelta(days=args.days)).date()
    lake_root, views_db = lake_paths(settings)

    def make(lake: Any) -> Generated:
        with psycopg.connect(settings.pg_dsn.reveal()) as conn:
            return generate(conn, chargers=args.chargers, days=args.days, first_day=first, seed=args.seed,
                            sample_interval_s=args.sample_interval_s, lake=lake, now=now)

    if args.no_lake:
        made = make(None)
    else:
        try:
            with ParquetLake(lake_root, views_db=views_db) as lake:
                made = make(lake)
        except LakeLockedError:
            print("the lake is being written by a running pipeline: stop it, or pass --no-lake")
            return 1
    print(f"generated {made.sessions} sessions ({made.samples} meter samples, {made.day_rows} day rows) on "
          f"{made.chargers} chargers, {made.first_day} to {made.last_day}; {made.users} users")
    return 0
