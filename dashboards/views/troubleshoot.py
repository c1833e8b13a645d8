"""Troubleshooting: remote actions on one charger with their results, the configuration check,
diagnostics uploads, guided steps for its faults and the knowledge-base editor."""

from __future__ import annotations

import streamlit as st

from control.access import Permission
from control.support import TRIGGER_MESSAGES, UPLOADS_SUBDIR, Verdict
from dashboards import context, runtime, ui
from dashboards import support_service as svc
from dashboards.access import AccessDenied, Principal
from warehouse.command_api import Action
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()

st.title("Troubleshooting")

RESULT_KEY = "ts_result"

options, names = context.charger_choices(ctx, "ts_charger")
if not options:
    st.info("No chargers in this location.")
    st.stop()
charger_id: str = st.selectbox("Charger", options, key="ts_charger", format_func=lambda c: names.get(c, c))

access = runtime.access()
try:
    facts = svc.charger_facts(user, access, charger_id)
    allowed = svc.allowed_actions(user, access, charger_id)
except AccessDenied as exc:
    ui.refused(exc)
    st.stop()
except QueryError as exc:
    ui.error_box(f"charger {charger_id}", exc)
    st.stop()

st.caption(f"{facts.display_name or facts.charger_id} · {facts.vendor or '?'} {facts.model or ''} · OCPP "
           f"{facts.ocpp_version or '?'} · firmware {facts.firmware_version or '?'}")


def _run(who: Principal, label: str, action: Action, connector_id: int | None = None,
         params: dict[str, str | int | float | bool | None] | None = None) -> None:
    try:
        with st.spinner(f"{label}: waiting for the charger (up to 5 s)…"):
            if action is Action.GET_DIAGNOSTICS:
                result = svc.request_diagnostics(who, access, runtime.commands(), charger_id,
                                                 upload_base_url=runtime.settings().upload_base_url)
            else:
                result = svc.run_action(who, access, runtime.commands(), charger_id, action,
                                        connector_id=connector_id, params=params)
        st.session_state[RESULT_KEY] = ("ok" if result.ok else "warn", result.summary)
    except AccessDenied as exc:
        st.session_state[RESULT_KEY] = ("refused", f"{label} not allowed: {exc}")
    except (ValueError, QueryError) as exc:
        st.session_state[RESULT_KEY] = ("refused", f"{label}: {exc}")


st.subheader("Remote actions")
soft, hard = st.columns(2)
with soft:
    st.markdown("**Non-destructive**")
    if st.button("Soft reset", key="ts_soft_reset", icon=":material/restart_alt:",
                 disabled=not allowed[Action.SOFT_RESET]):
        _run(user, "Soft reset", Action.SOFT_RESET)
    connector = st.selectbox("Connector", facts.connectors, key="ts_connector")
    if st.button("Unlock connector", key="ts_unlock", icon=":material/lock_open:",
                 disabled=not allowed[Action.RELEASE_CABLE]):
        _run(user, "Unlock connector", Action.RELEASE_CABLE, connector_id=connector)
    message = st.selectbox("Message to trigger", TRIGGER_MESSAGES, key="ts_trigger_msg")
    if st.button("Trigger message", key="ts_trigger", icon=":material/send:", disabled=not allowed[Action.TRIGGER]):
        _run(user, "Trigger message", Action.TRIGGER,
             connector_id=connector if message in ("StatusNotification", "MeterValues") else None,
             params={"message": message})
with hard:
    st.markdown("**Support only**")
    confirm = st.checkbox("I understand a hard reset stops any running session", key="ts_hard_confirm")
    if st.button("Hard reset", key="ts_hard_reset", icon=":material/power_settings_new:",
                 disabled=not allowed[Action.HARD_RESET] or not confirm):
        _run(user, "Hard reset", Action.HARD_RESET)
    availability = st.radio("Availability", ["Operative", "Inoperative"], key="ts_availability_type",
                            horizontal=True)
    if st.button("Change availability", key="ts_availability", icon=":material/toggle_on:",
                 disabled=not allowed[Action.CHANGE_AVAILABILITY]):
        _run(user, "Change availability", Action.CHANGE_AVAILABILITY, params={"type": availability})
    if st.button("Request diagnostics", key="ts_diagnostics", icon=":material/upload_file:",
                 disabled=not allowed[Action.GET_DIAGNOSTICS]):
        _run(user, "Request diagnostics", Action.GET_DIAGNOSTICS)

result = st.session_state.get(RESULT_KEY)
if result is not None:
    kind, text = result
    (st.success if kind == "ok" else st.error if kind == "refused" else st.warning)(text)

st.subheader("Configuration check")
st.caption(f"Compares the charger's configuration with the expected profile of model {facts.model or '(unknown)'}.")
if st.button("Read and compare configuration", key="ts_config_check", icon=":material/fact_check:",
             disabled=not allowed[Action.GET_CONFIG]):
    try:
        with st.spinner("Reading the configuration…"):
            st.session_state["ts_config"] = svc.check_configuration(user, access, runtime.commands(), charger_id)
    except AccessDenied as exc:
        ui.refused(exc)
    except QueryError as exc:
        ui.error_box("the configuration", exc)
check = st.session_state.get("ts_config")
if isinstance(check, svc.ConfigCheck) and check.charger.charger_id == charger_id:
    ok = all(d.verdict is Verdict.OK for d in check.differences) and bool(check.differences)
    (st.success if ok else st.warning)(check.summary)
    if check.differences:
        st.dataframe([{"setting": d.key, "expected": d.expected, "charger has": d.actual or "(not reported)",
                       "result": d.verdict.value, "why": d.why} for d in check.differences],
                     hide_index=True, width="stretch", key="ts_config_table")
    with st.expander(f"Everything the charger reported ({len(check.values)} settings)"):
        st.json(dict(check.values))

st.subheader("Diagnostics files")
if allowed[Action.GET_DIAGNOSTICS]:
    uploads = runtime.settings().data_dir / UPLOADS_SUBDIR
    try:
        files = svc.diagnostic_files(user, access, charger_id)
    except QueryError as exc:
        ui.error_box("the diagnostics files", exc)
        files = []
    if not files:
        st.caption("No diagnostics uploaded by this charger yet. Request diagnostics above; the file appears here "
                   "when the charger has uploaded it (usually within a minute; reload the page).")
    if files:
        st.dataframe([{"file": f.file_name, "received": ui.fmt_time(f.received_at, user.time_zone),
                       "bytes": f.size_bytes, "sha256": f.sha256[:16]} for f in files], hide_index=True,
                     width="stretch", key="ts_files")
        labels = {f.file_id: f"{f.file_name} ({ui.fmt_time(f.received_at, user.time_zone)})" for f in files}
        file_id: int = st.selectbox("File", list(labels), key="ts_file", format_func=lambda i: labels.get(i, str(i)))
        try:  # only the chosen file is read (they can be large)
            record, data = svc.read_diagnostic_file(user, access, file_id, uploads)
            st.download_button(f"Download {record.file_name}", data, file_name=record.file_name, key="ts_download",
                               icon=":material/download:")
        except OSError as exc:
            st.error(f"The file is recorded but missing on disk ({exc.__class__.__name__}); request diagnostics again.")
else:
    st.caption("Your role does not include diagnostics.")

st.subheader("Guided steps for this charger's alerts")
try:
    pairs = svc.charger_guides(user, access, charger_id)
except QueryError as exc:
    ui.error_box("the charger's alerts", exc)
    pairs = []
if not pairs:
    st.caption("No open alerts on this charger.")
for alert, guide in pairs:
    with st.expander(f"{alert.severity.value.upper()} · {alert.message}", expanded=guide is not None):
        if guide is None:
            st.caption("No guided steps for this alert type.")
        else:
            st.markdown(f"**{guide.title}**")
            st.markdown("\n".join(f"{i}. {s}" for i, s in enumerate(guide.steps, start=1)))

st.subheader("Recent troubleshooting on this charger")
try:
    history = svc.action_history(user, access, charger_id)
    if not history:
        st.caption("No troubleshooting actions yet.")
    else:
        st.dataframe([{"when": ui.fmt_time(h.record.ts, user.time_zone), "by": h.record.user_id,
                       "action": svc.ACTION_LABELS.get(Action(h.record.action), h.record.action),
                       "result": h.record.summary,
                       "final": h.final_outcome or ""} for h in history], hide_index=True, width="stretch",
                     key="ts_history")
except AccessDenied:
    st.caption("Your role does not show the troubleshooting history.")
except QueryError as exc:
    ui.error_box("the troubleshooting history", exc)

if access.check(user, Permission.TROUBLESHOOT).allowed:
    st.subheader("Knowledge base")
    try:
        kb = svc.knowledge_base(user, access)
    except (AccessDenied, QueryError) as exc:
        ui.error_box("the knowledge base", exc)
        st.stop()
    codes = [g.code for g in kb]
    code = st.selectbox("Fault code", [*codes, "(new code)"], key="kb_code")
    current = next((g for g in kb if g.code == code), None)
    with st.form("kb_form"):
        new_code = st.text_input("Code", value=current.code if current else "", key=f"kb_new_code_{code}",
                                 disabled=current is not None)
        title = st.text_input("Title", value=current.title if current else "", key=f"kb_title_{code}")
        steps = st.text_area("Steps (one a line)", value="\n".join(current.steps) if current else "",
                             key=f"kb_steps_{code}", height=150)
        fixable = st.checkbox("Often fixed remotely", value=current.remote_fixable if current else False,
                              key=f"kb_fixable_{code}")
        if st.form_submit_button("Save guide", key="kb_save"):
            try:
                svc.save_guide(user, access, code=current.code if current else new_code, title=title,
                               steps=steps.splitlines(), remote_fixable=fixable)
                st.success("Saved.")
            except (AccessDenied, ValueError, QueryError) as exc:
                st.error(f"Not saved: {exc}")
