"""Bulk actions: select many chargers, start/stop them, set their mode or a current limit, and see a
result per charger, with a retry for the failed ones (User Story 9)."""

from __future__ import annotations

import streamlit as st

from control.access import Permission
from control.contract import ChargingMode
from control.modes import BOOST_WARNING, describe
from dashboards import context, fleet_ui, runtime
from dashboards.access import AccessDenied
from dashboards.fleet_service import BulkAction, BulkResult, failed_ids

_ACTIONS = {BulkAction.START: "Start charging", BulkAction.STOP: "Stop charging", BulkAction.SET_MODE: "Set mode",
            BulkAction.SET_LIMIT: "Set a current limit", BulkAction.CLEAR_LIMIT: "Clear the current limit"}
_SELECTED = "bulk_chargers"

user = runtime.current_user()
ctx = context.active()
svc = fleet_ui.fleet_service()

st.title("Bulk actions")
if not runtime.access().check(user, Permission.BULK_ACTIONS).allowed:
    st.error("Your role does not allow bulk actions; act on chargers one by one from the Chargers page.")
    st.stop()

overview = fleet_ui.load("the chargers to choose from", lambda: svc.overview(user, site_id=ctx.site_id))
rows = overview.rows
if not rows:
    st.info("No chargers to act on at this location.")
    st.stop()
names = {r.charger_id: f"{r.name} · {r.site_name or 'no location'} · {r.status}" for r in rows}


def _select_status(status: str | None) -> None:
    st.session_state[_SELECTED] = [r.charger_id for r in rows if status is None or r.status == status]


st.caption("Select chargers, or pick a group:")
quick = st.columns(4)
quick[0].button(f"All ({len(rows)})", key="bulk_all", on_click=_select_status, args=(None,))
for i, status in enumerate(("Idle", "Charging", "Error")):
    count = sum(r.status == status for r in rows)
    quick[i + 1].button(f"{status} ({count})", key=f"bulk_pick_{status.lower()}", on_click=_select_status,
                        args=(status,), disabled=count == 0)
chosen = st.multiselect("Chargers", list(names), format_func=lambda k: names.get(k, k), key=_SELECTED)

action = st.selectbox("Action", list(_ACTIONS), format_func=lambda a: _ACTIONS[a], key="bulk_action")
mode: str | None = None
limit_a: float | None = None
confirmed = False
if action is BulkAction.SET_MODE:
    mode = st.selectbox("Mode", [m.value for m in ChargingMode], format_func=lambda m: describe(ChargingMode(m)).title,
                        key="bulk_mode")
    st.caption(describe(ChargingMode(mode)).description)
    if mode == ChargingMode.BOOST:
        st.warning(BOOST_WARNING)
        confirmed = st.checkbox("I understand; switch the selected chargers to Boost", key="bulk_boost_ok")
elif action is BulkAction.SET_LIMIT:
    limit_a = float(st.number_input("Limit (A per charger)", min_value=0.0, max_value=500.0, value=16.0, step=1.0,
                                    key="bulk_limit_a"))
    st.caption("Load management keeps each selected charger at or below this current until you clear it.")


def _run(ids: list[str], what: BulkAction, mode: str | None, limit_a: float | None, confirmed: bool,
         previous: list[BulkResult] | None = None) -> None:
    """Act, and keep one result per charger (a retry replaces the retried chargers' results)."""
    try:
        fresh = {r.charger_id: r for r in svc.bulk(user, ids, what, mode=mode, limit_a=limit_a, confirmed=confirmed)}
        results = [fresh.pop(r.charger_id, r) for r in previous or []] + list(fresh.values())
        st.session_state["bulk_results"] = (what, mode, limit_a, confirmed, results)
    except AccessDenied as exc:
        st.session_state["bulk_error"] = str(exc)
    except ValueError as exc:
        st.session_state["bulk_error"] = str(exc)


run_clicked = st.button(f"{_ACTIONS[action]} on {len(chosen)} charger(s)", type="primary", key="bulk_run",
                        disabled=not chosen)
if run_clicked:
    with st.spinner("Waiting for the chargers' answers (up to 5 s)…"):
        _run(list(chosen), action, mode, limit_a, confirmed)

error = st.session_state.pop("bulk_error", None)
if error:
    st.error(error)

stored = st.session_state.get("bulk_results")
if stored is not None:
    done_action, done_mode, done_limit_a, done_confirmed, results = stored
    results_list: list[BulkResult] = list(results)
    ok = sum(r.ok for r in results_list)
    refused = sum(r.outcome == "refused" for r in results_list)
    failed = len(results_list) - ok - refused
    st.subheader(f"Results: {_ACTIONS[done_action]}")
    summary = f"{ok} succeeded, {failed} failed, {refused} refused (not permitted) of {len(results_list)}"
    (st.success if ok == len(results_list) else st.warning)(summary)
    st.dataframe([{"Charger": r.charger_id, "Name": names.get(r.charger_id, r.charger_id).split(" · ")[0],
                   "Result": "✅ done" if r.ok else ("⛔ refused" if r.outcome == "refused" else f"❌ {r.outcome}"),
                   "Message": r.message} for r in results_list], hide_index=True, width="stretch",
                 key="bulk_results_table")
    retry = failed_ids(results_list)
    if retry and st.button(f"Retry the {len(retry)} failed", key="bulk_retry"):
        with st.spinner("Retrying…"):
            _run(retry, done_action, done_mode, done_limit_a, done_confirmed, previous=results_list)
        st.rerun()
