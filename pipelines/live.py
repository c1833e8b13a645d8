"""The live state of a connector: the status chip on the dashboards and the figures beside it.
Pure; the session step gathers a :class:`ConnectorView` and decides when to send.

The order is the policy: offline beats everything (nothing we hold is current), then an error,
then drawing power (or the charger saying Charging), then paused, then connected but not
drawing, then free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from control.contract import ConnectorState
from control.records import LiveState, LiveStatus

_CONNECTED = frozenset({ConnectorState.PREPARING, ConnectorState.OCCUPIED, ConnectorState.FINISHING,
                        ConnectorState.SUSPENDED_EV})


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """One connector at one moment, as far as the live state is concerned."""

    charger_id: str
    connector_id: int
    online: bool
    status: ConnectorState | None = None
    error_code: str | None = None  # None when there is no error
    charger_error: bool = False  # the charger as a whole (connector 0) is faulted
    power_w: float | None = None  # None when the latest sample is older than the latest status
    current_a: float | None = None
    soc_pct: float | None = None
    session_id: str | None = None  # the open session
    session_started_at: datetime | None = None
    session_energy_wh: float | None = None
    session_drew_energy: bool = False


def chip(view: ConnectorView, *, waiting_power_threshold_w: float) -> LiveStatus:
    drawing = view.power_w is not None and view.power_w > waiting_power_threshold_w
    if not view.online:
        return LiveStatus.OFFLINE
    if view.status is ConnectorState.FAULTED or view.error_code is not None or view.charger_error:
        return LiveStatus.ERROR
    if drawing or view.status is ConnectorState.CHARGING:
        return LiveStatus.CHARGING
    if view.status is ConnectorState.SUSPENDED_EVSE or (
            view.status is ConnectorState.SUSPENDED_EV and view.session_drew_energy):
        return LiveStatus.PAUSED
    if view.status in _CONNECTED or (view.status is None and view.session_id is not None):
        return LiveStatus.WAITING_FOR_VEHICLE  # plugged in, not drawing (SuspendedEV before any energy)
    return LiveStatus.IDLE  # Available, Reserved, Unavailable, or nothing known


def live_state(view: ConnectorView, *, now: datetime, last_seen_at: datetime | None,
               waiting_power_threshold_w: float) -> LiveState:
    return LiveState(
        charger_id=view.charger_id,
        connector_id=view.connector_id,
        status=chip(view, waiting_power_threshold_w=waiting_power_threshold_w),
        updated_at=now,
        last_seen_at=last_seen_at,
        connector_status=view.status.value if view.status is not None else None,
        power_w=view.power_w,
        current_a=view.current_a,
        session_id=view.session_id,
        session_started_at=view.session_started_at,
        session_energy_wh=view.session_energy_wh,
        soc_pct=view.soc_pct,
        error_code=view.error_code,
        online=view.online,
    )


def fingerprint(view: ConnectorView) -> bytes:
    """Identity of what a live state shows, for "has it changed" (8 bytes to keep in state)."""
    return hashlib.blake2b(repr(view).encode(), digest_size=8).digest()
