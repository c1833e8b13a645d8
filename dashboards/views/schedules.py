"""Schedules & rules: when each rule of the site applies over the week, toggles, skip once, editor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import altair as alt
import polars as pl
import streamlit as st

from control.rules import Rule
from control.rules_config import WEEKDAY_PRESETS
from dashboards import charging_rules_service as svc
from dashboards import context, runtime, ui
from dashboards.access import AccessDenied
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()
now = datetime.now(UTC)

st.title("Schedules & rules")
st.caption(ctx.label)

site_id = ctx.site_id or (ctx.charger.site_id if ctx.charger else None)
if site_id is None:
    st.info("Choose a location in the sidebar: rules belong to a location (site).")
    st.stop()
SITE: str = site_id

try:
    data = svc.site_rules(user, runtime.access(), SITE, now=now)
except AccessDenied as exc:
    ui.refused(exc)
    st.stop()
except (QueryError, LookupError, ValueError) as exc:
    ui.error_box(f"the rules of {site_id}", exc)
    st.stop()

st.caption(f"{data.site_name} · time zone {data.timezone} · the first matching rule wins · last changed "
           f"{ui.fmt_time(data.updated_at, user.time_zone)}{f' by {data.updated_by}' if data.updated_by else ''}")
if not data.may_add:
    st.info("Read only: your role does not allow changing the rules of this location.", icon=":material/lock:")
elif set(data.manageable_chargers) != set(data.site_chargers):
    st.info("You may change only rules that act on your own chargers here ("
            + ", ".join(data.manageable_chargers) + ").", icon=":material/info:")

ui.show_flash("rule_saved")
for conflict in data.conflicts:
    st.warning(f"Conflict between '{conflict.winner_name}' and '{conflict.loser_name}': {conflict.message}",
               icon=":material/warning:")

st.subheader("This week", anchor=False)
if not data.rules:
    st.info("This location has no rules: chargers share the site's capacity by their modes alone.")
elif not data.timeline:
    st.info("No enabled rule applies in the coming 7 days.")
else:
    frame = pl.DataFrame([{"rule": b.rule_name, "action": b.action, "start": b.start, "end": b.end,
                           "state": "skipped" if b.skipped else "applies"} for b in data.timeline])
    chart = alt.Chart(frame.to_pandas()).mark_bar(cornerRadius=3).encode(
        x=alt.X("start:T", title=f"Next 7 days ({data.timezone})", scale=alt.Scale(domain=[
            now.isoformat(), (now + svc.WEEK).isoformat()])),
        x2="end:T",
        y=alt.Y("rule:N", title=None),
        color=alt.Color("action:N", title="Action"),
        opacity=alt.condition(alt.datum.state == "skipped", alt.value(0.25), alt.value(0.9)),
        tooltip=["rule:N", "action:N", "state:N", alt.Tooltip("start:T", format="%a %H:%M"),
                 alt.Tooltip("end:T", format="%a %H:%M")],
    ).properties(height=max(80, 36 * len({b.rule_id for b in data.timeline})))
    st.altair_chart(chart, width="stretch", key="rules_timeline")


def _rule_row(rule: Rule, index: int) -> None:
    editable = rule.rule_id in data.editable_rule_ids
    schedule = rule.condition.schedule
    when = "always" if schedule is None else (("outside " if rule.condition.outside else "") + schedule.label())
    with st.container(border=True, key=f"rule_{rule.rule_id}"):
        left, mid, right = st.columns([5, 2, 2])
        left.markdown(f"**{index}. {rule.name}**  \n{rule.action.describe()} · {when}"
                      + (f" · modes {', '.join(sorted(m.value for m in rule.condition.modes))}"
                         if rule.condition.modes else "")
                      + (f" · chargers {', '.join(sorted(rule.scope.charger_ids))}" if rule.scope.charger_ids else ""))
        if schedule is not None and schedule.skipped_dates:
            left.caption("Skipped: " + ", ".join(sorted(d.isoformat() for d in schedule.skipped_dates)))
        enabled = mid.toggle("Enabled", value=rule.enabled, key=f"enabled_{rule.rule_id}", disabled=not editable)
        if enabled != rule.enabled:
            try:
                svc.set_rule_enabled(user, runtime.access(), SITE, rule.rule_id, enabled)
                st.toast(f"'{rule.name}' {'enabled' if enabled else 'disabled'}")
                st.rerun()
            except (AccessDenied, LookupError, ValueError, QueryError) as exc:
                st.error(f"Could not change '{rule.name}': {exc}")
        if right.button("Skip once", key=f"skip_{rule.rule_id}", disabled=not editable or schedule is None
                        or not rule.enabled, icon=":material/skip_next:"):
            try:
                svc.skip_rule_once(user, runtime.access(), SITE, rule.rule_id, now=now)
                st.toast(f"The next occurrence of '{rule.name}' is skipped")
                st.rerun()
            except (AccessDenied, LookupError, ValueError, QueryError) as exc:
                st.error(f"Could not skip '{rule.name}': {exc}")


st.subheader("Rules, in order", anchor=False)
for position, item in enumerate(data.rules, start=1):
    _rule_row(item, position)

if data.may_add:
    st.subheader("Add a rule", anchor=False)
    scope = [] if set(data.manageable_chargers) == set(data.site_chargers) else list(data.manageable_chargers)
    preset = st.selectbox("Start from", ["Custom", *svc.PRESETS], key="rule_preset")
    sfx = ["Custom", *svc.PRESETS].index(preset)  # a preset refills the form: new widget keys per preset
    with st.form("rule_form", border=True):
        base = svc.PRESETS.get(preset, {})
        schedule = dict(base.get("condition", {}).get("schedule", {}))
        name = st.text_input("Name (the reason shown to drivers and in the audit log)",
                             value=str(base.get("name", "")), key=f"rule_name_{sfx}")
        c1, c2, c3 = st.columns(3)
        timed = c1.checkbox("Only at certain times", value=bool(schedule) or preset == "Custom",
                            key=f"rule_timed_{sfx}")
        start = c2.text_input("From (HH:MM)", value=str(schedule.get("start", "18:00")), key=f"rule_start_{sfx}")
        end = c3.text_input("To (HH:MM, 24:00 = midnight)", value=str(schedule.get("end", "24:00")),
                            key=f"rule_end_{sfx}")
        d1, d2 = st.columns(2)
        days = d1.selectbox("Days", list(WEEKDAY_PRESETS), key=f"rule_days_{sfx}",
                            index=list(WEEKDAY_PRESETS).index(str(schedule.get("weekdays", "every_day"))))
        outside = d2.checkbox("Apply outside these hours instead",
                              value=bool(base.get("condition", {}).get("outside")), key=f"rule_outside_{sfx}")
        modes = st.multiselect("Only for these modes (empty: any)", ["standard", "eco", "boost"],
                               key=f"rule_modes_{sfx}")
        action = dict(base.get("action", {"kind": "cap_current", "current_a": 10}))
        kinds = ["cap_current", "cap_power", "pause", "allow", "force_mode"]
        a1, a2 = st.columns(2)
        kind = a1.selectbox("Then", kinds, index=kinds.index(str(action["kind"])), key=f"rule_kind_{sfx}",
                            format_func=lambda k: {"cap_current": "Cap current (A)", "cap_power": "Cap power (kW)",
                                                   "pause": "Pause charging", "allow": "Allow (stop looking)",
                                                   "force_mode": "Force a mode"}[k])
        amount = a2.number_input("Amount (A or kW)", min_value=0.0, max_value=1000.0, key=f"rule_amount_{sfx}",
                                 value=float(action.get("current_a") or action.get("power_kw") or 10.0))
        mode = a2.selectbox("Mode (for Force a mode)", ["eco", "standard", "boost"], key=f"rule_force_mode_{sfx}")
        submitted = st.form_submit_button("Add rule", type="primary")
    if submitted:
        act: dict[str, object] = {"kind": kind}
        if kind == "cap_current":
            act["current_a"] = amount
        elif kind == "cap_power":
            act["power_kw"] = amount
        elif kind == "force_mode":
            act["mode"] = mode
        try:
            mapping = svc.rule_mapping(rule_id=f"r-{uuid.uuid4().hex[:8]}", name=name, zone=data.timezone,
                                       action=act, start=start if timed else None, end=end if timed else None,
                                       weekdays=days, outside=outside and timed, modes=modes, chargers=scope)
            saved = svc.save_rule(user, runtime.access(), SITE, mapping)
            ui.flash("rule_saved", f"Added '{saved.name}'. It comes last, so earlier rules win where they overlap.")
        except (AccessDenied, LookupError, ValueError, QueryError) as exc:
            st.error(f"The rule was not saved: {exc}")
