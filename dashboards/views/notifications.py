"""Notifications: the user's own notification centre, channels and preferences."""

from __future__ import annotations

from datetime import time

import streamlit as st

from dashboards import context, runtime, ui
from dashboards.access import AccessDenied
from dashboards.notification_service import NotificationError, NotificationService
from warehouse.queries import QueryError

user = runtime.current_user()
service = NotificationService(runtime.access())
SEVERITIES = ["info", "warning", "error", "critical"]
ICONS = {"info": ":material/info:", "warning": ":material/warning:", "error": ":material/error:",
         "critical": ":material/emergency_home:"}

st.title("Notifications")
inbox_tab, channels_tab, prefs_tab = st.tabs(["Inbox", "Channels", "Preferences"])


@st.fragment(run_every="5s")
def inbox() -> None:
    try:
        items = service.inbox(user, limit=100)
        unread = service.unread(user)
    except (QueryError, NotificationError, OSError) as exc:
        ui.error_box("your notifications", exc)
        return
    head, action = st.columns([3, 1])
    head.caption(f"{unread} unread of {len(items)} shown (unread first)")
    if unread and action.button("Mark all read", key="notif_read_all"):
        service.mark_read(user, None)
        st.rerun(scope="fragment")
    if not items:
        st.info("No notifications yet. Alerts about your chargers (charging completed, faults, offline) land here.")
        return
    for n in items:
        with st.container(border=True, key=f"notif_{n.notification_id}"):
            left, right = st.columns([5, 1])
            weight = "**" if n.read_at is None else ""
            left.markdown(f"{weight}{n.title}{weight}  \n{n.body}", help=None)
            left.caption(f"{n.severity} · {n.created_at:%Y-%m-%d %H:%M} UTC · {n.charger_id or 'all chargers'}"
                         f" · delivery: {n.delivery}")
            right.markdown(ICONS.get(n.severity, ""))
            if n.read_at is None and right.button("Read", key=f"notif_read_{n.notification_id}"):
                service.mark_read(user, [n.notification_id])
                st.rerun(scope="fragment")


with inbox_tab:
    inbox()

with channels_tab:
    try:
        channels = service.channels(user)
    except (QueryError, NotificationError) as exc:
        ui.error_box("your channels", exc)
        channels = []
    if not channels:
        st.info("No delivery channels yet: notifications stay in the inbox only.")
    for ch in channels:
        c1, c2, c3 = st.columns([4, 1, 1])
        c1.markdown(f"**{ch.kind}** {ch.label or ''}  \n`{ch.target}`" + (
            f" · from {ch.min_severity}" if ch.min_severity else ""))
        enabled = c2.toggle("On", value=ch.enabled, key=f"ch_on_{ch.channel_id}")
        if enabled != ch.enabled:
            service.set_channel_enabled(user, ch.channel_id, enabled)
            st.rerun()
        if c3.button("Remove", key=f"ch_rm_{ch.channel_id}"):
            service.remove_channel(user, ch.channel_id)
            st.rerun()
    with st.form("add_channel", clear_on_submit=True):
        st.markdown("**Add a channel**")
        kind = st.selectbox("Kind", ["email", "webhook", "push"], key="ch_kind",
                            help="push: an Apprise URL, e.g. ntfy://topic, pover://user@token, tgram://bot/chat")
        target = st.text_input("Address, URL or Apprise URL", key="ch_target")
        label = st.text_input("Label (optional)", key="ch_label")
        threshold = st.selectbox("Only from severity", ["(my default)", *SEVERITIES], key="ch_min")
        if st.form_submit_button("Add"):
            try:
                added = service.add_channel(user, kind, target, label=label or None,
                                            min_severity=None if threshold.startswith("(") else threshold)
                if added.secret:
                    st.success("Webhook added. Its signing secret, shown once: give it to the receiver.")
                    st.code(added.secret)
                else:
                    st.success("Channel added.")
            except NotificationError as exc:
                st.error(f"Not added: {exc}")
    if st.button("Send test notification", key="notif_test", icon=":material/send:"):
        try:
            nid = service.send_test(user)
            st.success(f"Test notification {nid} queued on every enabled channel; its delivery shows in the inbox.")
        except NotificationError as exc:
            st.warning(str(exc))

with prefs_tab:
    try:
        prefs = service.preferences(user)
    except (QueryError, NotificationError) as exc:
        ui.error_box("your preferences", exc)
        st.stop()
    with st.form("prefs"):
        tz = st.text_input("Time zone (IANA, e.g. Europe/Amsterdam)", value=prefs.timezone, key="pref_tz")
        current = prefs.min_severity.value if prefs.min_severity else "(role default)"
        options = ["(role default)", *SEVERITIES]
        min_sev = st.selectbox("Notify me from severity", options, index=options.index(current), key="pref_min")
        quiet_on = st.checkbox("Quiet hours", value=prefs.quiet_hours is not None, key="pref_quiet")
        q1, q2 = st.columns(2)
        start = q1.time_input("From", value=prefs.quiet_hours.start if prefs.quiet_hours else time(22, 0),
                              key="pref_q_start")
        end = q2.time_input("Until", value=prefs.quiet_hours.end if prefs.quiet_hours else time(7, 0),
                            key="pref_q_end")
        bypass_options = ["nothing", "critical", "error"]
        bypass_now = prefs.quiet_bypass.value if prefs.quiet_bypass else "nothing"
        bypass = st.selectbox("During quiet hours, still deliver", bypass_options,
                              index=bypass_options.index(bypass_now) if bypass_now in bypass_options else 1,
                              key="pref_bypass", help="The inbox always gets everything.")
        if st.form_submit_button("Save"):
            try:
                service.save_preferences(user, timezone=tz.strip(), min_severity=None if min_sev.startswith("(")
                                         else min_sev, quiet_hours=(start, end) if quiet_on else None,
                                         quiet_bypass=None if bypass == "nothing" else bypass)
                st.success("Saved.")
            except NotificationError as exc:
                st.error(f"Not saved: {exc}")
    ctx = context.active()
    if ctx.charger is not None:
        st.markdown(f"**{ctx.charger.name}** ({ctx.label})")
        mute = st.toggle("Mute notifications about this charger", key="pref_mute_charger",
                         value=ctx.charger.charger_id in prefs.overrides
                         and prefs.overrides[ctx.charger.charger_id].muted)
        if st.button("Apply to this charger", key="pref_mute_apply"):
            try:
                service.mute_charger(user, ctx.charger.charger_id, muted=mute, min_severity=None)
                st.success("Saved for this charger.")
            except (AccessDenied, NotificationError) as exc:
                st.error(str(exc))
