"""Analytics & exports: monthly and yearly summaries, charts, top chargers, and CSV/PDF exports."""

from __future__ import annotations

from datetime import UTC, date, datetime

import altair as alt
import polars as pl
import streamlit as st

from control.access import Role
from dashboards import context, runtime, ui
from dashboards.access import AccessDenied
from dashboards.history_service import HistoryService
from reports.charts import monthly_frame
from warehouse.history import HistoryFilter
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()
service = HistoryService(runtime.access())

st.title("Analytics & exports")
st.caption(f"{ctx.label} · clean sessions only; corrupted sessions are listed apart · UTC days")

this_year = datetime.now(UTC).year
c1, c2 = st.columns([1, 3])
year = c1.selectbox("Year", list(range(this_year, this_year - 6, -1)), key="an_year")
names = {c.charger_id: c.name for c in ctx.chargers}
chargers = c2.multiselect("Chargers", list(names), format_func=lambda c: names.get(c, c), key="an_chargers",
                          placeholder=f"All at {ctx.label}")
scope_ids = tuple(chargers) or tuple(names)
if not scope_ids:
    st.info("There are no chargers at this location, so there is nothing to analyse.")
    st.stop()
flt = HistoryFilter(date(year, 1, 1), date(year, 12, 31), charger_ids=scope_ids)
try:
    overview = service.summaries(user, flt)
except QueryError as exc:
    ui.error_box("the summaries", exc)
    st.stop()

total = overview.total
m1, m2, m3, m4 = st.columns(4)
m1.metric(f"Energy {year}", f"{total.energy_kwh:,.1f} kWh")
m2.metric("Sessions", f"{total.sessions:,}")
m3.metric("Average per session", f"{total.avg_kwh_per_session:,.1f} kWh" if total.avg_kwh_per_session else "–")
if total.costs:
    currency = next(iter(total.costs))
    net, vat, gross = total.amounts(currency)
    m4.metric("Estimated cost", f"{gross} {currency}", help=f"net {net} + VAT {vat}")
else:
    m4.metric("Estimated cost", "–")
if total.cost_message:
    st.info(f"{total.cost_message}: {total.no_tariff_sessions} session(s) have no tariff.", icon=":material/sell:")

if not overview.months:
    st.info(f"No sessions in {year}.")
else:
    months = monthly_frame(overview.months).to_pandas()
    bars = alt.Chart(months).mark_bar().encode(x=alt.X("month:O", title=None),
                                              y=alt.Y("energy_kwh:Q", title="kWh"),
                                              tooltip=["month:O", alt.Tooltip("energy_kwh:Q", format=",.1f"),
                                                       "sessions:Q"])
    trend = alt.Chart(months).mark_line(color="orange", point=True).transform_window(
        rolling="mean(energy_kwh)", frame=[-2, 0]).encode(x=alt.X("month:O"),
                                                          y=alt.Y("rolling:Q", title="kWh (3-month mean)"))
    st.altair_chart(alt.layer(bars, trend), width="stretch")
    rows = []
    for p in overview.months:
        cost = "–"
        if p.costs:
            cur = next(iter(p.costs))
            cost = f"{p.amounts(cur)[2]} {cur}"
        rows.append({"month": p.period.strftime("%Y-%m") if p.period else "", "kWh": round(p.energy_kwh, 3),
                     "sessions": p.sessions, "avg kWh": round(p.avg_kwh_per_session or 0, 2),
                     "excluded": p.excluded_sessions, "estimated cost": cost})
    st.dataframe(pl.DataFrame(rows), hide_index=True, width="stretch", key="an_months")
    st.markdown("**Top chargers**")
    st.dataframe(overview.top.select("charger_id", "charger_name", "sessions", pl.col("energy_kwh").round(1), "net",
                                     "currency"), hide_index=True, width="stretch")
if not overview.excluded.is_empty():
    listed = overview.excluded.height  # the first few hundred; total.excluded_sessions counts them all
    more = f" (the first {listed:,} listed)" if total.excluded_sessions > listed else ""
    with st.expander(f"{total.excluded_sessions:,} corrupted session(s), excluded from every figure above{more}"):
        st.dataframe(overview.excluded.with_columns(pl.col("reasons").list.join("; ")).drop("flags"),
                     hide_index=True, width="stretch")

st.divider()
st.subheader("Export", anchor=False)
e1, e2, e3 = st.columns(3)
bom = e1.checkbox("Byte-order mark (for spreadsheets)", key="an_bom")
fleet = Role.FLEET_MANAGER in user.roles or Role.OPERATOR in user.roles
if e2.button("Prepare CSV and PDF", key="an_prepare", type="primary"):
    try:
        with st.spinner("Building the report…"):
            report = service.report(user, flt, fleet=fleet)
            st.session_state["an_files"] = (report.csv(bom=bom), report.pdf(), year)
    except (AccessDenied, QueryError) as exc:
        st.error(f"The report could not be built: {exc}")
files = st.session_state.get("an_files")
if files is not None and files[2] == year:
    csv_bytes, pdf_bytes, _ = files
    d1, d2 = st.columns(2)
    d1.download_button("Download CSV", csv_bytes, file_name=f"flowbank-{year}.csv", mime="text/csv", key="an_csv")
    d2.download_button("Download PDF", pdf_bytes, file_name=f"flowbank-{year}.pdf", mime="application/pdf",
                       key="an_pdf")
month = e3.selectbox("My reimbursement statement", [date(year, m, 1) for m in range(12, 0, -1)],
                     format_func=lambda d: d.strftime("%B %Y"), key="an_month")
if e3.button("Prepare statement", key="an_statement"):
    try:
        statement = service.reimbursement(user, month)
        st.download_button("Download statement (PDF)", statement.pdf(), key="an_statement_pdf",
                           file_name=f"reimbursement-{month:%Y-%m}.pdf", mime="application/pdf")
    except (AccessDenied, QueryError) as exc:
        st.error(f"The statement could not be built: {exc}")
