"""Chargers: a live card per connector of the active location, with its actions and mode."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from control.contract import ChargingMode
from control.modes import describe
from dashboards import charging_service as svc
from dashboards import context, runtime, ui
from dashboards.access import AccessDenied, Principal
from warehouse.command_api import Action
from warehouse.queries import QueryError

user = runtime.current_user()
ctx = context.active()

st.title("Chargers")
st.caption(ctx.label)

_ACTION_LABELS = {
    Action.START: ("Start", ":material/play_arrow:"),
    Action.STOP: ("Stop", ":material/stop:"),
    Action.PAUSE: ("Pause", ":material/pause:"),
    Action.RESUME: ("Resume", ":material/resume:"),
    Action.LOCK: ("Lock", ":material/lock:"),
    Action.UNLOCK: ("Unlock", ":material/lock_open:"),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _act(who: Principal, card: svc.ConnectorCard, action: Action) -> None:
    key = f"reply_{card.key}"
    try:
        with st.spinner(f"{_ACTION_LABELS[action][0]}: waiting for the charger (up to 5 s)…"):
            reply = svc.send_action(who, runtime.access(), runtime.commands(), card.row.charger_id,
                                    card.row.connector_id, action)
        st.session_state[key] = ("ok" if reply.ok else "warn", reply.message)
    except AccessDenied as exc:
        st.session_state[key] = ("refused", f"{_ACTION_LABELS[action][0]} not allowed: {exc}")


def _actions(who: Principal, card: svc.ConnectorCard) -> None:
    allowed = card.allowed
    may = {Action.START: allowed.start_stop, Action.STOP: allowed.start_stop, Action.PAUSE: allowed.pause_resume,
           Action.RESUME: allowed.pause_resume, Action.LOCK: allowed.lock, Action.UNLOCK: allowed.lock}
    shown = [a for a in _ACTION_LABELS if may[a]]
    if not shown:
        st.caption("Your role does not allow actions on this charger.")
        return
    cols = st.columns(len(shown))
    for col, action in zip(cols, shown, strict=True):
        label, icon = _ACTION_LABELS[action]
        if col.button(label, icon=icon, key=f"{action.value}_{card.key}", disabled=not card.supports(action),
                      width="stretch"):
            _act(who, card, action)
    reply = st.session_state.get(f"reply_{card.key}")
    if reply is not None:
        kind, message = reply
        (st.success if kind == "ok" else st.error if kind == "refused" else st.warning)(message)


def _mode(who: Principal, card: svc.ConnectorCard, now: datetime) -> None:
    row = card.row
    key = card.key
    current = row.mode
    battery_kwh = st.number_input("Battery size (kWh), for the ETA", min_value=0.0, max_value=300.0, value=None,
                                  step=5.0, key=f"battery_{key}",
                                  help="Only used for the estimate below; a departure's battery size wins.")
    etas = svc.mode_etas(row, now=now, battery_wh=battery_kwh * 1000 if battery_kwh else None)
    options = list(ChargingMode)
    choice = st.segmented_control(
        "Charging mode", options, default=current, key=f"mode_{key}", disabled=not card.allowed.set_mode,
        format_func=lambda m: describe(m).title)
    cols = st.columns(len(options))
    for col, mode in zip(cols, options, strict=True):
        text = describe(mode)
        col.markdown(f"**{text.title}**{' (now)' if mode is current else ''}  \n{text.subtext}")
        col.caption(f"{text.description}  \n*{etas[mode].text}* (at about {svc.mode_current_a(row, mode):.0f} A)")
    if not card.allowed.set_mode:
        st.caption("Your role does not allow changing the mode of this charger.")
        return
    if choice is None or choice is current:
        return
    target = ChargingMode(choice)
    confirmed = True
    warning = describe(target).warning
    if target is ChargingMode.BOOST and not card.allowed.boost:
        st.warning("Your role does not allow Boost on this charger.")
        return
    if warning is not None:
        st.warning(warning, icon=":material/warning:")
        confirmed = st.checkbox("I understand: switch to Boost anyway", key=f"confirm_{key}")
    if st.button(f"Switch to {describe(target).title}", key=f"apply_mode_{key}", type="primary",
                 disabled=not confirmed):
        try:
            result = svc.change_mode(who, runtime.access(), row.charger_id, row.connector_id, target.value,
                                     confirmed=confirmed, now=now, session_id=row.live.session_id)
            st.session_state[f"mode_reply_{key}"] = result.message
        except AccessDenied as exc:
            st.session_state[f"mode_reply_{key}"] = f"Not allowed: {exc}"
        except QueryError as exc:
            st.session_state[f"mode_reply_{key}"] = f"Could not store the mode: {exc}"
    message = st.session_state.get(f"mode_reply_{key}")
    if message:
        st.info(message)


def _card(who: Principal, card: svc.ConnectorCard, now: datetime, expanded: bool) -> None:
    row, live = card.row, card.row.live
    with st.container(border=True, key=f"card_{card.key}"):
        head, chip = st.columns([4, 1])
        head.subheader(f"{row.charger_name} · connector {row.connector_id}", anchor=False)
        with chip:
            ui.status_chip(card.status.value)
        if card.offline:
            st.warning(svc.OFFLINE_BANNER.format(ago=ui.fmt_ago(live.last_seen_at, now)), icon=":material/cloud_off:")
            st.button("Retry now", key=f"retry_{card.key}", icon=":material/refresh:")
        if card.status.value == "Error" and live.error_code:
            st.error(f"Error reported by the charger: {live.error_code}")
        for banner in card.banners:
            st.info(banner, icon=":material/speed:")
        gauge, metrics = st.columns([2, 3])
        with gauge:
            st.metric("Power", ui.fmt_kw(live.power_w))
            max_w = (row.hardware_max_a or 32.0) * row.phases * 230.0
            st.progress(ui.fraction(live.power_w, max_w), text=f"of {ui.fmt_kw(max_w)} maximum")
        with metrics:
            m1, m2, m3, m4 = st.columns(4)
            m1.metric("Energy", ui.fmt_kwh(live.session_energy_wh))
            m2.metric("Elapsed", ui.fmt_elapsed(ui.elapsed_s(live.session_started_at, now)))
            m3.metric("Current", ui.fmt_a(live.current_a))
            m4.metric("SoC", "–" if live.soc_pct is None else f"{live.soc_pct:.0f} %")
            eta = svc.mode_etas(row, now=now)[row.mode]
            session = (f"Session `{live.session_id}` since {ui.fmt_time(live.session_started_at, who.time_zone)}"
                       if live.session_id else "No session")
            updated = ui.fmt_ago(live.updated_at, now)
            st.caption(f"{session} · {describe(row.mode).title} · {eta.text} · updated {updated}")
        _actions(who, card)
        with st.expander(f"Charging mode: {describe(row.mode).title}", expanded=expanded):
            _mode(who, card, now)


@st.fragment(run_every="2s")
def live_cards(charger_ids: list[str]) -> None:
    now = _now()
    try:
        cards = svc.live_cards(user, runtime.access(), charger_ids, now=now)
    except QueryError as exc:
        ui.error_box("the live state of the chargers", exc)
        return
    if not charger_ids:
        st.info("There are no chargers at this location.")
        return
    if not cards:
        st.info("None of these chargers has reported a connector yet: no live data to show.")
        return
    active = ctx.charger.charger_id if ctx.charger else None
    for card in cards:
        _card(user, card, now, expanded=card.row.charger_id == active)


PER_PAGE = 12  # live cards are rich (widgets, a fragment rerun every 2 s): a fleet is paged
ordered = [c.charger_id for c in ctx.chargers]
if ctx.charger is not None and ctx.charger.charger_id in ordered:  # the active charger first
    ordered.remove(ctx.charger.charger_id)
    ordered.insert(0, ctx.charger.charger_id)
if len(ordered) > PER_PAGE:
    pages = (len(ordered) + PER_PAGE - 1) // PER_PAGE
    p1, p2 = st.columns([1, 3])
    page = p1.number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="live_page")
    p2.caption(f"{len(ordered):,} chargers here, {PER_PAGE} per page (the active charger first). "
               "The Fleet overview shows all of them in one grid.")
    ordered = ordered[(int(page) - 1) * PER_PAGE:int(page) * PER_PAGE]
live_cards(ordered)
