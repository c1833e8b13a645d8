"""Connector physics: what flows through a connector and what its meter counts. Pure.

The meter register is the connector's lifetime Energy.Active.Import.Register in Wh. A session's
``energy_wh`` is accumulated from the very same integration, so it is exactly what the meter
counted while the session ran, even across a register reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ingest.sim import ev as evphysics
from ingest.sim.ev import EvModel

AC_MIN_CURRENT_A = 6.0  # IEC 61851-1: below this the EVSE may not offer AC charging


class ChargerKind(StrEnum):
    AC3 = "ac3"
    AC1 = "ac1"
    DC = "dc"


@dataclass(frozen=True, slots=True)
class Hardware:
    kind: ChargerKind
    max_current_a: float = 32.0  # AC: per phase
    max_power_w: float = 50_000.0  # DC
    voltage_v: float = 230.0  # AC phase-to-neutral

    @property
    def dc(self) -> bool:
        return self.kind == ChargerKind.DC

    @property
    def phases(self) -> int:
        return {ChargerKind.AC3: 3, ChargerKind.AC1: 1, ChargerKind.DC: 1}[self.kind]

    @property
    def max_native(self) -> float:
        """Upper bound in the control unit (A per phase on AC, W on DC)."""
        return self.max_power_w if self.dc else self.max_current_a


@dataclass(frozen=True, slots=True)
class Flow:
    """Instantaneous electrical state of a connector."""

    power_w: float = 0.0
    currents_a: tuple[float, ...] = ()  # per phase on AC (L1, L2, L3), one value on DC
    voltage_v: float = 0.0
    offered_a: float = 0.0  # Current.Offered
    offered_w: float = 0.0

    @property
    def flowing(self) -> bool:
        return self.power_w > 0.0


def compute_flow(hw: Hardware, offered: float, *, ev: EvModel | None, soc: float, accepting: bool,
                 phase_limit: int | None = None) -> Flow:
    """The flow given the offered limit (native unit) and what the car accepts right now."""
    offered = max(0.0, min(offered, hw.max_native))
    if hw.dc:
        voltage = evphysics.dc_voltage_v(soc)
        power = 0.0
        if ev is not None and accepting and ev.dc_max_power_w > 0:
            power = min(offered, evphysics.dc_power_limit_w(ev, soc))
        return Flow(power, (power / voltage,), voltage, offered / voltage, offered)
    phases = hw.phases if phase_limit is None else max(1, min(hw.phases, phase_limit))
    current = 0.0
    used = 0
    if ev is not None and accepting and offered >= AC_MIN_CURRENT_A:
        current = min(offered, evphysics.ac_current_limit_a(ev, soc))
        used = min(phases, ev.ac_phases)
    currents = tuple(current if i < used else 0.0 for i in range(hw.phases))
    return Flow(current * hw.voltage_v * used, currents, hw.voltage_v, offered,
                offered * hw.voltage_v * phases)


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter sample, everything a MeterValue carries."""

    ts: datetime
    register_wh: float
    flow: Flow
    soc: float | None
    dc: bool


@dataclass
class Session:
    """One charging session as the charger saw it. ``energy_wh`` is exact."""

    ref: str  # local reference, stable before the CSMS has assigned an id
    connector_id: int
    id_tag: str
    start_ts: datetime
    meter_start_wh: float  # the value sent to the CSMS
    register_start_wh: float  # exact register at start
    soc_start: float
    ev_name: str = ""
    tx_id: str | None = None  # as the CSMS knows it (1.6: from StartTransaction.conf; 2.0.1: our uuid)
    remote_start_id: int | None = None
    reservation_id: int | None = None
    energy_wh: float = 0.0
    charging_s: float = 0.0
    faults: list[str] = field(default_factory=list)
    stop_ts: datetime | None = None
    stop_reason: str | None = None
    meter_stop_wh: float | None = None
    soc_end: float | None = None
    start_acked: bool = False
    start_failed: bool = False
    stop_acked: bool = False
    stop_failed: bool = False
    seq_no: int = 0  # 2.0.1 TransactionEvent sequence
    written: bool = False

    @property
    def ended(self) -> bool:
        return self.stop_ts is not None

    def next_seq(self) -> int:
        value = self.seq_no
        self.seq_no += 1
        return value


def integrate(flow: Flow, seconds: float) -> float:
    """Energy in Wh for a constant flow over ``seconds``."""
    return flow.power_w * seconds / 3600.0
