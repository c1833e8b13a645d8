"""History, costs and reports against the real TimescaleDB and a real lake, on a generated
history (12 chargers, 70 days from 2025-01-10: two month ends, shared chargers, a depot with
vehicles and cost centres, faults, corrupted sessions, a site without a tariff).

The owner's monthly total is checked to be the same number in the history summary (the screen),
the CSV parsed back, the PDF's text, DuckDB SQL and a plain SQL query of the warehouse. PDFs are
rendered to PNG with pdftoppm (poppler-utils)."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from control.settings import Settings
from control.tariffs import ADD_TARIFF_MESSAGE
from flowbank.history_gen import generate
from reports.build import build_report, chargers_of_user, month_filter, reimbursement_statement
from reports.csv_export import BOM, COLUMNS
from reports.fleet import cost_sharing, group_totals
from reports.parquet_export import export_parquet
from reports.scheduled import Schedule, run_due, save_schedule
from warehouse.analytics import ParquetLake, lake_paths, open_readonly
from warehouse.costing import money
from warehouse.history import HistoryFilter, history_list, session_detail, summarize
from warehouse.queries import NotFoundError
from warehouse.tariff_store import compute_costs, costs_period, load_tariffs

pytestmark = pytest.mark.integration

FIRST = date(2025, 1, 10)
DAYS = 70
NOW = datetime(2025, 3, 25, 12, 0, tzinfo=UTC)
OWNER = "u-hg-tag-00000-0"  # owner of HG-00000 (site 0, a depot); HG-00012 is a shared home charger
JAN = date(2025, 1, 1)


@dataclass(frozen=True)
class World:
    dsn: str
    settings: Settings
    db: Path


@pytest.fixture(scope="module")
def world(pg_dsn: str, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from dataclasses import replace

    from control.settings import Secret

    data = tmp_path_factory.mktemp("history") / "data"
    settings = replace(base_settings, pg_dsn=Secret(pg_dsn), data_dir=data, provision_services=False)
    lake_root, db = lake_paths(settings)
    with psycopg.connect(pg_dsn) as conn, ParquetLake(lake_root, views_db=db) as lake:
        generate(conn, chargers=24, days=DAYS, first_day=FIRST, seed=7, lake=lake, now=NOW)
    yield World(pg_dsn, settings, db)


def _conn(world: World) -> psycopg.Connection[Any]:
    return psycopg.connect(world.dsn)


def _owner_scope(conn: psycopg.Connection[Any]) -> list[str]:
    scope = chargers_of_user(conn, OWNER)
    assert scope == ["HG-00000"]
    return scope


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_owner_monthly_total_is_the_same_number_everywhere(world: World, tmp_path: Path) -> None:
    with _conn(world) as conn:
        scope = _owner_scope(conn)
        flt = month_filter(JAN)
        report = build_report(conn, scope, flt, scope_label="Owner", now=NOW)
        total = report.content.total
        # the warehouse itself
        wh, = conn.execute("""select sum(d.energy_wh) from session_day_energy d join sessions s using (session_id)
                              where not s.excluded and s.charger_id = any(%s)
                              and d.day between '2025-01-01' and '2025-01-31'""", (scope,)).fetchone() or (None,)
        net_nano, = conn.execute("""select sum(k.net_nano) from session_costs k join sessions s using (session_id)
                                    where not s.excluded and s.charger_id = any(%s)
                                    and k.day between '2025-01-01' and '2025-01-31'""", (scope,)).fetchone() or (None,)
    assert total.sessions > 10 and total.energy_wh > 0
    assert total.energy_wh == wh
    assert net_nano is not None and total.costs["EUR"][0] == int(net_nano)
    net, vat, gross = total.amounts("EUR")
    assert gross == net + vat and net == money(int(net_nano), "EUR")
    # the CSV, parsed back
    raw = report.csv(bom=True)
    assert raw.startswith(BOM)
    rows = list(csv.DictReader(io.StringIO(raw[len(BOM):].decode("utf-8"))))
    clean = [r for r in rows if r["quality"] != "excluded"]
    assert sum(float(r["energy_in_period_wh"]) for r in clean) == total.energy_wh
    assert money(sum(int(r["net_in_period_nano"]) for r in clean if r["net_in_period_nano"]), "EUR") == net
    # the PDF's text
    text = _pdf_text(report.pdf(), tmp_path)
    assert f"Total energy {total.energy_wh / 1000:,.3f} kWh in {total.sessions} sessions" in text
    assert f"net {net} EUR, VAT {vat} EUR, gross {gross} EUR" in text
    # DuckDB SQL
    with open_readonly(world.db) as con:
        energy, nano = con.execute(
            "SELECT (SELECT sum(energy_wh) FROM monthly_energy WHERE month = DATE '2025-01-01' AND charger_id = $c), "
            "(SELECT sum(net_nano) FROM monthly_cost WHERE month = DATE '2025-01-01' AND charger_id = $c)",
            {"c": scope[0]}).fetchone() or (None, None)
        view_net, = con.execute("SELECT net FROM monthly_cost WHERE month = DATE '2025-01-01' AND charger_id = $c",
                                {"c": scope[0]}).fetchone() or (None,)
    assert energy == total.energy_wh and nano == total.costs["EUR"][0] and view_net == net


def test_a_session_across_midnight_counts_in_both_days(world: World) -> None:
    with _conn(world) as conn:
        scope = [r[0] for r in conn.execute("select charger_id from chargers where charger_id like 'HG-%'")]
        crossing = conn.execute("""select session_id, (started_at at time zone 'UTC')::date from sessions
                                   where not excluded and charger_id = any(%s) and (started_at at time zone 'UTC')::date
                                   < ((started_at + charging_s * interval '1 second') at time zone 'UTC')::date
                                   limit 1""", (scope,)).fetchone()
        assert crossing is not None, "the generated history has a session charging across midnight"
        sid, day = crossing
        days = [history_list(conn, scope, HistoryFilter(d, d)) for d in (day, day + timedelta(days=1))]
        total_wh, = conn.execute("select energy_wh from sessions where session_id = %s", (sid,)).fetchone() or (0,)
    parts = [f.filter(f["session_id"] == sid).row(0, named=True) for f in days]
    assert 0 < parts[0]["energy_in_period_wh"] < total_wh
    assert parts[0]["energy_in_period_wh"] + parts[1]["energy_in_period_wh"] == total_wh
    assert parts[0]["net_in_period_nano"] > 0 and parts[1]["net_in_period_nano"] > 0


def test_pdf_pages_render_with_unicode_font_and_repeated_headings(world: World, tmp_path: Path) -> None:
    assert shutil.which("pdftoppm"), "poppler-utils must be installed (scripts/bootstrap.sh)"
    with _conn(world) as conn:
        scope = [r[0] for r in conn.execute("select charger_id from chargers where charger_id like 'HG-%' "
                                            "order by 1 limit 4")]
        report = build_report(conn, scope, HistoryFilter(FIRST, date(2025, 3, 20)), scope_label="Zoë's chargers",
                              now=NOW)
    pdf = tmp_path / "owner.pdf"
    pdf.write_bytes(report.pdf())
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3 and all(p.stat().st_size > 5000 for p in pages)
    fonts = subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True, text=True).stdout
    assert "DejaVuSans" in fonts and "CID TrueType" in fonts
    text = _pdf_text(pdf.read_bytes(), tmp_path)
    assert "Zoë's chargers" in text and "Garage Müller" in text
    assert f"Page {len(pages)}/{len(pages)}" in text
    assert text.count("Start (UTC)") >= 2  # the sessions table's heading on each of its pages
    assert "Legend" in text and "implausible_power" in text


def test_csv_is_utf8_with_documented_columns(world: World) -> None:
    with _conn(world) as conn:
        scope = [r[0] for r in conn.execute("select charger_id from chargers where charger_id like 'HG-%'")]
        report = build_report(conn, scope, HistoryFilter(FIRST, date(2025, 3, 20)), scope_label="all", now=NOW,
                              charts=False)
    raw = report.csv()
    assert not raw.startswith(BOM)
    text = raw.decode("utf-8")  # strict
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [name for name, _ in COLUMNS]
    assert len(rows) - 1 == report.content.history.height
    assert any("Müller" in cell for row in rows for cell in row)
    assert {r[rows[0].index("quality")] for r in rows[1:]} >= {"ok", "excluded"}


def test_excluded_sessions_are_listed_apart_and_left_out(world: World, tmp_path: Path) -> None:
    with _conn(world) as conn:
        scope = [r[0] for r in conn.execute("select charger_id from chargers where charger_id like 'HG-%'")]
        flt = HistoryFilter(FIRST, date(2025, 3, 20))
        history = history_list(conn, scope, flt)
        excluded = history.filter(history["excluded"])
        assert excluded.height > 0
        total = summarize(history, flt, "all", conn)[0]
        report = build_report(conn, scope, flt, scope_label="all", now=NOW, charts=False)
    assert total.excluded_sessions == excluded.height
    clean_wh = history.filter(~history["excluded"])["energy_in_period_wh"].sum()
    assert total.energy_wh == clean_wh
    assert excluded["cost_status"].null_count() == excluded.height  # never costed
    text = _pdf_text(report.pdf(), tmp_path)
    assert "Excluded sessions (left out of every total)" in text
    assert "Energy grew faster than the charger's rated power allows" in text


def test_missing_tariff_shows_the_call_to_action_not_zero(world: World, tmp_path: Path) -> None:
    with _conn(world) as conn:
        conn.execute("delete from tariff_assignments where scope_kind = 'charger' and scope_id = 'HG-00011'")
        site, = conn.execute("select site_id from chargers where charger_id = 'HG-00011'").fetchone() or ("",)
        conn.execute("insert into tariff_assignments (scope_kind, scope_id, tariff_id) values ('site', %s, 'HG-flat') "
                     "on conflict do nothing", (site,))
        # HG-00011 on its own: no tariff (a charger assignment to a tariff that is then removed)
        conn.execute("insert into tariffs (tariff_id, name, currency) values ('gone', 'Gone', 'EUR')")
        conn.execute("insert into tariff_assignments (scope_kind, scope_id, tariff_id) values "
                     "('charger', 'HG-00011', 'gone')")
        conn.commit()
        start, end = costs_period(FIRST, date(2025, 3, 20))
        compute_costs(conn, start, end, now=NOW, charger_ids=["HG-00011"])
        flt = HistoryFilter(FIRST, date(2025, 3, 20))
        history = history_list(conn, ["HG-00011"], flt)
        total = summarize(history, flt, "all", conn)[0]
        report = build_report(conn, ["HG-00011"], flt, scope_label="no tariff", now=NOW, charts=False)
        sid = history.filter(~history["excluded"])["session_id"][0]
        detail = session_detail(conn, ["HG-00011"], sid)
    clean = history.filter(~history["excluded"])
    assert set(clean["cost_status"]) == {"no_tariff"}
    assert clean["net_in_period_nano"].null_count() == clean.height
    assert total.costs == {} and total.cost_message == ADD_TARIFF_MESSAGE
    assert detail.cost_status == "no_tariff" and detail.cost_message == ADD_TARIFF_MESSAGE
    rows = list(csv.DictReader(io.StringIO(report.csv().decode())))
    assert {r["cost_note"] for r in rows if r["quality"] != "excluded"} == {ADD_TARIFF_MESSAGE}
    assert {r["net_in_period"] for r in rows if r["quality"] != "excluded"} == {""}
    assert ADD_TARIFF_MESSAGE in _pdf_text(report.pdf(), tmp_path)


def test_scope_is_never_widened(world: World) -> None:
    with _conn(world) as conn:
        other = conn.execute("select session_id from sessions where charger_id = 'HG-00005' limit 1").fetchone()
        assert other is not None
        with pytest.raises(NotFoundError):
            session_detail(conn, ["HG-00000"], other[0])
        assert history_list(conn, [], HistoryFilter(FIRST, date(2025, 3, 20))).is_empty()
        mine = history_list(conn, ["HG-00000"], HistoryFilter(FIRST, date(2025, 3, 20), charger_ids=("HG-00005",)))
    assert mine.is_empty()


def test_session_detail_has_curve_errors_and_cost(world: World) -> None:
    with _conn(world) as conn:
        faulted = conn.execute("select session_id, charger_id from sessions where stop_reason <> 'EVDisconnected' "
                               "and charger_id like 'HG-%' and not excluded limit 1").fetchone()
        assert faulted is not None
        detail = session_detail(conn, [faulted[1]], faulted[0])
    assert detail.samples.height >= 3 and float(detail.samples["power_w"].fill_null(0).sum()) > 0
    assert detail.error_codes and detail.error_codes[0]["status"] == "Faulted"
    assert detail.cost_status in ("costed", "no_tariff")
    assert detail.session["outcome"] == "error"


def test_filters_breakdowns_and_cost_sharing_add_up(world: World) -> None:
    with _conn(world) as conn:
        scope = [r[0] for r in conn.execute("select charger_id from chargers where charger_id like 'HG-%'")]
        flt = HistoryFilter(FIRST, date(2025, 2, 28))
        history = history_list(conn, scope, flt)
        total = summarize(history, flt, "all", conn)[0]
        errors = history_list(conn, scope, HistoryFilter(FIRST, date(2025, 2, 28), outcome="error"))
        boost = history_list(conn, scope, HistoryFilter(FIRST, date(2025, 2, 28), modes=("boost",)))
        centre = history_list(conn, scope, HistoryFilter(FIRST, date(2025, 2, 28), cost_centres=("CC-100 Sales",)))
    assert set(errors["outcome"]) == {"error"} and set(boost["mode"]) == {"boost"}
    assert centre.height > 0 and set(centre["cost_centre"]) == {"CC-100 Sales"}
    for by in ("site", "vehicle", "cost_centre", "user", "charger"):
        groups = group_totals(history, by)
        assert groups["energy_wh"].sum() == pytest.approx(total.energy_wh, abs=1e-6)
        assert groups["net_nano"].sum() == sum(n for n, _ in total.costs.values())
    shares = cost_sharing(history)
    assert shares.height > 0
    for pct in shares.group_by("charger_id").agg(pl.col("share_pct").sum().alias("s"))["s"]:
        assert pct == pytest.approx(100, abs=0.3)


def test_reimbursement_statement_is_one_users_month(world: World, tmp_path: Path) -> None:
    with _conn(world) as conn:
        user = "u-hg-tag-00012-1"
        report = reimbursement_statement(conn, ["HG-00012"], user, date(2025, 2, 1), user_label="Member", now=NOW)
    history = report.content.history
    assert history.height > 0 and set(history["user_id"]) == {user}
    text = _pdf_text(report.pdf(), tmp_path)
    assert "Reimbursement statement" in text and "2025-02-01 to 2025-02-28" in text


def test_scheduled_reports_are_written_once_per_period(world: World, tmp_path: Path) -> None:
    with _conn(world) as conn:
        save_schedule(conn, Schedule("owner-monthly", "owner", "user", OWNER, "month", ("pdf", "csv"), (),
                                     tmp_path / "out"))
        conn.execute("update report_schedules set created_at = '2025-02-10' where schedule_id = 'owner-monthly'")
        conn.commit()
        first = run_due(conn, NOW)
        again = run_due(conn, NOW)
    names = sorted(p.name for p in first)
    assert names == ["2025-01.csv", "2025-01.pdf", "2025-02.csv", "2025-02.pdf"]
    assert again == []
    assert (tmp_path / "out" / "owner-monthly" / "2025-02.pdf").read_bytes().startswith(b"%PDF")


def test_parquet_export_of_an_analyst_table_for_a_period(world: World, tmp_path: Path) -> None:
    out = tmp_path / "costs.parquet"
    n = export_parquet(world.db, "session_costs", date(2025, 2, 1), date(2025, 2, 28), out, charger_ids=["HG-00001"])
    table = pq.read_table(out)
    assert n == table.num_rows > 0
    assert set(table.column("charger_id").to_pylist()) == {"HG-00001"}
    days = table.column("day").to_pylist()
    assert min(days) >= date(2025, 2, 1) and max(days) <= date(2025, 2, 28)


def test_cli_writes_csv_and_pdf(world: World, tmp_path: Path) -> None:
    import argparse

    from reports.cli import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv in (["csv", "--user", OWNER, "--from", "2025-01-01", "--to", "2025-01-31", "--bom",
                  "-o", str(tmp_path / "jan.csv")],
                 ["fleet", "--all", "--from", "2025-01-01", "--to", "2025-01-31", "--by", "site,cost_centre",
                  "-o", str(tmp_path / "fleet.pdf")],
                 ["costs", "--from", "2025-01-01", "--to", "2025-01-31", "--no-lake"]):
        assert run(world.settings, parser.parse_args(argv)) == 0
    assert (tmp_path / "jan.csv").read_bytes().startswith(BOM)
    assert (tmp_path / "fleet.pdf").read_bytes().startswith(b"%PDF")
    cli_text = (Path(__file__).parents[2] / "flowbank" / "cli.py").read_text("utf-8")  # wired into `flowbank`
    assert 'sub.add_parser("report"' in cli_text and 'sub.add_parser("history"' in cli_text


def test_tariffs_round_trip(world: World) -> None:
    with _conn(world) as conn:
        tariffs = load_tariffs(conn, ["HG-tou"])
    tou = tariffs["HG-tou"]
    assert tou.currency == "EUR" and len(tou.versions) == 2
    assert tou.versions[0].windows[0].price_per_kwh == Decimal("0.229")
    assert tou.versions[0].windows[0].window.start_local == time(22, 0)
    assert re.fullmatch(r"[A-Z]{3}", tou.currency)
