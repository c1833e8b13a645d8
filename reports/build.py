"""Reports from the warehouse: the owner's history report, the fleet report (by site, vehicle,
cost centre), the cost-sharing report and the reimbursement statement, as CSV and PDF bytes.

``scope`` is the list of charger ids the caller may see (decided by the caller's service
layer); nothing here widens it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal

from control.tariffs import ADD_TARIFF_MESSAGE
from reports.charts import monthly_energy_chart, to_png
from reports.csv_export import sessions_csv
from reports.fleet import GroupBy, cost_sharing, group_totals, section_rows
from reports.pdf_report import ReportContent, Section, render_pdf
from warehouse.history import HistoryFilter, PeriodTotal, history_list, summarize, top_chargers
from warehouse.queries import Connection

Kind = Literal["owner", "fleet", "cost-sharing", "reimbursement"]
_GROUP_HEADINGS: dict[str, tuple[list[str], list[str]]] = {
    "site": (["site_id"], ["Site"]), "vehicle": (["vehicle_name"], ["Vehicle"]),
    "cost_centre": (["cost_centre"], ["Cost centre"]), "user": (["user_id"], ["User"]),
    "charger": (["charger_id", "charger_name"], ["Charger", "Name"]), "month": (["month"], ["Month (start)"]),
}


@dataclass(frozen=True, slots=True)
class Report:
    content: ReportContent

    def pdf(self) -> bytes:
        return render_pdf(self.content)

    def csv(self, *, bom: bool = False) -> bytes:
        return sessions_csv(self.content.history, bom=bom)


def period_label(flt: HistoryFilter) -> str:
    return f"{flt.first_day.isoformat()} to {flt.last_day.isoformat()} (UTC days)"


def month_filter(month: date, **filters: tuple[str, ...]) -> HistoryFilter:
    """The filter of one calendar month (``month``: any day in it)."""
    first = month.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return HistoryFilter(first, last, **filters)  # type: ignore[arg-type]


def build_report(conn: Connection, scope: Sequence[str], flt: HistoryFilter, *, kind: Kind = "owner",
                 scope_label: str, now: datetime, group_by: Sequence[GroupBy] = (),
                 title: str | None = None, charts: bool = True) -> Report:
    """Everything a report shows, read once. ``group_by``: the breakdown sections (fleet)."""
    history = history_list(conn, scope, flt)
    periods = summarize(history, flt, "month", conn)
    total_list = summarize(history, flt, "all", conn)
    total = total_list[0] if total_list else PeriodTotal(None, 0.0, 0, 0)
    sections: list[Section] = []
    if kind in ("owner", "fleet"):
        top = top_chargers(history, limit=10)
        rows = [["Charger", "Name", "Sessions", "kWh", "Net"]]
        rows += [[r["charger_id"], r["charger_name"] or "", str(r["sessions"]), f"{r['energy_kwh']:,.3f}",
                  f"{r['net']} {r['currency']}" if r["net"] else ADD_TARIFF_MESSAGE] for r in top.iter_rows(named=True)]
        sections.append(Section("Top chargers by energy", rows))
    for by in group_by:
        cols, heads = _GROUP_HEADINGS[by]
        sections.append(Section(f"By {heads[0].lower()}", section_rows(group_totals(history, by), cols, heads)))
    if kind == "cost-sharing":
        share = cost_sharing(history)
        rows = [["Charger", "User", "Sessions", "kWh", "Share %", "Net", "VAT", "Gross"]]
        rows += [[r["charger_name"] or r["charger_id"], r["user_name"] or r["user_id"] or "—", str(r["sessions"]),
                  f"{r['energy_kwh']:,.3f}", f"{r['share_pct']}",
                  *(f"{r[k]} {r['currency']}" if r[k] else "—" for k in ("net", "vat", "gross"))]
                 for r in share.iter_rows(named=True)]
        sections.append(Section("Cost sharing on shared chargers", rows,
                                note="Each user's part of a shared charger's energy and cost in the period."))
    default_titles = {"owner": "Charging history", "fleet": "Fleet report", "cost-sharing": "Cost-sharing report",
                      "reimbursement": "Reimbursement statement"}
    images = [to_png(monthly_energy_chart(periods))] if charts and periods else []
    content = ReportContent(title or default_titles[kind], period_label(flt), scope_label, now, total, periods,
                            history, images, sections, list_sessions=kind in ("owner", "reimbursement"))
    return Report(content)


def reimbursement_statement(conn: Connection, scope: Sequence[str], user_id: str, month: date, *,
                            user_label: str, now: datetime) -> Report:
    """One user's sessions of one month with the total to reimburse (sessions started with the
    user's tokens on chargers in ``scope``)."""
    flt = month_filter(month, user_ids=(user_id,))
    report = build_report(conn, scope, flt, kind="reimbursement", scope_label=f"User {user_label}", now=now,
                          charts=False)
    note = ("Amount to reimburse: the gross total above, the energy charged with this user's tokens in the month. "
            "Corrupted sessions are listed apart and not included.")
    return Report(replace(report.content, sections=[Section("Statement", [["Note"], [note]])]))


def chargers_of_user(conn: Connection, user_id: str) -> list[str]:
    """Chargers a user is a member of (``memberships``): the scope of an owner's report from the CLI."""
    rows = conn.execute("select charger_id from memberships where user_id = %s order by charger_id",
                        (user_id,)).fetchall()
    return [str(r[0]) for r in rows]


def chargers_of_org(conn: Connection, org_id: str) -> list[str]:
    """Chargers at the organisation's sites (``sites.org_id``)."""
    rows = conn.execute("select c.charger_id from chargers c join sites s on s.site_id = c.site_id "
                        "where s.org_id = %s order by 1", (org_id,)).fetchall()
    return [str(r[0]) for r in rows]


def all_chargers(conn: Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute("select charger_id from chargers order by 1").fetchall()]
