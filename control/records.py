"""What the dataflow derives from the contract events: sessions, their per-day energy, live
state and data-quality flags. Standard library only; the warehouse stores these, the
dashboards and reports read them.

A session is identified by ``session_id`` (stable across replays and restarts: derived from
charger, connector and transaction id). Every update of a session carries a higher
``revision``, so storing the newest revision is idempotent under replay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Final

from control.contract import CONTRACT_VERSION, ChargingMode, ContractError, JsonScalar, to_dict


class QualityFlag(StrEnum):
    """Reason codes of the data-quality gate (on samples and sessions)."""

    NON_MONOTONIC_REGISTER = "non_monotonic_register"  # the energy register went backwards
    REGISTER_RESET = "register_reset"  # ... to (near) zero mid-session: a meter reset, bridged
    IMPLAUSIBLE_POWER = "implausible_power"  # faster than the charger's rating allows
    CLOCK_SKEW = "clock_skew"  # charger clock far from the server's
    GAP = "gap"  # no samples for much longer than the meter interval
    LIFETIME_REGISTER_AS_SESSION = "lifetime_register_as_session"  # session energy == lifetime register
    REPLAYED_OFFLINE = "replayed_offline"  # delivered late from the charger's offline queue
    MISSING_BEGIN_REGISTER = "missing_begin_register"  # no/zero Transaction.Begin register
    DUPLICATE = "duplicate"  # the same reading twice (ignored)
    OUT_OF_ORDER = "out_of_order"  # arrived after a later reading
    ABANDONED = "abandoned"  # zombie: no data while the connector is Available; closed by timeout
    STATUS_FALLBACK = "status_fallback"  # opened/closed from status because transaction events were missing
    NO_ENERGY_DATA = "no_energy_data"  # no register reading at all


# A session with any of these is "corrupted": its raw rows are kept, it is listed with its
# reason, but it is excluded from aggregates and costs. The other flags are informational.
EXCLUDING_FLAGS: Final = frozenset({
    QualityFlag.NON_MONOTONIC_REGISTER,
    QualityFlag.IMPLAUSIBLE_POWER,
    QualityFlag.LIFETIME_REGISTER_AS_SESSION,
    QualityFlag.ABANDONED,
    QualityFlag.NO_ENERGY_DATA,
})

FLAG_DESCRIPTIONS: Final[dict[QualityFlag, str]] = {
    QualityFlag.NON_MONOTONIC_REGISTER: "The energy register went backwards; the energy cannot be trusted.",
    QualityFlag.REGISTER_RESET: "The meter reset during the session; energy before and after was added up.",
    QualityFlag.IMPLAUSIBLE_POWER: "Energy grew faster than the charger's rated power allows.",
    QualityFlag.CLOCK_SKEW: "The charger's clock differed from the server's by more than the tolerance.",
    QualityFlag.GAP: "Meter readings stopped for a long stretch during the session.",
    QualityFlag.LIFETIME_REGISTER_AS_SESSION: "The session energy equals the charger's lifetime register.",
    QualityFlag.REPLAYED_OFFLINE: "The charger was offline and sent this session's data later.",
    QualityFlag.MISSING_BEGIN_REGISTER: "The start register was missing or zero; the first reading was used.",
    QualityFlag.DUPLICATE: "Duplicate readings were received and ignored.",
    QualityFlag.OUT_OF_ORDER: "Readings arrived out of order and were put back in order.",
    QualityFlag.ABANDONED: "No data while the connector was available; the session was closed as abandoned.",
    QualityFlag.STATUS_FALLBACK: "The charger sent no transaction events; the session was taken from status.",
    QualityFlag.NO_ENERGY_DATA: "No energy register reading was received for this session.",
}


class SessionState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ABANDONED = "abandoned"


class LiveStatus(StrEnum):
    """The status chip shown for a connector."""

    CHARGING = "Charging"
    PAUSED = "Paused"  # suspended by the EV or the charger
    WAITING_FOR_VEHICLE = "Waiting for vehicle"  # connected but not drawing
    ERROR = "Error"
    IDLE = "Idle"
    OFFLINE = "Offline"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    charger_id: str
    connector_id: int
    transaction_id: str
    started_at: datetime
    state: SessionState
    revision: int
    energy_wh: float
    ended_at: datetime | None = None
    id_tag: str | None = None
    meter_start_wh: float | None = None
    meter_stop_wh: float | None = None
    peak_power_w: float | None = None
    avg_power_w: float | None = None
    duration_s: float = 0.0
    charging_s: float = 0.0  # time actually drawing power
    idle_s: float = 0.0  # plugged in, not drawing
    stop_reason: str | None = None
    mode: ChargingMode | None = None
    flags: tuple[QualityFlag, ...] = ()
    sample_count: int = 0
    last_sample_at: datetime | None = None
    site_id: str | None = None

    def __post_init__(self) -> None:
        if self.energy_wh < 0:
            raise ContractError("energy_wh must be >= 0")
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ContractError("ended_at is before started_at")

    @property
    def excluded(self) -> bool:
        """Corrupted: kept, listed with its reason, left out of aggregates and costs."""
        return any(flag in EXCLUDING_FLAGS for flag in self.flags)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(FLAG_DESCRIPTIONS[flag] for flag in self.flags)


@dataclass(frozen=True, slots=True)
class SessionDayEnergy:
    """A session's energy that falls on one UTC day, split from the meter curve (interpolated
    at midnight), so day and month totals agree with the session list."""

    session_id: str
    charger_id: str
    day: date
    energy_wh: float
    revision: int


@dataclass(frozen=True, slots=True)
class LiveState:
    charger_id: str
    connector_id: int
    status: LiveStatus
    updated_at: datetime
    last_seen_at: datetime | None = None
    connector_status: str | None = None  # the raw ConnectorState value
    power_w: float | None = None
    current_a: float | None = None
    session_id: str | None = None
    session_started_at: datetime | None = None
    session_energy_wh: float | None = None
    soc_pct: float | None = None
    error_code: str | None = None
    online: bool = True


def encode_live_state(live: LiveState) -> bytes:
    """The retained ``flowbank/v1/live/...`` payload: the contract's envelope around a LiveState."""
    envelope = {"v": CONTRACT_VERSION, "type": "live_state", "data": to_dict(live)}  # type: ignore[arg-type]
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# --------------------------------------------------------------------------- load management


class ComplianceVerdict(StrEnum):
    """How a charger followed a setpoint, judged from its measured current afterwards."""

    COMPLIANT = "compliant"  # at or under the limit (plus tolerance) within the reaction time
    LATE = "late"  # got there, but after the reaction time
    VIOLATED = "violated"  # still over the limit when the check window closed
    REJECTED = "rejected"  # the charger refused the profile (or the command failed)


@dataclass(frozen=True, slots=True)
class ControlDecision:
    """One line of the audit log: a connector's limit changed by a decision, and why.

    ``inputs`` maps each input the decision read to ``{"value": ..., "age_s": ...}`` (JSON
    scalars only), so the log says what the controller saw and how old it was.
    """

    ts: datetime
    decision_id: str
    site_id: str
    charger_id: str
    connector_id: int
    new_limit_a: float
    reason: str
    site_state: str
    old_limit_a: float | None = None
    paused: bool = False
    binding: str | None = None
    inputs: Mapping[str, Mapping[str, JsonScalar]] = field(default_factory=dict)
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class ComplianceCheck:
    """The verdict on one setpoint (see :class:`ComplianceVerdict`)."""

    ts: datetime
    decision_id: str
    site_id: str
    charger_id: str
    connector_id: int
    limit_a: float
    verdict: ComplianceVerdict
    measured_a: float | None = None
    reaction_s: float | None = None
    command_id: str | None = None
