"""Alert feed: live alerts of the visible chargers, filters, acknowledge / resolve with a note, guided steps."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from control.access import Permission
from control.alerts import AlertKind
from control.contract import AlertState, Severity
from dashboards import context, runtime, ui
from dashboards import support_service as svc
from dashboards.access import AccessDenied, Principal
from warehouse.alert_store import AlertRow
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()

st.title("Alert feed")
st.caption(f"{ctx.label} · updates every 2 s")

SEVERITY_ICON = {Severity.CRITICAL: "🟥", Severity.ERROR: "🟧", Severity.WARNING: "🟨", Severity.INFO: "🟦"}

models = sorted({c.model for c in ctx.chargers if c.model})
sites = {loc.site_id: loc.name for loc in ctx.locations if loc.site_id}
cols = st.columns(5)
severities = cols[0].multiselect("Severity", list(Severity), key="alert_f_severity",
                                 format_func=lambda s: s.value.title())
kinds = cols[1].multiselect("Type", [k.value for k in AlertKind], key="alert_f_kind",
                            format_func=lambda k: k.replace("_", " "))
site_ids = cols[2].multiselect("Site", list(sites), key="alert_f_site", format_func=lambda s: sites.get(s, s))
chosen_models = cols[3].multiselect("Charger model", models, key="alert_f_model")
states = cols[4].multiselect("State", list(AlertState), default=[AlertState.OPEN, AlertState.ACKNOWLEDGED],
                             key="alert_f_state", format_func=lambda s: s.value.title())

filters = svc.AlertFilters(
    severities=tuple(severities), kinds=tuple(kinds), site_ids=tuple(site_ids), models=tuple(chosen_models),
    states=tuple(states), charger_ids=tuple(c.charger_id for c in ctx.chargers) if ctx.site_id else ())


def _table(alerts: list[AlertRow], now: datetime) -> None:
    names = {c.charger_id: c.name for c in ctx.chargers}
    st.dataframe(
        [{"": SEVERITY_ICON.get(a.severity, ""), "when": ui.fmt_time(a.ts, user.time_zone),
          "ago": ui.fmt_ago(a.last_seen or a.ts, now), "severity": a.severity.value, "type": a.kind.replace("_", " "),
          "charger": names.get(a.charger_id or "", a.charger_id or "(site)"), "model": a.model or "",
          "message": a.message, "count": a.count, "state": a.state.value, "id": a.alert_id} for a in alerts],
        hide_index=True, width="stretch", key="alert_table",
        column_config={"count": st.column_config.NumberColumn(format="%d"),
                       "message": st.column_config.TextColumn(width="large")})


@st.fragment(run_every="2s")
def live_feed(who: Principal) -> None:
    now = datetime.now(UTC)
    try:
        feed = svc.alert_feed(who, runtime.access(), filters)
    except AccessDenied as exc:
        ui.refused(exc)
        return
    except QueryError as exc:
        ui.error_box("the alerts", exc)
        return
    open_n = sum(1 for a in feed.alerts if a.state is AlertState.OPEN)
    crit = sum(1 for a in feed.alerts if a.state is not AlertState.RESOLVED
               and a.severity in (Severity.CRITICAL, Severity.ERROR))
    m = st.columns(3)
    m[0].metric("Shown", len(feed.alerts))
    m[1].metric("Open", open_n)
    m[2].metric("Errors and critical, not resolved", crit)
    if not feed.alerts:
        st.info("No alerts match these filters.", icon=":material/notifications_off:")
        return
    _table(feed.alerts, now)


live_feed(user)

st.subheader("Act on an alert")
try:
    current = svc.alert_feed(user, runtime.access(), filters).alerts
except (AccessDenied, QueryError) as exc:
    current = []
    ui.error_box("the alerts to act on", exc)

if not current:
    st.caption("Nothing to act on with these filters.")
    st.stop()

labels = {a.alert_id: f"{a.severity.value.upper()} · {a.charger_id or a.site_id or ''} · {a.message[:80]}"
          for a in current}
picked = st.selectbox("Alert", list(labels), key="alert_pick", format_func=lambda i: labels.get(i, i))
try:
    detail = svc.alert_detail(user, runtime.access(), picked)
except (AccessDenied, QueryError) as exc:
    ui.error_box(f"alert {picked}", exc)
    st.stop()

alert = detail.alert
left, right = st.columns([3, 2])
with left:
    st.markdown(f"**{alert.message}**")
    st.caption(f"{alert.kind.replace('_', ' ')} · {alert.severity.value} · {alert.state.value} · seen {alert.count}×"
               f" · first {ui.fmt_time(alert.first_seen or alert.ts, user.time_zone)}"
               f" · last {ui.fmt_time(alert.last_seen or alert.ts, user.time_zone)}")
    if alert.acknowledged_by:
        st.caption(f"Acknowledged by {alert.acknowledged_by} at {ui.fmt_time(alert.acknowledged_at, user.time_zone)}")
    note = st.text_area("Note", key="alert_note", max_chars=svc.MAX_NOTE_CHARS,
                        placeholder="What you saw or did (stored with the acknowledgement)")
    resolved = alert.state is AlertState.RESOLVED
    b = st.columns(3)
    act = None
    if b[0].button("Acknowledge", key="alert_ack", icon=":material/done:",
                   disabled=not detail.may_acknowledge or resolved or alert.state is AlertState.ACKNOWLEDGED):
        act = svc.acknowledge_alert
    if b[1].button("Resolve", key="alert_resolve", icon=":material/task_alt:",
                   disabled=not detail.may_acknowledge or resolved):
        act = svc.resolve_alert
    may_troubleshoot = runtime.access().check(user, Permission.TROUBLESHOOT).allowed  # the page is support's
    if alert.charger_id and may_troubleshoot and b[2].button("Troubleshoot", key="alert_troubleshoot",
                                                             icon=":material/build:"):
        context.request_charger(alert.charger_id)
        st.switch_page("views/troubleshoot.py")
    if act is not None:
        try:
            row = act(user, runtime.access(), alert.alert_id, note)
            ui.flash("alert_done", f"Alert {row.alert_id} is now {row.state.value}.")
        except AccessDenied as exc:
            ui.refused(exc)
        except (QueryError, ValueError) as exc:
            st.error(f"Could not update the alert: {exc}")
    ui.show_flash("alert_done")
    if not detail.may_acknowledge:
        st.caption("Your role may view this alert but not acknowledge it.")
    st.markdown("**History**")
    st.dataframe([{"when": ui.fmt_time(t.recorded_at, user.time_zone), "from": t.from_state or "",
                   "to": t.to_state.value, "by": t.actor, "note": t.note or ""} for t in detail.transitions],
                 hide_index=True, width="stretch", key="alert_history")
with right:
    guide = detail.guide
    if guide is None:
        st.info("No guided steps for this alert type yet. Support can add them on the Troubleshooting page.")
    else:
        st.markdown(f"**Guided steps: {guide.title}** (`{guide.code}`)")
        st.markdown("\n".join(f"{i}. {step}" for i, step in enumerate(guide.steps, start=1)))
        if guide.remote_fixable:
            st.caption("Often fixed remotely.")
