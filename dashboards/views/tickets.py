"""Tickets: a record per charger problem (the RMA path), bundling its alerts, timeline, troubleshooting and
diagnostics files, with status open / waiting / closed and a zip export of the bundle."""

from __future__ import annotations

import streamlit as st

from control.support import UPLOADS_SUBDIR, TicketStatus, ticket_move_allowed
from dashboards import context, runtime, ui
from dashboards import support_records as records
from dashboards.access import AccessDenied
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()
access = runtime.access()

st.title("Tickets")
st.caption(ctx.label)

names = {c.charger_id: f"{c.name} ({c.charger_id})" for c in ctx.chargers}

with st.expander("Open a ticket", icon=":material/add:", expanded=False):
    if not ctx.chargers:
        st.caption("No chargers in this location.")
    else:
        default = ctx.charger.charger_id if ctx.charger else ctx.chargers[0].charger_id
        charger_id: str = st.selectbox("Charger", list(names), index=list(names).index(default), key="tk_charger",
                                       format_func=lambda c: names.get(c, c))
        try:
            candidates = records.open_alerts_of(user, access, charger_id)
        except (AccessDenied, QueryError) as exc:
            candidates = []
            ui.error_box("the charger's alerts", exc)
        alert_labels = {a.alert_id: f"{a.severity.value} · {a.message[:80]} · {a.state.value}" for a in candidates}
        with st.form("tk_new"):
            title = st.text_input("Title", key="tk_title", max_chars=records.MAX_TITLE_CHARS,
                                  placeholder="e.g. Ground fault keeps returning after reset")
            notes = st.text_area("Notes", key="tk_notes", placeholder="What was tried; what the customer said")
            chosen = st.multiselect("Alerts to bundle", list(alert_labels), key="tk_alerts",
                                    format_func=lambda a: alert_labels.get(a, a))
            if st.form_submit_button("Open ticket", key="tk_open"):
                try:
                    ticket = records.open_ticket(user, access, charger_id, title=title, notes=notes, alert_ids=chosen)
                    st.success(f"Ticket {ticket.ticket_id} opened.")
                    st.session_state["tk_pick"] = ticket.ticket_id
                except AccessDenied as exc:
                    ui.refused(exc)
                except (ValueError, QueryError) as exc:
                    st.error(f"Not opened: {exc}")

statuses = st.multiselect("Status", list(TicketStatus), default=[TicketStatus.OPEN, TicketStatus.WAITING],
                          key="tk_f_status", format_func=lambda s: s.value.title())
try:
    found = records.tickets(user, access, statuses=statuses,
                            charger_ids=[c.charger_id for c in ctx.chargers] if ctx.site_id else None)
except AccessDenied as exc:
    ui.refused(exc)
    st.stop()
except QueryError as exc:
    ui.error_box("the tickets", exc)
    st.stop()

if not found:
    st.info("No tickets with this status.", icon=":material/inbox:")
    st.stop()

st.dataframe([{"ticket": t.ticket_id, "charger": names.get(t.charger_id, t.charger_id), "title": t.title,
               "status": t.status.value, "alerts": len(t.alert_ids), "opened by": t.created_by,
               "updated": ui.fmt_time(t.updated_at, user.time_zone)} for t in found],
             hide_index=True, width="stretch", key="tk_table")

ids = [t.ticket_id for t in found]
if st.session_state.get("tk_pick") not in ids:
    st.session_state["tk_pick"] = ids[0]
labels = {t.ticket_id: f"{t.ticket_id} · {t.title}" for t in found}
picked: str = st.selectbox("Ticket", ids, key="tk_pick", format_func=lambda i: labels.get(i, i))
try:
    view = records.ticket_view(user, access, picked)
except (AccessDenied, QueryError) as exc:
    ui.error_box(f"ticket {picked}", exc)
    st.stop()

ticket = view.ticket
st.subheader(f"{ticket.ticket_id}: {ticket.title}")
st.caption(f"{names.get(ticket.charger_id, ticket.charger_id)} · {ticket.status.value} · opened by "
           f"{ticket.created_by} {ui.fmt_time(ticket.created_at, user.time_zone)}")
if ticket.notes:
    st.text(ticket.notes)
left, right = st.columns([3, 2])
with left:
    st.markdown("**Alerts**")
    if view.alerts:
        st.dataframe([{"when": ui.fmt_time(a.ts, user.time_zone), "severity": a.severity.value, "message": a.message,
                       "state": a.state.value} for a in view.alerts], hide_index=True, width="stretch",
                     key="tk_alerts_table")
    else:
        st.caption("No alerts bundled.")
    st.markdown("**History**")
    st.dataframe([{"when": ui.fmt_time(e.ts, user.time_zone), "by": e.user_id,
                   "change": f"{e.from_status.value if e.from_status else '—'} → {e.to_status.value}",
                   "note": e.note or ""} for e in view.events], hide_index=True, width="stretch", key="tk_events")
with right:
    targets = [s for s in TicketStatus if ticket_move_allowed(ticket.status, s)]
    target = st.radio("Move to", targets, key=f"tk_target_{ticket.ticket_id}", horizontal=True,
                      format_func=lambda s: s.value.title())
    note = st.text_input("Note", key=f"tk_note_{ticket.ticket_id}",
                         placeholder="e.g. RMA 4711 sent to the vendor")
    if st.button("Update status", key="tk_move", icon=":material/sync_alt:"):
        try:
            moved = records.move_ticket(user, access, ticket.ticket_id, target, note)
            ui.flash("tk_done", f"Ticket {moved.ticket_id} is now {moved.status.value}.")
        except AccessDenied as exc:
            ui.refused(exc)
        except (ValueError, QueryError) as exc:
            st.error(f"Not updated: {exc}")
    ui.show_flash("tk_done")
    st.markdown("**Export for the RMA**")
    st.caption("A zip with the ticket, its alerts, the charger's last 7 days on the timeline, the raw OCPP frames, "
               "the troubleshooting done and every diagnostics file.")
    if st.button("Prepare the bundle", key="tk_bundle", icon=":material/folder_zip:"):
        try:
            st.session_state["tk_zip"] = records.ticket_bundle(
                user, access, ticket.ticket_id, runtime.settings().data_dir / UPLOADS_SUBDIR)
        except (AccessDenied, QueryError, OSError) as exc:
            ui.error_box("the bundle", exc)
    bundle = st.session_state.get("tk_zip")
    if bundle is not None and bundle[0].startswith(ticket.ticket_id):
        st.download_button(f"Download {bundle[0]}", bundle[1], file_name=bundle[0], mime="application/zip",
                           key="tk_download", icon=":material/download:")
