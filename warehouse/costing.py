"""The cost of many sessions at once, vectorized with polars. No IO.

Same rule as :func:`control.tariffs.cost_of_curve`, for a year of a fleet in seconds instead of
one session at a time: each step of a session's cumulative meter curve spreads its energy
linearly in time over the price intervals it crosses (a window edge, a new tariff version, and
also each UTC midnight, so costs split by day like ``session_day_energy``). A register that
drops is a meter reset: the step's energy is the new count (as :mod:`pipelines.energy_split`).

Precision, chosen so that every consumer adds the same integers:

- piece energies are rounded to 1 µWh, prices are exact (at most 6 decimals, ``numeric(14,6)``),
  VAT rates exact (4 decimals); the product is exact in 128-bit integers (femto-units);
- per session and UTC day the sum is rounded half up to **nano-units** of the currency
  (``net_nano``, ``vat_nano``; VAT is computed on the exact net of each piece);
- a session, a month or any total is ``sum(net_nano)`` rounded half up once to the currency's
  minor unit (:func:`money`); gross = net + VAT, each rounded. So a monthly total is the same
  number in SQL, in DuckDB, in a CSV and in a PDF. (``cost_of_curve`` rounds VAT from the rounded
  net: the two can differ by one minor unit on a session; reports use this module's rule.)

A session with fewer than two register readings is costed from its stored energy spread evenly
between its start and end (stated as the fallback precision). Sessions without a tariff get
status ``no_tariff`` and no amounts (the call to action :data:`control.tariffs.ADD_TARIFF_MESSAGE`);
energy before a tariff's first version is ``uncosted`` and the session ``partial``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Final

import polars as pl

from control.tariffs import MINOR_UNITS, CostStatus, Tariff, TariffError, price_intervals

NANO: Final = 10**9
_PRICE_SCALE: Final = 10**6  # price per kWh in micro-units
_VAT_SCALE: Final = 10**4  # VAT rate in basis points
_NO_TARIFF: Final = ""  # tariff key of sessions without a tariff
_UTC_US: Final = pl.Datetime("us", "UTC")

PRICE_SCHEMA: Final = pl.Schema({
    "tariff_key": pl.String(), "start": _UTC_US, "end": _UTC_US, "day": pl.Date(), "price_u": pl.Int64(),
    "vat_bp": pl.Int64(), "currency": pl.String(), "label": pl.String(),
})
COST_SCHEMA: Final = pl.Schema({
    "session_id": pl.String(), "day": pl.Date(), "tariff_id": pl.String(), "currency": pl.String(),
    "status": pl.String(),
    "energy_wh": pl.Float64(), "costed_energy_wh": pl.Float64(), "net_nano": pl.Int64(), "vat_nano": pl.Int64(),
})


def _scaled(value: Decimal, scale: int, what: str) -> int:
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise TariffError(f"{what} {value} has more decimals than the store keeps")
    return int(scaled)


def money(total_nano: int, currency: str) -> Decimal:
    """A non-negative amount in nano-units rounded half up to the currency's minor unit."""
    if total_nano < 0:
        raise ValueError("amounts are never negative")
    digits = MINOR_UNITS.get(currency, 2)
    unit = 10 ** (9 - digits)
    return Decimal((total_nano + unit // 2) // unit).scaleb(-digits)


def _midnights(start: datetime, end: datetime) -> list[datetime]:
    day = datetime.combine(start.date(), time(), UTC) + timedelta(days=1)
    out = []
    while day < end:
        out.append(day)
        day += timedelta(days=1)
    return out


def price_table(tariffs: Mapping[str, Tariff], start: datetime, end: datetime) -> pl.DataFrame:
    """Every tariff's prices over ``[start, end)``, split at UTC midnights, gaps (before the first
    version) with a null price; plus the key ``""`` (no tariff): days with no price at all."""
    rows: list[tuple[str, datetime, datetime, int | None, int | None, str | None, str | None]] = []
    cuts = _midnights(start, end)

    def add(key: str, lo: datetime, hi: datetime, price: int | None, vat: int | None, cur: str | None,
            label: str | None) -> None:
        edges = [lo, *(c for c in cuts if lo < c < hi), hi]
        rows.extend((key, a, b, price, vat, cur, label) for a, b in pairwise(edges))

    add(_NO_TARIFF, start, end, None, None, None, None)
    for key, tariff in tariffs.items():
        at = start
        for interval in price_intervals(tariff, start, end):
            if interval.start > at:
                add(key, at, interval.start, None, None, tariff.currency, None)
            price = interval.price
            add(key, interval.start, interval.end, _scaled(price.price_per_kwh, _PRICE_SCALE, "price"),
                _scaled(price.vat_rate, _VAT_SCALE, "VAT rate"), tariff.currency, price.label)
            at = interval.end
        if at < end:
            add(key, at, end, None, None, tariff.currency, None)
    frame = pl.DataFrame(
        [(k, a, b, a.date(), p, v, c, lbl) for k, a, b, p, v, c, lbl in rows], schema=PRICE_SCHEMA, orient="row")
    return frame.sort("tariff_key", "start")


def _curves(samples: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """(session_id, ts, energy_wh) sorted, one reading per instant; sessions with fewer than two
    readings get their stored energy from start to end."""
    clean = (samples.select("session_id", pl.col("ts").cast(_UTC_US), pl.col("energy_wh").cast(pl.Float64()))
             .drop_nulls().sort("session_id", "ts").unique(["session_id", "ts"], keep="first", maintain_order=True))
    counts = clean.group_by("session_id").len()
    sparse = (sessions.join(counts, on="session_id", how="left")
              .filter(pl.col("len").fill_null(0) < 2)
              .filter(pl.col("ended_at").is_not_null() & (pl.col("ended_at") > pl.col("started_at"))))
    synthetic = pl.concat([
        sparse.select("session_id", pl.col("started_at").cast(_UTC_US).alias("ts"), pl.lit(0.0).alias("energy_wh")),
        sparse.select("session_id", pl.col("ended_at").cast(_UTC_US).alias("ts"),
                      pl.col("energy_wh").cast(pl.Float64())),
    ])
    kept = clean.join(sparse.select("session_id"), on="session_id", how="anti")
    return pl.concat([kept, synthetic]).sort("session_id", "ts")


def cost_sessions(samples: pl.DataFrame, sessions: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Cost per session and UTC day (:data:`COST_SCHEMA`).

    ``samples``: session_id, ts, energy_wh (cumulative register). ``sessions``: session_id,
    tariff_id (null: none), started_at, ended_at, energy_wh. ``prices``: :func:`price_table`
    covering every sample instant.
    """
    keys = sessions.select("session_id", pl.col("tariff_id").fill_null(_NO_TARIFF).alias("tariff_key"))
    intervals = prices.sort("tariff_key", "start").with_row_index("idx").with_columns(pl.col("idx").cast(pl.Int64()))
    steps = (_curves(samples, sessions)
             .with_columns(pl.col("ts").shift(1).over("session_id").alias("t0"),
                           pl.col("energy_wh").shift(1).over("session_id").alias("e0"))
             .filter(pl.col("t0").is_not_null())
             .with_columns(pl.when(pl.col("energy_wh") >= pl.col("e0")).then(pl.col("energy_wh") - pl.col("e0"))
                           .otherwise(pl.col("energy_wh")).alias("de"))
             .filter(pl.col("de") > 0)
             .rename({"ts": "t1"})
             .join(keys, on="session_id")
             .with_columns((pl.col("t1") - timedelta(microseconds=1)).alias("t1_in")))
    lookup = intervals.select("tariff_key", "start", "idx")
    asof = {"right_on": "start", "by": "tariff_key", "strategy": "backward", "check_sortedness": False}
    steps = (steps.sort("t0").join_asof(lookup.sort("start"), left_on="t0", **asof)  # type: ignore[arg-type]
             .rename({"idx": "idx0"}).drop("start")
             .sort("t1_in").join_asof(lookup.sort("start"), left_on="t1_in", **asof)  # type: ignore[arg-type]
             .rename({"idx": "idx1"}).drop("start"))
    if steps.filter(pl.col("idx0").is_null() | pl.col("idx1").is_null()).height:
        raise TariffError("the price table does not cover every meter reading")
    single = steps.filter(pl.col("idx0") == pl.col("idx1")).select("session_id", pl.col("idx0").alias("idx"),
                                                                   pl.col("de").alias("energy"))
    multi = (steps.filter(pl.col("idx0") != pl.col("idx1"))
             .with_columns(pl.int_ranges("idx0", pl.col("idx1") + 1).alias("idx")).explode("idx")
             .join(intervals.select("idx", "start", "end"), on="idx")
             .with_columns(pl.max_horizontal("t0", "start").alias("lo"), pl.min_horizontal("t1", "end").alias("hi"))
             .select("session_id", "idx",
                     (pl.col("de") * (pl.col("hi") - pl.col("lo")).dt.total_microseconds().cast(pl.Float64())
                      / (pl.col("t1") - pl.col("t0")).dt.total_microseconds().cast(pl.Float64())).alias("energy")))
    pieces = (pl.concat([single, multi])
              .join(intervals.select("idx", "day", "price_u", "vat_bp"), on="idx")
              .with_columns((pl.col("energy") * 1_000_000).round().cast(pl.Int128()).alias("uwh"))
              .with_columns((pl.col("uwh") * pl.col("price_u")).alias("net_fe"))
              .with_columns((pl.col("net_fe") * pl.col("vat_bp")).alias("vat_e19")))
    per_day = pieces.group_by("session_id", "day").agg(
        pl.col("energy").sum().alias("energy_wh"),
        pl.col("energy").filter(pl.col("price_u").is_not_null()).sum().alias("costed_energy_wh"),
        pl.col("net_fe").sum().alias("net_fe"), pl.col("vat_e19").sum().alias("vat_e19"),
        (pl.col("price_u").is_null() & (pl.col("uwh") > 0)).any().alias("uncosted"))
    tariff_of = sessions.select("session_id", "tariff_id")
    currency_of = prices.group_by("tariff_key").agg(pl.col("currency").drop_nulls().first())
    out = (per_day.join(tariff_of, on="session_id")
           .join(currency_of, left_on=pl.col("tariff_id").fill_null(_NO_TARIFF), right_on="tariff_key", how="left")
           .with_columns(pl.col("uncosted").any().over("session_id").alias("partial"))
           .with_columns(
               pl.when(pl.col("tariff_id").is_null()).then(pl.lit(CostStatus.NO_TARIFF.value))
               .when(pl.col("partial")).then(pl.lit(CostStatus.PARTIAL.value))
               .otherwise(pl.lit(CostStatus.COSTED.value)).alias("status"),
               pl.when(pl.col("tariff_id").is_not_null())
               .then((pl.col("net_fe") + 500_000) // 1_000_000).cast(pl.Int64()).alias("net_nano"),
               pl.when(pl.col("tariff_id").is_not_null())
               .then((pl.col("vat_e19") + 5 * 10**9) // 10**10).cast(pl.Int64()).alias("vat_nano")))
    return out.select(list(COST_SCHEMA)).cast(COST_SCHEMA).sort("session_id", "day")
