"""SQL: read-only questions to the analytics lake, with the result as a table and a chart."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import runtime
from dashboards.access import AccessDenied
from dashboards.analyst_service import AnalystService, QueryRefused

EXAMPLE = """-- kWh per month per charger (clean sessions only)
select charger_id, month, round(energy_wh / 1000, 1) as kwh
from monthly_energy
order by month desc, kwh desc
limit 50"""

user = runtime.current_user()
service = AnalystService(runtime.access(), runtime.analytics)

st.title("SQL")
st.caption("Read-only DuckDB over the analytics lake (data at most about a minute old). "
           "The same views as `flowbank sql`; see docs/analyst-schema.md.")

try:
    views = service.views(user)
except AccessDenied as exc:
    st.error(f"You cannot run SQL here: {exc}.")
    st.stop()
except QueryRefused as exc:
    st.error(f"The analytics database cannot be opened: {exc}")
    st.stop()

with st.expander(f"Views ({len(views)})"):
    for name, columns in views.items():
        st.markdown(f"**{name}**: " + ", ".join(f"`{c}` {t.lower()}" for c, t, _ in columns))

query = st.text_area("Query", value=EXAMPLE, height=160, key="sql_query")
if st.button("Run", type="primary", key="sql_run"):
    try:
        st.session_state["sql_result"] = service.run(user, query)
        st.session_state.pop("sql_error", None)
    except QueryRefused as exc:
        st.session_state["sql_error"] = str(exc)
        st.session_state.pop("sql_result", None)

if "sql_error" in st.session_state:
    st.error(st.session_state["sql_error"])
result = st.session_state.get("sql_result")
if result is not None:
    frame: pl.DataFrame = result.frame
    note = f" (first {frame.height:,} rows)" if result.truncated else ""
    st.caption(f"{frame.height:,} rows{note} in {result.elapsed_s * 1000:.0f} ms")
    if frame.is_empty():
        st.info("The query returned no rows.")
    else:
        st.dataframe(frame, width="stretch", hide_index=True)
        numeric = [c for c, t in frame.schema.items() if t.is_numeric()]
        others = [c for c in frame.columns if c not in numeric]
        if numeric and others:
            c1, c2 = st.columns(2)
            x = c1.selectbox("Chart: category / time", others, key="sql_x")
            y = c2.selectbox("Chart: value", numeric, key="sql_y")
            chart = alt.Chart(frame.select(x, y).head(500).to_pandas()).mark_bar().encode(x=alt.X(x), y=alt.Y(y))
            st.altair_chart(chart, width="stretch")
