"""Sharing & reservations: who shares the active charger, invitations, the member cap, the shared
schedule (colour per user) and usage per user. Owners manage; members reserve and see their own use.

Thin: every read and action goes through :mod:`dashboards.sharing_service`, which checks access.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import altair as alt
import psycopg
import streamlit as st

from control import sharing as rules
from control.sharing import Resolution
from dashboards import context, runtime, ui
from dashboards.access import AccessDenied, Principal
from dashboards.sharing_service import (
    ReservationConflict,
    SentInvite,
    SharingError,
    SharingOverview,
    SharingService,
    from_settings,
    qr_png,
)
from warehouse.queries import QueryError

_FLASH = "share_flash"
_LAST_INVITE = "share_last_invite"
_CONFLICT = "share_conflict"
_LOAD_ERRORS = (psycopg.Error, QueryError)


def _zone(user: Principal) -> ZoneInfo:
    try:
        return ZoneInfo(user.time_zone)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _act(what: str, action: Any) -> tuple[bool, Any]:
    """Run a service action: ``(done, result)``; refusals and rule errors are shown as sentences."""
    try:
        return True, action()
    except AccessDenied as exc:
        ui.refused(exc)
    except SharingError as exc:
        st.warning(str(exc), icon=":material/info:")
    except _LOAD_ERRORS as exc:
        ui.error_box(what, exc)
    return False, None


def _flash(message: str) -> None:
    ui.flash(_FLASH, message)


# --------------------------------------------------------------------------- members & invitations


def _members(svc: SharingService, user: Principal, ov: SharingOverview) -> None:
    st.subheader("Authorized users")
    try:
        members = svc.members(user, ov.charger_id)
    except _LOAD_ERRORS as exc:
        ui.error_box("the members", exc)
        return
    st.caption(f"{ov.cap_text} · owners are not counted")
    for m in members:
        cols = st.columns([3, 4, 2, 2])
        cols[0].markdown(f"**{m.display_name}**" + (" (you)" if m.is_you else ""))
        cols[1].write(m.email)
        cols[2].write(m.role.label)
        if m.role.value == "member" and cols[3].button("Remove", key=f"share_remove_{m.user_id}"):
            done, message = _act("removing the member",
                                 lambda m=m: svc.remove_member(user, ov.charger_id, m.user_id))
            if done:
                _flash(message)

    with st.expander("Member cap", expanded=ov.member_cap is not None):
        no_cap = st.checkbox("No cap", value=ov.member_cap is None, key="share_no_cap")
        cap = st.number_input("Most members allowed", min_value=0, max_value=rules.MAX_MEMBER_CAP, step=1,
                              value=ov.member_cap if ov.member_cap is not None else max(ov.member_count, 1),
                              disabled=no_cap, key="share_cap")
        if st.button("Save cap", key="share_cap_save"):
            done, message = _act("the member cap", lambda: svc.set_member_cap(user, ov.charger_id,
                                                                               None if no_cap else int(cap)))
            if done:
                _flash(message)


def _invitations(svc: SharingService, user: Principal, ov: SharingOverview) -> None:
    st.subheader("Invite someone")
    with st.form("share_invite_form", clear_on_submit=True):
        email = st.text_input("Their e-mail address", key="share_invite_email",
                              placeholder="name@example.com")
        sent = st.form_submit_button("Send invitation", type="primary")
    if sent:
        done, result = _act("the invitation", lambda: svc.invite(user, ov.charger_id, email))
        if done:
            st.session_state[_LAST_INVITE] = result
            st.rerun()
    last = st.session_state.get(_LAST_INVITE)
    if isinstance(last, SentInvite) and last.charger_id == ov.charger_id:
        _show_link(svc, last)

    st.subheader("Pending invitations")
    try:
        pending = svc.invites(user, ov.charger_id)
    except _LOAD_ERRORS as exc:
        ui.error_box("the invitations", exc)
        return
    if not pending:
        st.caption("No pending invitations.")
    for inv in pending:
        cols = st.columns([4, 4, 1, 1])
        cols[0].write(inv.email)
        text = f"{inv.expiry_text} · sent {inv.sent_count}×"
        if inv.status == "expired":
            cols[1].markdown(f":orange[{text}]")
        else:
            cols[1].write(text)
        if cols[2].button("Resend", key=f"share_resend_{inv.invite_id}"):
            done, result = _act("the invitation", lambda inv=inv: svc.resend(user, ov.charger_id, inv.invite_id))
            if done:
                st.session_state[_LAST_INVITE] = result
                st.rerun()
        if cols[3].button("Revoke", key=f"share_revoke_{inv.invite_id}"):
            if _act("the invitation", lambda inv=inv: svc.revoke(user, ov.charger_id, inv.invite_id))[0]:
                _flash(f"The invitation to {inv.email} was withdrawn; its link no longer works.")


def _show_link(svc: SharingService, sent: SentInvite) -> None:
    if sent.emailed:
        st.success(f"Invitation e-mailed to {sent.email}; it {sent.expiry_text}.", icon=":material/mail:")
    elif sent.email_error:
        st.warning(f"The e-mail to {sent.email} could not be sent ({sent.email_error}). Pass on the link or the "
                   "QR code below instead; it works the same.", icon=":material/mail:")
    elif not svc.emails_invites:
        st.info(f"E-mail is not set up on this server (FLOWBANK_SMTP_HOST), so nothing was sent. Send this link to "
                f"{sent.email} yourself, or let them scan the QR code. It {sent.expiry_text} and works once.")
    st.code(sent.link, language=None)
    st.image(qr_png(sent.link), caption="Scan to accept the invitation", width=220)
    st.caption("Only this link's fingerprint is stored: to share it again later, use Resend (the old link stops).")
    if st.button("Done", key="share_invite_done"):
        st.session_state.pop(_LAST_INVITE, None)
        st.rerun()


# --------------------------------------------------------------------------- schedule


def _schedule(svc: SharingService, user: Principal, ov: SharingOverview) -> None:
    st.subheader("Shared schedule · next 7 days")
    now = runtime.access().now()
    start = now.replace(minute=0, second=0, microsecond=0)
    try:
        rows = svc.schedule(user, ov.charger_id, start, start + timedelta(days=7))
    except _LOAD_ERRORS as exc:
        ui.error_box("the schedule", exc)
        return
    if not rows:
        st.info("No reservations in the next 7 days.")
    else:
        zone = _zone(user)
        data = [{"who": r.user_name + (" (you)" if r.mine else ""), "start": r.starts_at.astimezone(zone).isoformat(),
                 "end": r.ends_at.astimezone(zone).isoformat(), "colour": r.colour,
                 "when": rules.fmt_span(rules.Slot(r.starts_at, r.ends_at), user.time_zone), "note": r.note or ""}
                for r in rows]
        names = sorted({(d["who"], d["colour"]) for d in data})
        chart = alt.Chart(alt.InlineData(values=data)).mark_bar(cornerRadius=3).encode(
            x=alt.X("start:T", title=None, scale=alt.Scale(domain=[start.astimezone(zone).isoformat(),
                                                                   (start + timedelta(days=7)).astimezone(zone)
                                                                   .isoformat()])),
            x2="end:T",
            y=alt.Y("who:N", title=None),
            color=alt.Color("who:N", legend=alt.Legend(title="User"),
                            scale=alt.Scale(domain=[n for n, _ in names], range=[c for _, c in names])),
            tooltip=[alt.Tooltip("who:N", title="User"), alt.Tooltip("when:N", title="When"),
                     alt.Tooltip("note:N", title="Note")])
        st.altair_chart(chart.properties(height=max(80, 40 * len(names))), width="stretch", key="share_timeline")
        for r in rows:
            cols = st.columns([4, 5, 2])
            cols[0].markdown(f":material/circle: **{r.user_name}**" + (" (you)" if r.mine else ""))
            cols[1].write(rules.fmt_span(rules.Slot(r.starts_at, r.ends_at), user.time_zone)
                          + (f" · {r.note}" if r.note else ""))
            if r.can_cancel and cols[2].button("Cancel", key=f"share_cancel_{r.reservation_id}"):
                if _act("the reservation", lambda r=r: svc.cancel_reservation(user, ov.charger_id,
                                                                              r.reservation_id))[0]:
                    _flash("Reservation cancelled.")
    if ov.can_reserve:
        _reserve_form(svc, user, ov, now)


def _reserve_form(svc: SharingService, user: Principal, ov: SharingOverview, now: datetime) -> None:
    zone = _zone(user)
    local_now = now.astimezone(zone)
    with st.form("share_reserve_form"):
        cols = st.columns(4)
        day = cols[0].date_input("Day", value=local_now.date(), min_value=local_now.date(),
                                 max_value=local_now.date() + timedelta(days=rules.BOOKING_HORIZON.days),
                                 key="share_res_day")
        default = (local_now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0).time()
        start_t = cols[1].time_input("From", value=default, step=timedelta(minutes=15), key="share_res_start")
        hours = cols[2].selectbox("For", [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0], index=3,
                                  format_func=lambda h: f"{h:g} h", key="share_res_hours")
        note = cols[3].text_input("Note (optional)", key="share_res_note")
        submitted = st.form_submit_button("Reserve", type="primary")
    if submitted and isinstance(day, date) and isinstance(start_t, time) and hours is not None:
        start = datetime.combine(day, start_t, zone)
        _book(svc, user, ov, start, start + timedelta(hours=hours), note, override=False)
    conflict = st.session_state.get(_CONFLICT)
    if isinstance(conflict, ReservationConflict) and conflict.charger_id == ov.charger_id:
        _show_conflict(svc, user, ov, conflict)


def _book(svc: SharingService, user: Principal, ov: SharingOverview, start: datetime, end: datetime,
          note: str | None, *, override: bool) -> None:
    _, outcome = _act("the reservation", lambda: svc.reserve(user, ov.charger_id, start, end, note=note,
                                                              override=override))
    if isinstance(outcome, ReservationConflict):
        st.session_state[_CONFLICT] = outcome
        st.rerun()
    elif outcome is not None:
        st.session_state.pop(_CONFLICT, None)
        span = rules.fmt_span(rules.Slot(outcome.reservation.starts_at, outcome.reservation.ends_at), user.time_zone)
        _flash(f"Reserved {span}." + (" The overlapping reservations were cancelled." if outcome.overridden else ""))


def _show_conflict(svc: SharingService, user: Principal, ov: SharingOverview, conflict: ReservationConflict) -> None:
    st.warning(conflict.message + " What would you like to do?", icon=":material/event_busy:")
    for option in conflict.options:
        if option.slot is None:
            st.info(f"{option.label}: they can cancel the other reservation or override it.",
                    icon=":material/person:")
            continue
        if st.button(option.label, key=f"share_opt_{option.kind.value}"):
            _book(svc, user, ov, option.slot.start, option.slot.end, None,
                  override=option.kind is Resolution.OVERRIDE)
    if st.button("Never mind", key="share_opt_dismiss"):
        st.session_state.pop(_CONFLICT, None)
        st.rerun()


# --------------------------------------------------------------------------- usage


def _usage(svc: SharingService, user: Principal, ov: SharingOverview) -> None:
    st.subheader("Usage by user")
    periods = {"Last 30 days": 30, "Last 90 days": 90, "Last 365 days": 365}
    choice = st.selectbox("Period", list(periods), key="share_usage_period")
    end = runtime.access().now()
    start = end - timedelta(days=periods[choice or "Last 30 days"])
    try:
        usage = svc.usage(user, ov.charger_id, start, end)
    except AccessDenied as exc:
        ui.refused(exc)
        return
    except _LOAD_ERRORS as exc:
        ui.error_box("usage by user", exc)
        return
    if usage.scope == "own":
        st.caption("Only your own sessions are shown; the owner sees everyone's.")
    if not usage.lines:
        st.info("No sessions in this period.")
        return
    data = [{"User": line.label, "Sessions": line.sessions, "kWh": round(line.energy_wh / 1000, 2),
             "Cost": f"{line.cost} {line.currency}" if line.cost is not None else "–",
             "Note": line.cost_note or ""} for line in usage.lines]
    chart = alt.Chart(alt.InlineData(values=data)).mark_bar().encode(
        x=alt.X("kWh:Q", title="kWh"), y=alt.Y("User:N", sort="-x", title=None),
        tooltip=["User:N", "Sessions:Q", "kWh:Q", "Cost:N"])
    st.altair_chart(chart.properties(height=max(80, 36 * len(data))), width="stretch", key="share_usage_chart")
    st.dataframe(data, hide_index=True, width="stretch", key="share_usage_table")
    st.caption(f"Total {ui.fmt_kwh(usage.energy_wh)}. Sessions count in the period they started; corrupted sessions "
               "are left out. Costs come from the charger's tariff once the costing has run.")


# --------------------------------------------------------------------------- page

user = runtime.current_user()
ctx = context.active()
st.title("Sharing & reservations")
if ctx.charger is None:
    st.info("Choose a charger in the sidebar to see who shares it and its reservations.")
    st.stop()
svc = from_settings(runtime.access(), runtime.settings())
try:
    overview = svc.overview(user, ctx.charger.charger_id)
except AccessDenied as exc:
    ui.refused(exc)
    st.stop()
except _LOAD_ERRORS as exc:
    ui.error_box("the charger's sharing settings", exc)
    st.stop()
st.caption(ctx.label)
ui.show_flash(_FLASH)
if overview.can_manage:
    _members(svc, user, overview)
    _invitations(svc, user, overview)
else:
    owners = " and ".join(overview.owner_names) or "the owner"
    st.caption(f"You share this charger with its owner ({owners}). Reserve a slot below so nobody is surprised.")
_schedule(svc, user, overview)
_usage(svc, user, overview)
