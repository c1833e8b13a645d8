"""Benchmark of the dashboards' fleet-sized pages: median AppTest render time with 1,000 chargers.

The goal (issue 7, quality bar): "Median page render under 1 s with 1,000 chargers and a year of
sessions in the warehouse". What runs:

* a throw-away PostgreSQL database (created on ``FLOWBANK_PG_DSN``'s server, migrated, dropped at
  the end unless ``--keep``) with ``--chargers`` chargers (default 1,000) on ``--sites`` sites
  (default 20) of the demo organisation ``acme``, each site with an address and coordinates; one
  live-state row per connector (a tenth of the chargers have two) with a realistic mix of statuses
  (about 30 % charging, 8 % waiting, 4 % error, 4 % offline, the rest idle); the demo users of
  ``warehouse.demo_seed`` (the fleet manager manages ``acme``, so sees every charger);
* ``--days`` days (default 365) of history written directly by SQL: per charger and day one
  session (``sessions``) with its energy per UTC day (``session_day_energy``), plus today's open
  sessions of the charging chargers, and a departure per charging connector; one session in eight
  runs overnight (two day rows), one in 200 is corrupted (excluded), and the sessions are costed
  (``session_costs``, one site without a tariff, the last two days not costed yet). This is simpler
  than ``flowbank history generate`` (no meter samples, no lake) but has the row counts and indexes
  the pages' queries touch. The analytics rollups (``warehouse.history_rollup``) are then refreshed
  once, as ``flowbank maintain`` does after costing;
* then, in this process, Streamlit's ``AppTest`` (no browser) signed in as the fleet manager:
  ``--runs`` fresh sessions (default 5, after one uncounted warm-up round), each opening every
  page in turn. Timed per page: the open (``switch_page(...).run()``: the whole script as
  Streamlit runs it -- the user's roles, the sidebar's location context over every visible
  charger, and the page) and a rerun of it (``run()``: what a click or a refresh costs). The pool
  and other ``st.cache_resource`` objects are shared, as in one Streamlit server process.
  ``--live``: before every timed run, one pipeline write of every open session (a new revision and
  its day rows replaced, as ``warehouse.tsdb_writer`` does), so pages that read rollups find fresh
  marks to refresh (the write itself is not timed).

Reported: median and max per page, the machine and its load average. AppTest excludes the
browser (websocket, React rendering): it measures the server's share of a page view.

Usage::

    .venv/bin/python bench/dashboard_bench.py                   # 1,000 chargers, a year, 5 runs per page
    .venv/bin/python bench/dashboard_bench.py --chargers 200 --days 30 --runs 3 --pages fleet.py
    .venv/bin/python bench/dashboard_bench.py --pages analytics.py --runs 3 --live
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from pipeline_bench import create_database, drop_database, machine  # noqa: E402

from control.tariffs import flat_tariff  # noqa: E402
from flowbank.config import read_settings  # noqa: E402
from warehouse import control_store, history_rollup  # noqa: E402
from warehouse.demo_seed import DEMO_ORG, DEMO_USERS, seed_demo_access  # noqa: E402
from warehouse.tariff_store import assign_tariff, save_tariff  # noqa: E402

APP = str(ROOT / "dashboards" / "app.py")
DEFAULT_PAGES = ("fleet.py", "locations.py", "live.py", "bulk.py", "fleet_schedule.py")
DEFAULT_PAGE = "live.py"


def seed(dsn: str, *, chargers: int, sites: int, days: int, now: datetime) -> dict[str, int]:
    per_site = -(-chargers // sites)
    ids = [f"FB-{i:05d}" for i in range(1, chargers + 1)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in range(sites):
            site_id = f"site-{s + 1:02d}"
            members = ids[s * per_site:(s + 1) * per_site]
            if not members:
                break
            control_store.save_site(conn, {
                "site_id": site_id, "name": f"Depot {s + 1:02d}",
                "circuits": [{"id": "main", "limit_a": 400, "name": "Main breaker"}],
                "chargers": [{"id": cid, "circuit": "main", "max_current_a": 32, "phases": ["L1", "L2", "L3"],
                              "connectors": [{"id": 1}]} for cid in members]}, updated_by="bench")
            conn.execute(
                "insert into chargers (charger_id, site_id, display_name, vendor, model, serial_number,"
                " firmware_version, ocpp_version, cost_centre)"
                " select cid, %s, 'Bay ' || n, 'FlowSim', case when n %% 3 = 0 then 'AC7' else 'AC22' end,"
                " 'SN-' || cid, '1.4.2', '1.6', 'CC-' || ((n - 1) %% 5 + 1)"
                " from unnest(%s::text[]) with ordinality as t(cid, n)", (site_id, members))
        seed_demo_access(conn, charger_ids=ids[:2], site_id=None, now=now)
        conn.execute("update sites set org_id = %s, address = site_id || ', Depot Road', latitude = 52.0 +"
                     " (substr(site_id, 6)::int %% 5) * 0.1, longitude = 5.0 + (substr(site_id, 6)::int / 5) * 0.1",
                     (DEMO_ORG,))
        # Statuses by a hash of the id: ~30 % charging, 8 % waiting, 4 % error, 4 % offline, the rest idle.
        conn.execute("""
            with c as (select charger_id, abs(hashtext(charger_id)) %% 100 as h from chargers),
            k as (select charger_id, h, gs as connector_id from c, generate_series(1, case when h %% 10 = 0
                  then 2 else 1 end) gs)
            insert into live_state (charger_id, connector_id, status, updated_at, last_seen_at, power_w, current_a,
                                    session_id, session_started_at, session_energy_wh, soc_pct, error_code, online)
            select charger_id, connector_id,
                   case when h < 30 then 'Charging' when h < 38 then 'Waiting for vehicle' when h < 42 then 'Error'
                        when h < 46 then 'Offline' else 'Idle' end,
                   %(now)s, %(now)s - make_interval(secs => h * 7),
                   case when h < 30 then 7000 + h * 100 else 0 end, case when h < 30 then 16 else 0 end,
                   case when h < 38 then charger_id || '-' || connector_id || '-live' end,
                   case when h < 38 then %(now)s - interval '2 hours' end,
                   case when h < 38 then 9000 + h * 10 end, case when h < 30 then 40 + h end,
                   case when h between 38 and 41 then 'GroundFailure' end, not (h between 42 and 45)
            from k""", {"now": now})
        start_day = (now - timedelta(days=days)).date()
        # One session per charger and day: 17:00-21:00, or (one in eight) overnight, 22:00-06:00, split
        # 30/70 over its two UTC days. One in 200 is corrupted (implausible_power: excluded), one in
        # 100 carries a flag that does not exclude it (gap).
        conn.execute("""
            insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,
                                  started_at, ended_at, energy_wh, id_tag, duration_s, charging_s, flags)
            select c.charger_id || '-' || d::date, c.charger_id, 1, 'tx', c.site_id, 'closed', 1,
                   d + case when h %% 8 = 0 then interval '22 hours' else interval '17 hours' end
                     + make_interval(mins => abs(hashtext(c.charger_id)) %% 120),
                   d + case when h %% 8 = 0 then interval '30 hours' else interval '21 hours' end,
                   8000 + h %% 20000, 'TAG-' || substr(c.charger_id, 4), 14400, 10800,
                   case when h %% 200 = 1 then '{implausible_power}'::text[] when h %% 100 = 3 then '{gap}'::text[]
                        else '{}'::text[] end
            from chargers c, generate_series(%s::date, %s::date - 1, interval '1 day') d,
                 lateral (select abs(hashtext(c.charger_id || d::text)) as h) x""", (start_day, now.date()))
        conn.execute("""
            with d as (select session_id, charger_id, energy_wh, (started_at at time zone 'UTC')::date as first_day,
                              (ended_at at time zone 'UTC')::date as last_day from sessions)
            insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)
            select session_id, charger_id, first_day,
                   case when last_day > first_day then round(energy_wh * 0.3) else energy_wh end, 1 from d
            union all
            select session_id, charger_id, last_day, energy_wh - round(energy_wh * 0.3), 1 from d
            where last_day > first_day""")
        # Costs as `flowbank maintain` leaves them: a flat tariff (0.31 EUR/kWh net, 19 % VAT) on every
        # site but the last (no tariff: "Add tariff to compute cost"); the clean closed sessions are
        # costed per UTC day, except those started in the last two days (not costed yet).
        last_site = f"site-{sites:02d}"
        save_tariff(conn, flat_tariff("bench-flat", "EUR", "UTC", Decimal("0.31"), Decimal("0.19"),
                                      datetime.combine(start_day, datetime.min.time(), UTC) - timedelta(days=1)),
                    name="Flat rate")
        for s in range(1, sites):
            assign_tariff(conn, "bench-flat", site_id=f"site-{s:02d}")
        conn.execute("""
            insert into session_costs (session_id, day, charger_id, site_id, session_revision, cost_revision,
                                       tariff_id, currency, status, energy_wh, costed_energy_wh, net_nano, vat_nano)
            select d.session_id, d.day, d.charger_id, s.site_id, 1, 1, t.tariff_id, t.currency,
                   case when t.tariff_id is null then 'no_tariff' else 'costed' end, d.energy_wh, d.energy_wh,
                   case when t.tariff_id is not null then round(d.energy_wh * 310000)::bigint end,
                   case when t.tariff_id is not null then round(round(d.energy_wh * 310000) * 0.19)::bigint end
            from session_day_energy d join sessions s using (session_id)
            left join (select 'bench-flat'::text as tariff_id, 'EUR'::text as currency) t on s.site_id <> %s
            where not s.excluded and s.started_at < %s::date - 2""", (last_site, now.date()))
        conn.execute("""
            insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,
                                  started_at, energy_wh)
            select l.session_id, l.charger_id, l.connector_id, 'tx-live', c.site_id, 'active', 1,
                   l.session_started_at, l.session_energy_wh
            from live_state l join chargers c using (charger_id) where l.session_id is not null""")
        conn.execute("""
            insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)
            select session_id, charger_id, %s, energy_wh, 1 from sessions where state = 'active'""", (now.date(),))
        conn.execute("""
            insert into departures (charger_id, connector_id, departure_at, energy_wh, set_by)
            select charger_id, connector_id, %s + make_interval(mins => 60 + abs(hashtext(charger_id)) %% 600),
                   20000, 'bench' from live_state where status = 'Charging'""", (now,))
        conn.execute("analyze")
        counts = {t: int(conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(t))).fetchone()[0])
                  for t in ("chargers", "sites", "live_state", "sessions", "session_day_energy", "session_costs",
                            "departures")}
    return counts


def live_write(dsn: str) -> None:
    """One pipeline epoch: every open session gets a new revision and its day rows are replaced."""
    with psycopg.connect(dsn) as conn:
        conn.execute("update sessions set revision = revision + 1, energy_wh = energy_wh + 50,"
                     " last_sample_at = now() where state = 'active'")
        conn.execute("delete from session_day_energy d using sessions s where s.session_id = d.session_id"
                     " and s.state = 'active' and d.revision < s.revision")
        conn.execute("insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)"
                     " select session_id, charger_id, (now() at time zone 'UTC')::date, energy_wh, revision"
                     " from sessions where state = 'active'")


def measure(pages: list[str], runs: int, email: str, *, before_run: Callable[[], None] = lambda: None
            ) -> dict[str, dict[str, float]]:
    from streamlit.testing.v1 import AppTest

    user = {"is_logged_in": True, "email": email, "name": "Bench", "sub": "bench-fleet", "iss": "http://bench"}
    pages = [p for p in pages if (ROOT / "dashboards" / "views" / p).exists()]
    first: dict[str, list[float]] = {p: [] for p in pages}
    again: dict[str, list[float]] = {p: [] for p in pages}
    for i in range(runs + 1):  # the first round warms imports and cached resources: not counted
        at = AppTest.from_file(APP, default_timeout=600)
        at.user = user
        # The fleet manager's default page is live.py (the first in dashboards/nav.py): AppTest needs
        # one run through st.navigation before switch_page, and that run is live.py's open.
        before_run()
        t0 = time.perf_counter()
        at.run()
        opened = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"the app failed on its default page: {at.exception[0].message}")
        if DEFAULT_PAGE in first:
            before_run()
            t0 = time.perf_counter()
            at.run()
            if i > 0:
                first[DEFAULT_PAGE].append(opened)
                again[DEFAULT_PAGE].append(time.perf_counter() - t0)
        print(f"  round {i}: default page {opened:.2f} s", flush=True)
        for page in pages:
            if page == DEFAULT_PAGE:
                continue
            before_run()
            t0 = time.perf_counter()
            at.switch_page(f"views/{page}").run()
            opened = time.perf_counter() - t0
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].message}")
            before_run()
            t0 = time.perf_counter()
            at.run()
            rerun = time.perf_counter() - t0
            if i > 0:
                first[page].append(opened)
                again[page].append(rerun)
    out: dict[str, dict[str, float]] = {}
    for page in pages:
        out[page] = r = {"open_median_s": statistics.median(first[page]), "open_max_s": max(first[page]),
                         "rerun_median_s": statistics.median(again[page]), "rerun_max_s": max(again[page])}
        print(f"  {page:20s} open: median {r['open_median_s']:.3f} s (max {r['open_max_s']:.3f}); "
              f"rerun: median {r['rerun_median_s']:.3f} s (max {r['rerun_max_s']:.3f})", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--days", type=int, default=365, help="days of session history (default 365)")
    parser.add_argument("--runs", type=int, default=5, help="fresh sessions per page (default 5)")
    parser.add_argument("--pages", default=",".join(DEFAULT_PAGES), help="pages under dashboards/views/")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--live", action="store_true",
                        help="write one pipeline epoch of the open sessions before every timed run")
    args = parser.parse_args()

    admin = read_settings().pg_dsn.reveal()
    dsn, name = create_database(admin)
    print(f"database {name}; {machine()}", flush=True)
    try:
        t0 = time.perf_counter()
        counts = seed(dsn, chargers=args.chargers, sites=args.sites, days=args.days, now=datetime.now(UTC))
        print(f"seeded in {time.perf_counter() - t0:.1f} s: {counts}", flush=True)
        t0 = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            marks = history_rollup.refresh(conn)
        print(f"rollups refreshed in {time.perf_counter() - t0:.1f} s ({marks} marks)", flush=True)
        os.environ["FLOWBANK_PG_DSN"] = dsn
        fleet = next(u.email for u in DEMO_USERS if u.role.value == "fleet_manager")
        load_before = os.getloadavg()
        figures = measure([p.strip() for p in args.pages.split(",") if p.strip()], args.runs, fleet,
                          before_run=(lambda: live_write(dsn)) if args.live else (lambda: None))
        result: dict[str, Any] = {"machine": machine(), "counts": counts, "runs": args.runs, "live": args.live,
                                  "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "pages": figures}
        print(f"load average before {load_before[0]:.2f}, after {result['loadavg_after'][0]:.2f}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        from dashboards import runtime

        runtime.close_resources()
        if not args.keep:
            drop_database(admin, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
