"""One connector's state and physics: the offered limit, the flow, the meter. Pure.

``advance`` integrates the flow between two instants in sub-steps (ramps and the SoC taper change
the power continuously); every Wh goes to the register and to the running session alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from control.contract import ConnectorState
from ingest.sim import ev as evphysics
from ingest.sim.ev import EvModel
from ingest.sim.faults import PoissonSchedule
from ingest.sim.model import AC_MIN_CURRENT_A, Flow, Hardware, Session, compute_flow, integrate
from ingest.sim.plan import SessionPlan
from ingest.sim.profiles import Actuator, ProfileStore, native_limit

MAX_SUBSTEP_S = 5.0


class Phase(StrEnum):
    IDLE = "idle"  # no EV
    PLUGGED = "plugged"  # EV connected, the driver is about to badge
    AUTHORIZING = "authorizing"
    REJECTED = "rejected"  # not allowed to charge; the driver unplugs
    IN_TX = "in_tx"
    FINISHING = "finishing"  # transaction over, EV still plugged


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: int
    id_tag: str
    expiry: datetime


@dataclass(frozen=True, slots=True)
class RemoteStart:
    id_tag: str
    remote_start_id: int | None


@dataclass
class Connector:
    id: int
    hw: Hardware
    register_wh: float
    actuator: Actuator
    last_t: datetime
    error_schedule: PoissonSchedule
    phase: Phase = Phase.IDLE
    plan: SessionPlan | None = None
    arrive_at: datetime | None = None
    phase_until: datetime | None = None
    ev: EvModel | None = None
    soc: float = 0.0
    id_tag: str | None = None
    remote: RemoteStart | None = None
    session: Session | None = None
    reported: ConnectorState | None = None
    charging_state: ConnectorState | None = None
    error_code: str | None = None
    fault_until: datetime | None = None
    operative: bool = True
    pending_inoperative: bool = False
    reservation: Reservation | None = None
    next_sample_at: datetime | None = None
    visits: int = 0
    serial: int = 0  # transactions started on this connector
    register_reset_done: bool = False
    flow: Flow = field(default_factory=Flow)


def desired_limit(c: Connector, profiles: ProfileStore, at: datetime) -> tuple[float, int | None]:
    """What the profiles allow at ``at`` (native unit), and the phase limit if a period sets one."""
    session = c.session
    constraints = profiles.constraints(c.id, at, tx_id=session.tx_id if session else None,
                                       tx_start=session.start_ts if session else None)
    voltage = evphysics.dc_voltage_v(c.soc) if c.hw.dc else c.hw.voltage_v
    limit = c.hw.max_native
    for constraint in constraints:
        limit = min(limit, native_limit(constraint, dc=c.hw.dc, phases=c.hw.phases, voltage_v=voltage))
    phases = [k.phases for k in constraints if k.phases]
    return limit, (min(phases) if phases else None)


def ev_accepting(c: Connector, at: datetime) -> bool:
    """The car takes energy: below its target SoC and not in a self-imposed pause."""
    plan, session = c.plan, c.session
    if c.ev is None or plan is None or session is None or c.soc >= plan.soc_target:
        return False
    if plan.pause_at_s is not None:
        elapsed = (at - session.start_ts).total_seconds()
        if plan.pause_at_s <= elapsed < plan.pause_at_s + plan.pause_s:
            return False
    return True


def flow_at(c: Connector, at: datetime, phase_limit: int | None) -> Flow:
    if c.error_code is not None or (not c.operative and c.phase != Phase.IN_TX):
        return Flow()
    in_tx = c.phase == Phase.IN_TX
    return compute_flow(c.hw, c.actuator.value_at(at), ev=c.ev if in_tx else None, soc=c.soc,
                        accepting=in_tx and ev_accepting(c, at), phase_limit=phase_limit)


def advance(c: Connector, profiles: ProfileStore, now: datetime) -> None:
    """Integrate from ``c.last_t`` to ``now``, then hand the current profile limit to the hardware."""
    total = (now - c.last_t).total_seconds()
    if total <= 0:
        return
    steps = max(1, math.ceil(total / max(MAX_SUBSTEP_S, total / 50)))
    h = total / steps
    phase_limit = desired_limit(c, profiles, c.last_t)[1]
    for i in range(steps):
        flow = flow_at(c, c.last_t + timedelta(seconds=(i + 0.5) * h), phase_limit)
        energy = integrate(flow, h)
        c.register_wh += energy
        if c.session is not None:
            c.session.energy_wh += energy
            c.session.charging_s += h if flow.flowing else 0.0
        if c.ev is not None and energy > 0:
            c.soc = evphysics.soc_after(c.ev, c.soc, energy)
    c.last_t = now
    c.actuator.settle(now)
    limit, phase_limit = desired_limit(c, profiles, now)
    c.actuator.command(limit, now)
    c.flow = flow_at(c, now, phase_limit)


def derived_status(c: Connector) -> ConnectorState:
    if c.error_code is not None:
        return ConnectorState.FAULTED
    if c.phase == Phase.IN_TX:
        if c.flow.flowing:
            return ConnectorState.CHARGING
        low = c.flow.offered_w <= 0 if c.hw.dc else c.flow.offered_a < AC_MIN_CURRENT_A
        return ConnectorState.SUSPENDED_EVSE if low else ConnectorState.SUSPENDED_EV
    if not c.operative:
        return ConnectorState.UNAVAILABLE
    if c.phase in (Phase.PLUGGED, Phase.AUTHORIZING, Phase.REJECTED):
        return ConnectorState.PREPARING
    if c.phase == Phase.FINISHING:
        return ConnectorState.FINISHING
    return ConnectorState.RESERVED if c.reservation is not None else ConnectorState.AVAILABLE
