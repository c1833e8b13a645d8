"""The analytics page's year from rollups (warehouse.history_rollup) against the raw sums
(warehouse.history.summaries_sql), the session list and the per-session sums, on a generated
history across a new year (12 chargers, 2025-12-01..2026-01-14, costed) plus sessions written to
catch the edges: across midnight, a month end and the new year, corrupted across the new year,
never costed, open, with gaps and stale zero rows, without a tariff, in a second currency.

Then the writes that change the figures after the fact (a session flagged, re-costed, unflagged,
moved, a day row deleted, a pipeline revision, a session deleted) must show at the next read, and
a write not committed yet must not be consumed by a read that cannot see it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pytest
from dbutil import fresh_database

from control.records import SessionDayEnergy, SessionRecord, SessionState
from control.settings import Settings
from control.tariffs import flat_tariff
from flowbank.history_gen import generate
from warehouse import history_rollup
from warehouse.history import HistoryFilter, Summaries, history_list, summaries_sql, summarize
from warehouse.tariff_store import assign_tariff, compute_costs, costs_period, save_tariff
from warehouse.tsdb_writer import TimescaleWriter

pytestmark = pytest.mark.integration

FIRST = date(2025, 12, 1)
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
YEARS = (2025, 2026)
EDGE = ("RX-1", "RX-2")


@dataclass(frozen=True)
class World:
    dsn: str
    chargers: list[str]


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _session(conn: psycopg.Connection[Any], sid: str, charger: str, start: str, end: str | None,
             days: dict[str, float], *, flags: tuple[str, ...] = (), last_sample: str | None = None,
             costs: dict[str, tuple[str | None, int | None]] | None = None) -> None:
    """A session, its day rows and cost rows (day -> (currency, net_nano); currency None: no tariff),
    each in statements of their own, as different writers would."""
    conn.execute(
        "insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,"
        " started_at, ended_at, last_sample_at, energy_wh, flags) values (%s, %s, 1, %s, 'rx', %s, 1, %s, %s, %s,"
        " %s, %s)", (sid, charger, sid, "closed" if end else "open", _t(start), end and _t(end),
                     _t(last_sample or end or start), sum(days.values()), list(flags)))
    for day, wh in days.items():
        conn.execute("insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)"
                     " values (%s, %s, %s, %s, 1)", (sid, charger, date.fromisoformat(day), wh))
    for day, (currency, net) in (costs or {}).items():
        conn.execute(
            "insert into session_costs (session_id, day, charger_id, session_revision, cost_revision, tariff_id,"
            " currency, status, energy_wh, costed_energy_wh, net_nano, vat_nano)"
            " values (%s, %s, %s, 1, 1, %s, %s, %s, %s, %s, %s, %s)",
            (sid, date.fromisoformat(day), charger, currency and "rx-tariff", currency,
             "costed" if currency else "no_tariff", days.get(day, 0.0), days.get(day, 0.0), net,
             None if net is None else net // 5))


@pytest.fixture(scope="module")
def world(base_settings: Settings) -> Iterator[World]:
    with fresh_database(base_settings.pg_dsn.reveal(), "flowbank_rollup") as dsn, \
            psycopg.connect(dsn, autocommit=True) as conn:
        generate(conn, chargers=12, days=45, first_day=FIRST, seed=5, now=NOW)
        conn.execute("insert into chargers (charger_id, site_id, display_name) values"
                     " ('RX-1', 'rx', 'Edge one'), ('RX-2', 'rx', 'Edge two')")
        conn.execute("insert into tariffs (tariff_id, name, currency) values ('rx-tariff', 'Edge', 'CHF')")
        nt = {"2025-12-31": (None, None), "2026-01-01": (None, None)}
        _session(conn, "rx-newyear", "RX-1", "2025-12-31T22:00", "2026-01-01T03:00",
                 {"2025-12-31": 3000.0, "2026-01-01": 4000.0}, costs=nt)
        _session(conn, "rx-corrupt", "RX-1", "2025-12-31T23:00", "2026-01-01T01:00",
                 {"2025-12-31": 900.0, "2026-01-01": 9e6}, flags=("implausible_power",))
        _session(conn, "rx-uncosted", "RX-1", "2025-12-30T20:00", "2026-01-02T08:00",
                 {"2025-12-30": 1000.0, "2025-12-31": 0.0, "2026-01-01": 2000.0, "2026-01-02": 500.0})
        _session(conn, "rx-stale-month", "RX-1", "2026-01-31T23:30", "2026-02-01T03:00",
                 {"2026-01-30": 0.0, "2026-01-31": 250.0, "2026-02-01": 5000.0},
                 costs={"2026-02-01": (None, None)})
        _session(conn, "rx-stale-year", "RX-1", "2026-01-01T00:30", "2026-01-01T02:00",
                 {"2025-12-31": 0.0, "2026-01-01": 2500.0})
        _session(conn, "rx-open", "RX-1", "2026-01-10T08:00", None, {"2026-01-10": 7000.0},
                 last_sample="2026-01-10T12:00")
        _session(conn, "rx-gap", "RX-2", "2026-01-05T08:00", "2026-01-08T09:00",
                 {"2026-01-08": 1500.0, "2026-01-05": 1200.0},
                 costs={"2026-01-05": ("CHF", 400_000_000), "2026-01-08": ("CHF", 550_000_000)})
        _session(conn, "rx-chf-no-tariff", "RX-2", "2026-01-03T10:00", "2026-01-03T12:00",
                 {"2026-01-03": 800.0}, costs={"2026-01-03": (None, None)})
        chargers = [r[0] for r in conn.execute("select charger_id from chargers order by 1")]
        yield World(dsn, chargers)


_TOP = ["charger_id", "currency", "charger_name", "energy_wh", "sessions", "net_nano", "net"]


def _year(year: int, scope: list[str]) -> HistoryFilter:
    return HistoryFilter(date(year, 1, 1), date(year, 12, 31), charger_ids=tuple(scope))


def _assert_same(conn: psycopg.Connection[Any], scope: list[str]) -> dict[int, Summaries]:
    """The rollups' figures are the raw sums', the list's and the per-session sums, for each year."""
    out = {}
    for year in YEARS:
        flt = _year(year, scope)
        for by in ("month", "year"):
            fast, raw = history_rollup.summaries(conn, scope, flt, by), summaries_sql(conn, scope, flt, by)
            assert fast.periods == raw.periods, (year, by)
            assert fast.total == raw.total, (year, by)
            assert fast.top.select(_TOP).sort("charger_id", "currency").to_dicts() == \
                raw.top.select(_TOP).sort("charger_id", "currency").to_dicts()
            assert fast.excluded.to_dicts() == raw.excluded.to_dicts()
            if by == "month":
                out[year] = fast
        listed = history_list(conn, scope, flt)
        assert summarize(listed, flt, "month", conn) == out[year].periods
        total = out[year].total
        assert summarize(listed, flt, "all", conn) == ([total] if listed.height else [])
        clean = listed.filter(~pl.col("excluded"))
        assert total.energy_wh == clean["energy_in_period_wh"].sum()
        money = clean.filter(pl.col("currency").is_not_null()).group_by("currency").agg(
            pl.col("net_in_period_nano").sum(), pl.col("vat_in_period_nano").sum())
        assert total.costs == {r["currency"]: (r["net_in_period_nano"], r["vat_in_period_nano"])
                               for r in money.to_dicts()}
        assert total.excluded_sessions == listed.filter(pl.col("excluded")).height
    return out


def test_a_year_from_the_rollups_is_the_raw_sums(world: World) -> None:
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        fleet = _assert_same(conn, world.chargers)
        for scope in ([*EDGE], ["RX-1"], [c for c in world.chargers if c.startswith("HG-")][:3]):
            _assert_same(conn, scope)
        empty = history_rollup.summaries(conn, [], _year(2026, []))
    assert empty.periods == [] and empty.total.sessions == 0 and empty.top.is_empty()
    # The edges are in the data as meant: both years have sessions, exclusions, no-tariff and uncosted ones.
    for year in YEARS:
        total = fleet[year].total
        assert total.sessions > 100 and total.excluded_sessions >= 1 and total.no_tariff_sessions >= 1
        assert total.uncosted_sessions >= 1 and "EUR" in total.costs
    assert "CHF" in fleet[2026].total.costs
    december = [p for p in fleet[2026].periods if p.period == date(2025, 12, 1)]
    assert december and december[0].excluded_sessions == 1 and december[0].energy_wh == 0  # started in 2025
    # A session in two months counts in both, and once in the year.
    assert fleet[2026].total.sessions < sum(p.sessions for p in fleet[2026].periods)


def _flag(conn: psycopg.Connection[Any], sid: str, flags: list[str]) -> None:
    conn.execute("update sessions set flags = %s, revision = revision + 1 where session_id = %s", (flags, sid))


def test_later_writes_show_at_the_next_read(world: World) -> None:
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        before = _assert_same(conn, world.chargers)[2026].total
        sid, energy = conn.execute(
            "select s.session_id, sum(d.energy_wh) from sessions s join session_day_energy d using (session_id)"
            " where s.charger_id like 'HG-%%' and not s.excluded and s.started_at >= '2026-01-03'"
            " group by 1 order by 1 limit 1").fetchone() or ("", 0.0)
        # flagged later: left out of every figure, listed as excluded
        _flag(conn, sid, ["implausible_power"])
        flagged = _assert_same(conn, world.chargers)[2026]
        assert flagged.total.energy_wh == before.energy_wh - energy
        assert flagged.total.sessions == before.sessions - 1
        assert flagged.total.excluded_sessions == before.excluded_sessions + 1
        assert sid in flagged.excluded["session_id"].to_list()
        # and back
        _flag(conn, sid, [])
        assert _assert_same(conn, world.chargers)[2026].total == before

        # re-costed at a new price: the costs change, by exactly the new per-session sums
        charger = conn.execute("select charger_id from sessions where session_id = %s", (sid,)).fetchone()
        assert charger is not None
        save_tariff(conn, flat_tariff("rx-dear", "EUR", "UTC", Decimal("0.90"), Decimal("0.19"),
                                      datetime(2025, 1, 1, tzinfo=UTC)), name="Dear")
        assign_tariff(conn, "rx-dear", charger_id=charger[0])
        compute_costs(conn, *costs_period(FIRST, date(2026, 1, 14)), now=NOW, charger_ids=[charger[0]])
        recosted = _assert_same(conn, world.chargers)[2026].total
        assert recosted.costs["EUR"][0] > before.costs["EUR"][0]
        # costed at last: no longer counted as not costed, in either year it overlaps
        conn.execute("insert into session_costs (session_id, day, charger_id, session_revision, cost_revision,"
                     " status, energy_wh, costed_energy_wh) values ('rx-uncosted', '2026-01-01', 'RX-1', 1, 2,"
                     " 'no_tariff', 2000, 0)")
        costed = _assert_same(conn, world.chargers)
        assert costed[2026].total.uncosted_sessions == recosted.uncosted_sessions - 1
        assert costed[2026].total.no_tariff_sessions == recosted.no_tariff_sessions + 1

        # moved to another month; a day row deleted (the session's first: it now counts from its second)
        conn.execute("update sessions set started_at = '2025-11-30T23:00Z' where session_id = 'rx-stale-month'")
        _assert_same(conn, world.chargers)
        conn.execute("delete from session_day_energy where session_id = 'rx-uncosted' and day = '2025-12-30'")
        _assert_same(conn, world.chargers)

        january = next(p for p in _assert_same(conn, world.chargers)[2026].periods if p.period == date(2026, 1, 1))
    # a pipeline revision through the production writer: the open session grows and gains a day
    with TimescaleWriter(world.dsn) as writer:
        writer.write([
            SessionRecord("rx-open", "RX-1", 1, "rx-open", _t("2026-01-10T08:00"), SessionState.OPEN, 2, 9000.0,
                          last_sample_at=_t("2026-01-11T01:00"), site_id="rx"),
            SessionDayEnergy("rx-open", "RX-1", date(2026, 1, 10), 7500.0, 2),
            SessionDayEnergy("rx-open", "RX-1", date(2026, 1, 11), 1500.0, 2)])
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        grown = _assert_same(conn, world.chargers)[2026]
        assert next(p for p in grown.periods if p.period == date(2026, 1, 1)).energy_wh == january.energy_wh + 2000.0
        conn.execute("delete from sessions where session_id = 'rx-gap'")
        after = _assert_same(conn, world.chargers)[2026].total
    assert "CHF" not in after.costs


def test_a_write_not_committed_yet_is_summed_once_it_is(world: World) -> None:
    scope = list(EDGE)
    with psycopg.connect(world.dsn, autocommit=True) as reader, psycopg.connect(world.dsn) as writer:
        before = history_rollup.summaries(reader, scope, _year(2026, scope)).total
        _flag(writer, "rx-stale-year", ["non_monotonic_register"])  # open transaction: marked, not committed
        during = history_rollup.summaries(reader, scope, _year(2026, scope)).total
        writer.commit()
        after = history_rollup.summaries(reader, scope, _year(2026, scope)).total
        _flag(writer, "rx-stale-year", [])
        writer.commit()
        again = history_rollup.summaries(reader, scope, _year(2026, scope)).total
    assert during == before
    assert after.sessions == before.sessions - 1 and after.energy_wh == before.energy_wh - 2500.0
    assert after.excluded_sessions == before.excluded_sessions + 1
    assert again == before


def test_inside_a_transaction_of_the_caller_too(world: World) -> None:
    """Without a snapshot of its own (a savepoint in the caller's transaction) the figures are the same."""
    with psycopg.connect(world.dsn) as conn:
        conn.execute("select 1")  # the caller's transaction is open
        _flag(conn, "rx-open", ["gap", "abandoned"])
        inside = history_rollup.summaries(conn, list(EDGE), _year(2026, list(EDGE)))
        assert inside.total == summaries_sql(conn, list(EDGE), _year(2026, list(EDGE))).total
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        _assert_same(conn, list(EDGE))


def _marks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("select count(*) from history_rollup_marks").fetchone()
    return int(row[0]) if row else -1


def test_marks_are_consumed_and_the_rollups_are_small(world: World) -> None:
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        history_rollup.refresh(conn)
        assert _marks(conn) == 0
        _flag(conn, "rx-newyear", ["gap"])  # a flag that excludes nothing changes no figure: nothing to redo
        assert _marks(conn) == 0
        _flag(conn, "rx-newyear", ["implausible_power"])
        marked = _marks(conn)
        assert marked > 0
        assert history_rollup.refresh(conn, ["RX-2"]) == 0  # another charger's marks stay for its reader
        assert history_rollup.refresh(conn, ["RX-1"]) == marked and _marks(conn) == 0
        _flag(conn, "rx-newyear", [])
        _assert_same(conn, list(EDGE))
        months = conn.execute("select count(*) from history_rollup_month").fetchone()
        rows = conn.execute("select count(*) from session_day_energy").fetchone()
    assert months is not None and rows is not None and months[0] * 5 < rows[0]


def test_flowbank_maintain_sums_every_mark(world: World, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from flowbank.cli import main

    with psycopg.connect(world.dsn, autocommit=True) as conn:
        _flag(conn, "rx-chf-no-tariff", ["abandoned"])
        assert _marks(conn) > 0
        monkeypatch.setenv("FLOWBANK_PG_DSN", world.dsn)
        assert main(["maintain", "--cost-days", "0"]) == 0
        assert "change mark(s) summed" in capsys.readouterr().out
        assert _marks(conn) == 0
        _flag(conn, "rx-chf-no-tariff", [])
        _assert_same(conn, list(EDGE))
