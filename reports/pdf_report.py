"""The PDF report (fpdf2): summary first, then charts, the breakdowns, the sessions and the
excluded ones, and a legend of the columns and quality flags.

Every page has a header with the title, period and scope, and a footer with "Page n/N". Tables
repeat their heading on each page. The DejaVu Sans font is embedded (vendored under
``reports/fonts``, so non-ASCII names render without system fonts). Totals are the same numbers
as :func:`warehouse.history.summarize` (the screen), the CSV and DuckDB.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl
from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode, XPos, YPos

from control.records import EXCLUDING_FLAGS, FLAG_DESCRIPTIONS
from control.tariffs import ADD_TARIFF_MESSAGE
from reports.csv_export import session_rows
from warehouse.history import PeriodTotal

# fpdf2's font subsetting logs every glyph list at INFO through fontTools: noise in `flowbank` output.
logging.getLogger("fontTools").setLevel(logging.WARNING)
FONT_DIR: Final = Path(__file__).with_name("fonts")
FONT: Final = "DejaVu"
MAX_SESSION_ROWS: Final = 3000  # beyond this the PDF lists the breakdowns only; the CSV has every session
MAX_EXCLUDED_ROWS: Final = 300


@dataclass(frozen=True, slots=True)
class Section:
    """A titled table: the first row is the heading."""

    title: str
    rows: list[list[str]]
    col_widths: tuple[float, ...] | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ReportContent:
    title: str
    period_label: str
    scope_label: str
    generated_at: datetime
    total: PeriodTotal  # the whole period
    periods: Sequence[PeriodTotal]  # per month (or year)
    history: pl.DataFrame  # warehouse.history.history_list
    charts: Sequence[bytes] = ()  # PNG
    sections: Sequence[Section] = field(default_factory=tuple)  # breakdowns (top chargers, by site, ...)
    list_sessions: bool = True


def fmt_kwh(wh: float) -> str:
    return f"{wh / 1000:,.3f}"


def amounts(total: PeriodTotal) -> tuple[str, str, str]:
    """(net, VAT, gross) as text with currency; several currencies joined; the call to action when none."""
    if not total.costs:
        return (ADD_TARIFF_MESSAGE if total.no_tariff_sessions else "—", "", "")
    parts = [[f"{v} {cur}" for v in total.amounts(cur)] for cur in sorted(total.costs)]
    return tuple(" + ".join(p[i] for p in parts) for i in range(3))  # type: ignore[return-value]


def summary_rows(periods: Sequence[PeriodTotal], total: PeriodTotal) -> list[list[str]]:
    head = ["Period", "Sessions", "kWh", "Avg kWh/session", "Net", "VAT", "Gross", "Excluded"]
    rows = [head]
    for t in [*periods, total]:
        label = "Total" if t is total else (t.period.strftime("%Y-%m") if t.period else "all")
        avg = t.avg_kwh_per_session
        rows.append([label, str(t.sessions), fmt_kwh(t.energy_wh), "—" if avg is None else f"{avg:.3f}",
                     *amounts(t), str(t.excluded_sessions)])
    return rows


class _Pdf(FPDF):
    def __init__(self, content: ReportContent) -> None:
        super().__init__(orientation="L", format="A4")
        self.content = content
        self.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=16)
        self.set_title(content.title)
        self.set_creator("FlowBankOS")

    def header(self) -> None:
        self.set_font(FONT, "B", 12)
        self.cell(0, 7, f"FlowBankOS — {self.content.title}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "", 8.5)
        self.cell(0, 5, f"Period: {self.content.period_label}    Scope: {self.content.scope_label}",
                  new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
        self.ln(4)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 8)
        stamp = self.content.generated_at.strftime("%Y-%m-%d %H:%M UTC")
        self.cell(0, 8, f"Generated {stamp} · times and days in UTC · Page {self.page_no()}/{{nb}}", align="C")

    def heading(self, text: str) -> None:
        if self.get_y() > self.h - 40:
            self.add_page()
        self.set_font(FONT, "B", 11)
        self.cell(0, 8, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, "", 8)

    def table_of(self, rows: list[list[str]], col_widths: tuple[float, ...] | None = None,
                 size: float = 8) -> None:
        self.set_font(FONT, "", size)
        with self.table(col_widths=col_widths, headings_style=FontFace(emphasis="BOLD", fill_color=(225, 230, 240)),
                        cell_fill_color=(246, 246, 246), cell_fill_mode=TableCellFillMode.ROWS, repeat_headings=1,
                        line_height=4.6, text_align="LEFT") as table:
            for row in rows:
                table.row([str(c) for c in row])
        self.ln(3)


SESSION_COLUMNS: Final = (("started_at", "Start (UTC)"), ("ended_at", "End (UTC)"), ("duration_min", "Min"),
                          ("charger_name", "Charger"), ("user_name", "User"), ("mode", "Mode"),
                          ("energy_in_period_kwh", "kWh"), ("gross_in_period", "Gross"), ("outcome", "Outcome"),
                          ("quality", "Quality"))
LEGEND: Final = (
    ("Start/End", "Session plug-in and plug-out, UTC."),
    ("Min", "Plugged-in time in minutes."),
    ("kWh", "Energy inside the period (a session across midnight or a month end is split by day)."),
    ("Avg kWh/session", "kWh divided by the sessions with energy in the period."),
    ("Net / VAT / Gross", "Estimated cost from the charger's tariff at the time of charging; each total is "
                          "rounded once from the exact amounts."),
    ("Outcome", "success, or error when a fault ended the session or it was abandoned."),
    ("Quality", "ok; flagged: informational data-quality flags; excluded: corrupted, left out of every total."),
    (ADD_TARIFF_MESSAGE, "No tariff is assigned to the charger or its site: no cost is shown, never a zero."),
)


def render_pdf(content: ReportContent) -> bytes:
    pdf = _Pdf(content)
    pdf.add_page()
    pdf.heading("Summary")
    total = content.total
    net, vat, gross = amounts(total)
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(0, 6, f"Total energy {fmt_kwh(total.energy_wh)} kWh in {total.sessions} sessions; "
                         f"estimated cost net {net}, VAT {vat}, gross {gross}. "
                         f"Excluded (corrupted) sessions: {total.excluded_sessions}.",
                   new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if total.no_tariff_sessions:
        pdf.set_font(FONT, "B", 10)
        pdf.multi_cell(0, 6, f"{total.no_tariff_sessions} sessions have no tariff: {ADD_TARIFF_MESSAGE}.",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if total.uncosted_sessions:
        pdf.multi_cell(0, 6, f"{total.uncosted_sessions} sessions are not costed yet (run `flowbank report costs`).",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.table_of(summary_rows(content.periods, total), (22, 18, 26, 26, 40, 36, 40, 18))
    for png in content.charts:
        if pdf.get_y() > pdf.h - 90:
            pdf.add_page()
        pdf.image(io.BytesIO(png), w=190)
        pdf.ln(2)
    for section in content.sections:
        pdf.heading(section.title)
        if section.note:
            pdf.multi_cell(0, 5, section.note, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.table_of(section.rows, section.col_widths)
    pdf.heading("Sessions")
    listed = content.list_sessions and content.history.height <= MAX_SESSION_ROWS
    rows = session_rows(content.history) if listed else content.history
    if listed:
        table = [[label for _, label in SESSION_COLUMNS]]
        shown = rows.with_columns(pl.col(c).str.replace("T", " ").str.slice(0, 16) for c in ("started_at", "ended_at"))
        table += [["" if v is None else str(v) for v in r]
                  for r in shown.select([c for c, _ in SESSION_COLUMNS]).iter_rows()]
        pdf.table_of(table, (28, 28, 14, 50, 45, 17, 20, 22, 18, 20), size=7)
    else:
        pdf.multi_cell(0, 5, f"{rows.height} sessions: see the CSV export for the list (one row per session).",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    excluded = content.history.filter(pl.col("excluded"))
    pdf.heading("Excluded sessions (left out of every total)")
    if excluded.height:
        reasons = {flag.value: text for flag, text in FLAG_DESCRIPTIONS.items()}
        table = [["Session", "Start (UTC)", "Charger", "kWh (raw)", "Reason"]]
        for r in excluded.head(MAX_EXCLUDED_ROWS).iter_rows(named=True):
            why = "; ".join(reasons.get(f, f) for f in r["flags"] if f in {x.value for x in EXCLUDING_FLAGS})
            table.append([r["session_id"], r["started_at"].strftime("%Y-%m-%d %H:%M"), r["charger_name"] or
                          r["charger_id"], fmt_kwh(r["energy_wh"]), why])
        pdf.table_of(table, (45, 30, 45, 20, 137), size=7)
        if excluded.height > MAX_EXCLUDED_ROWS:
            more = excluded.height - MAX_EXCLUDED_ROWS
            pdf.multi_cell(0, 5, f"... and {more} more: see the CSV (quality = excluded).",
                           new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    else:
        pdf.multi_cell(0, 5, "None.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.heading("Legend")
    pdf.table_of([["Column", "Meaning"], *[[a, b] for a, b in LEGEND]], (50, 227))
    pdf.heading("Quality flags")
    pdf.table_of([["Flag", "Excludes", "Meaning"],
                  *[[f.value, "yes" if f in EXCLUDING_FLAGS else "no", text] for f, text in FLAG_DESCRIPTIONS.items()]],
                 (55, 18, 204))
    return bytes(pdf.output())
