"""Fault injection: what goes wrong, when, and how a broken frame looks. Pure and seeded.

Time-based faults (offline periods, hardware errors, malformed frames) arrive as Poisson
processes in simulated time; message-level faults (duplicated CALLs, slow or missing replies to
the CSMS) are drawn per message. Every injected fault is written to the ground-truth log.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from ingest.sim.events import StopReason


class FaultCode(StrEnum):
    OFFLINE = "Offline"
    REGISTER_RESET = "EnergyRegisterReset"
    DUPLICATE = "DuplicateFrame"
    MALFORMED = "MalformedFrame"
    SLOW_REPLY = "SlowReply"
    NO_REPLY = "NoReply"


# 1.6 ChargePointErrorCode values; the connector goes Faulted and a running transaction stops.
ERROR_CODES: tuple[str, ...] = ("GroundFailure", "OverCurrentFailure", "HighTemperature", "PowerSwitchFailure",
                                "ConnectorLockFailure", "EVCommunicationError", "OverVoltage", "UnderVoltage",
                                "InternalError", "PowerMeterFailure")
MALFORMED_KINDS: tuple[str, ...] = ("not_json", "wrong_shape", "schema_violation", "unknown_action")


def stop_reason_for(error_code: str) -> StopReason:
    return {"GroundFailure": StopReason.GROUND_FAULT,
            "OverCurrentFailure": StopReason.OVERCURRENT}.get(error_code, StopReason.OTHER_FAULT)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Rates are per simulated hour, probabilities per occurrence. All off by default."""

    offline_per_hour: float = 0.0  # per charger
    offline_mean_s: float = 600.0  # simulated
    error_per_hour: float = 0.0  # per connector
    error_mean_s: float = 300.0  # simulated
    error_codes: tuple[str, ...] = ("GroundFailure", "OverCurrentFailure", "HighTemperature")
    register_reset_probability: float = 0.0  # per session
    duplicate_probability: float = 0.0  # per outgoing CALL
    malformed_per_hour: float = 0.0  # per charger
    slow_reply_probability: float = 0.0  # per CALL from the CSMS
    slow_reply_s: float = 10.0  # real seconds: it is the CSMS's response timeout that is tested
    no_reply_probability: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.error_codes) - set(ERROR_CODES)
        if unknown:
            raise ValueError(f"unknown error codes {sorted(unknown)}; choose from {ERROR_CODES}")


class PoissonSchedule:
    """Arrival times of one fault kind; ``due`` says whether one happened by ``now``."""

    def __init__(self, rng: random.Random, per_hour: float, start: datetime) -> None:
        self._rng = rng
        self._rate_per_s = per_hour / 3600.0
        self.next_at: datetime | None = self._after(start)

    def _after(self, t: datetime) -> datetime | None:
        if self._rate_per_s <= 0:
            return None
        return t + timedelta(seconds=self._rng.expovariate(self._rate_per_s))

    def due(self, now: datetime) -> bool:
        if self.next_at is None or now < self.next_at:
            return False
        self.next_at = self._after(now)
        return True

    def duration(self, mean_s: float) -> float:
        """A random duration (exponential, at least 10 % of the mean) drawn from the same stream."""
        return max(0.1 * mean_s, self._rng.expovariate(1.0 / mean_s)) if mean_s > 0 else 0.0

    def choice(self, options: tuple[str, ...]) -> str:
        return self._rng.choice(options)


DuplicateMode = Literal["same_id", "new_id"]
ReplyFault = tuple[Literal["slow", "drop"], float]


def duplicate_mode(rng: random.Random, probability: float) -> DuplicateMode | None:
    """Whether to send an outgoing CALL twice, and how (same message id, or a new one)."""
    if probability <= 0 or rng.random() >= probability:
        return None
    return "same_id" if rng.random() < 0.5 else "new_id"


def reply_fault(rng: random.Random, config: FaultConfig) -> ReplyFault | None:
    """What happens to our reply to a CSMS call: delayed, never sent, or nothing."""
    draw = rng.random()
    if draw < config.no_reply_probability:
        return ("drop", 0.0)
    if draw < config.no_reply_probability + config.slow_reply_probability:
        return ("slow", config.slow_reply_s)
    return None


def malformed_frame(kind: str, ocpp_version: str, message_id: str) -> tuple[str, bool]:
    """A broken frame and whether a CALLERROR may come back (only when the id is readable)."""
    if kind == "not_json":
        return f'[2, "{message_id}", "Heartbeat", {{', False
    if kind == "wrong_shape":
        return json.dumps({"messageTypeId": 2, "uniqueId": message_id, "action": "Heartbeat"}), False
    if kind == "schema_violation":
        payload = {"connectorId": "one"} if ocpp_version == "1.6" else {"evseId": "one"}
        return json.dumps([2, message_id, "StatusNotification", payload]), True
    if kind == "unknown_action":
        return json.dumps([2, message_id, "FlyToTheMoon", {"speed": 42}]), True
    raise ValueError(f"unknown malformed frame kind {kind!r}")
