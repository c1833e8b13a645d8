"""What a station does when the CSMS asks: protocol-agnostic command semantics.

Each function changes the :class:`~ingest.sim.station.Station` and returns the answer in OCPP
spelling (the dialects map the few words that differ between 1.6 and 2.0.1). Effects that a real
charger takes a moment for (uploads, firmware) are put on the station's timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ingest.sim.connector import Connector, Phase, RemoteStart, Reservation
from ingest.sim.events import NoticeEvent, StopReason, TriggerEvent
from ingest.sim.plan import draw_session
from ingest.sim.profiles import ProfileError, Purpose, parse_profile, parse_purpose
from ingest.sim.station import Station

TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent",
                         "DiagnosticsStatusNotification", "FirmwareStatusNotification", "LogStatusNotification"})


def _usable(c: Connector, id_tag: str) -> bool:
    return (c.error_code is None and c.operative and c.remote is None and c.phase in (Phase.IDLE, Phase.PLUGGED)
            and (c.reservation is None or c.reservation.id_tag == id_tag))


def remote_start(st: Station, now: datetime, *, id_tag: str, connector_id: int | None,
                 remote_start_id: int | None = None, profile: Mapping[str, Any] | None = None) -> bool:
    """RemoteStartTransaction / RequestStartTransaction: start at once if an EV waits, else when it plugs."""
    if st.closing or (connector_id is not None and connector_id not in st.connectors):
        return False
    candidates = [c for c in st.connectors.values()
                  if (connector_id is None or c.id == connector_id) and _usable(c, id_tag)]
    if not candidates:
        return False
    c = min(candidates, key=lambda k: (k.phase != Phase.PLUGGED, k.id))
    if profile is not None:
        try:
            parsed = parse_profile(profile, connector_id=c.id, received_at=now)
        except ProfileError:
            return False
        if parsed.purpose != Purpose.TX:
            return False
        st.profiles.install(parsed)
    remote = RemoteStart(id_tag, remote_start_id)
    st.advance(c, now)
    if c.phase == Phase.PLUGGED:
        c.id_tag, c.remote, c.phase_until = id_tag, remote, now + timedelta(seconds=1.0)
    else:
        st.plug_in(c, now, id_tag=id_tag, remote=remote)
    return True


def remote_stop(st: Station, now: datetime, tx_id: str) -> bool:
    for c in st.connectors.values():
        if c.session is not None and c.session.tx_id == tx_id:
            st.stop_transaction(c, now, StopReason.REMOTE)
            return True
    return False


def unlock(st: Station, now: datetime, connector_id: int, *, refuse_in_tx: bool) -> str:
    """1.6 stops a running transaction first; 2.0.1 refuses while one is authorised."""
    c = st.connectors.get(connector_id)
    if c is None:
        return "UnknownConnector"
    if c.session is not None:
        if refuse_in_tx:
            return "OngoingAuthorizedTransaction"
        st.stop_transaction(c, now, StopReason.UNLOCK)
    elif c.phase != Phase.IDLE:
        st.unplug(c, now)
    return "Unlocked"


def reset(st: Station, now: datetime, kind: str) -> str:
    """Soft | Hard (1.6), Immediate | OnIdle (2.0.1)."""
    if kind == "OnIdle" and st.active_sessions():
        st.reboot_when_idle = "RemoteReset"
        return "Scheduled"
    st.stop_all(now, StopReason.SOFT_RESET if kind == "Soft" else StopReason.HARD_RESET)
    st.request_reboot("RemoteReset", now)
    return "Accepted"


def change_availability(st: Station, now: datetime, connector_id: int, operative: bool) -> str:
    if connector_id == 0:
        targets = list(st.connectors.values())
    elif connector_id in st.connectors:
        targets = [st.connectors[connector_id]]
    else:
        return "Rejected"
    scheduled = False
    for c in targets:
        if operative:
            c.operative, c.pending_inoperative = True, False
        elif c.session is not None:
            c.pending_inoperative = scheduled = True
        else:
            c.operative = False
    return "Scheduled" if scheduled else "Accepted"


def reserve(st: Station, now: datetime, *, reservation_id: int, connector_id: int | None, id_tag: str,
            expiry: datetime) -> str:
    """ReserveNow: the reserving driver then turns up some time before the reservation expires."""
    if connector_id is None:
        free = [c for c in st.connectors.values() if c.phase == Phase.IDLE and c.reservation is None
                and c.operative and c.error_code is None]
        if not free:
            return "Occupied"
        connector_id = free[0].id
    c = st.connectors.get(connector_id)
    if c is None or expiry <= now:
        return "Rejected"
    if c.error_code is not None:
        return "Faulted"
    if not c.operative:
        return "Unavailable"
    if c.phase != Phase.IDLE or (c.reservation is not None and c.reservation.reservation_id != reservation_id):
        return "Occupied"
    c.reservation = Reservation(reservation_id, id_tag, expiry)
    rng = st.plan_rng(c.id)
    if c.plan is None:
        c.plan = draw_session(rng, c.hw, st.behaviour, first=False)
    arrive = now + (expiry - now) * rng.uniform(0.1, 0.6)
    c.arrive_at = arrive if c.arrive_at is None else min(c.arrive_at, arrive)
    return "Accepted"


def cancel_reservation(st: Station, now: datetime, reservation_id: int) -> bool:
    for c in st.connectors.values():
        if c.reservation is not None and c.reservation.reservation_id == reservation_id:
            c.reservation = None
            return True
    return False


def set_profile(st: Station, now: datetime, raw: Mapping[str, Any], connector_id: int) -> bool:
    if connector_id != 0 and connector_id not in st.connectors:
        return False
    try:
        profile = parse_profile(raw, connector_id=connector_id, received_at=now)
    except ProfileError:
        return False
    if profile.purpose == Purpose.STATION_MAX and connector_id != 0:
        return False
    if profile.purpose == Purpose.TX:
        if connector_id == 0:
            return False
        session = st.connectors[connector_id].session
        if session is None or (profile.transaction_id is not None and profile.transaction_id != session.tx_id):
            return False
    st.profiles.install(profile)
    for c in st.connectors.values():
        st.command_limit(c, now)
    return True


def clear_profiles(st: Station, now: datetime, *, profile_id: int | None = None, connector_id: int | None = None,
                   purpose: str | None = None, stack_level: int | None = None) -> bool:
    try:
        parsed_purpose = parse_purpose(purpose) if purpose is not None else None
    except ProfileError:
        return False
    removed = st.profiles.clear(profile_id=profile_id, connector_id=connector_id, purpose=parsed_purpose,
                                stack_level=stack_level)
    for c in st.connectors.values():
        st.command_limit(c, now)
    return removed > 0


def trigger(st: Station, now: datetime, message: str, connector_id: int | None) -> str:
    if connector_id not in (None, 0) and connector_id not in st.connectors:
        return "Rejected"
    if message not in TRIGGERABLE:
        return "NotImplemented"
    st.emit(TriggerEvent(message, connector_id, now))
    return "Accepted"


def upload(st: Station, now: datetime, *, kind: str, request_id: int | None = None) -> str:
    """GetDiagnostics / GetLog: report Uploading, then Uploaded; return the file name."""
    st.schedule(now + timedelta(seconds=2), lambda t: st.emit(NoticeEvent(kind, "Uploading", t, request_id)))
    st.schedule(now + timedelta(seconds=10), lambda t: st.emit(NoticeEvent(kind, "Uploaded", t, request_id)))
    return f"{kind}-{st.id}-{now:%Y%m%dT%H%M%SZ}.log"


def update_firmware(st: Station, now: datetime, *, retrieve_at: datetime, request_id: int | None = None) -> None:
    """Download, install, then reboot once no transaction is running."""
    begin = max(now, retrieve_at)
    def notice(status: str) -> Callable[[datetime], None]:
        return lambda t: st.emit(NoticeEvent("firmware", status, t, request_id))

    for offset, status in ((0, "Downloading"), (30, "Downloaded"), (35, "Installing"), (60, "Installed")):
        st.schedule(begin + timedelta(seconds=offset), notice(status))

    def reboot(t: datetime) -> None:
        if st.active_sessions():
            st.reboot_when_idle = "FirmwareUpdate"
        else:
            st.request_reboot("FirmwareUpdate", t)

    st.schedule(begin + timedelta(seconds=61), reboot)
