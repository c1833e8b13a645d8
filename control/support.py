"""Support console vocabulary: expected charger configuration, the configuration check, fault
codes behind alerts, ticket states. Pure: no IO, no clock.

The configuration check compares what a charger reports (GetConfiguration on OCPP 1.6, one
GetVariables per key on 2.0.1) with the expected profile of its model: :data:`BASE_PROFILE` for
every charger, overridden per model by :data:`MODEL_PROFILES`. Keys use the OCPP 1.6 names; the
2.0.1 ``Component.Variable`` of each is in :data:`V201_NAMES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Match(StrEnum):
    EQUALS = "equals"        # the same text (booleans compared case-insensitively)
    INCLUDES = "includes"    # a comma-separated list holding every expected item
    AT_LEAST = "at_least"    # a number >= the expected one
    AT_MOST = "at_most"      # a number <= the expected one


@dataclass(frozen=True, slots=True)
class Expected:
    key: str
    value: str
    match: Match = Match.EQUALS
    why: str = ""

    @property
    def describe(self) -> str:
        return {Match.EQUALS: "{v}", Match.INCLUDES: "includes {v}", Match.AT_LEAST: ">= {v}",
                Match.AT_MOST: "<= {v}"}[self.match].format(v=self.value)


BASE_PROFILE: Final[tuple[Expected, ...]] = (
    Expected("HeartbeatInterval", "900", Match.AT_MOST, "offline detection needs a heartbeat at least every 15 min"),
    Expected("MeterValueSampleInterval", "60", Match.AT_MOST, "live power and energy at least once a minute"),
    Expected("MeterValuesSampledData", "Energy.Active.Import.Register,Power.Active.Import", Match.INCLUDES,
             "sessions are measured from the energy register and live power"),
    Expected("LocalAuthorizeOffline", "true", why="drivers can start while the charger is offline"),
    Expected("StopTransactionOnEVSideDisconnect", "true", why="unplugging ends the session"),
    Expected("ChargeProfileMaxStackLevel", "1", Match.AT_LEAST, "load management installs its profile at level 1"),
    Expected("SupportedFeatureProfiles", "Core,SmartCharging,RemoteTrigger", Match.INCLUDES,
             "load management and remote troubleshooting need these"),
)

# Per model: replaces the base entry of the same key, or adds one.
MODEL_PROFILES: Final[Mapping[str, tuple[Expected, ...]]] = {
    "AC7": (Expected("NumberOfConnectors", "1"),),
    "AC22": (Expected("NumberOfConnectors", "1"),),
    "SIM-AC7": (Expected("NumberOfConnectors", "1"),),
    "SIM-DC50": (Expected("NumberOfConnectors", "1"), Expected("MeterValuesSampledData", "Energy.Active.Import."
                                                                "Register,Power.Active.Import,SoC", Match.INCLUDES,
                                                                "DC chargers report the battery's state of charge")),
}

# OCPP 2.0.1 component.variable of each 1.6 key (the simulator and most stations use these).
V201_NAMES: Final[Mapping[str, str]] = {
    "HeartbeatInterval": "OCPPCommCtrlr.HeartbeatInterval",
    "MeterValueSampleInterval": "SampledDataCtrlr.TxUpdatedInterval",
    "MeterValuesSampledData": "SampledDataCtrlr.TxUpdatedMeasurands",
    "LocalAuthorizeOffline": "AuthCtrlr.LocalAuthorizeOffline",
    "StopTransactionOnEVSideDisconnect": "TxCtrlr.StopTxOnEVSideDisconnect",
    "ChargeProfileMaxStackLevel": "SmartChargingCtrlr.ProfileStackLevel",
    "SupportedFeatureProfiles": "ChargingStation.SupportedFeatureProfiles",
    "NumberOfConnectors": "ChargingStation.EVSECount",
}


def expected_profile(model: str | None) -> tuple[Expected, ...]:
    """The base profile with the model's entries applied (order: base keys, then the model's new ones)."""
    overrides = {e.key: e for e in MODEL_PROFILES.get(model or "", ())}
    merged = [overrides.pop(e.key, e) for e in BASE_PROFILE]
    return tuple(merged + list(overrides.values()))


class Verdict(StrEnum):
    OK = "ok"
    DIFFERENT = "different"
    MISSING = "missing"      # the charger does not report the key


@dataclass(frozen=True, slots=True)
class ConfigDifference:
    key: str
    expected: str           # as described ("<= 900", "includes a,b", "true")
    actual: str | None
    verdict: Verdict
    why: str


def _items(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def matches(expected: Expected, actual: str) -> bool:
    if expected.match is Match.INCLUDES:
        return _items(expected.value) <= _items(actual)
    if expected.match in (Match.AT_LEAST, Match.AT_MOST):
        got, want = _number(actual), _number(expected.value)
        if got is None or want is None:
            return False
        return got >= want if expected.match is Match.AT_LEAST else got <= want
    if expected.value.lower() in ("true", "false"):
        return actual.strip().lower() == expected.value.lower()
    return actual.strip() == expected.value


def config_check(profile: Sequence[Expected], actual: Mapping[str, object]) -> list[ConfigDifference]:
    """Each expected key with the charger's value and a verdict (in the profile's order).

    ``actual`` maps 1.6 key names (or their 2.0.1 ``Component.Variable`` names) to values as the
    charger reported them; None or a missing key is :attr:`Verdict.MISSING`."""
    out = []
    for exp in profile:
        raw = actual.get(exp.key)
        if raw is None:
            raw = actual.get(V201_NAMES.get(exp.key, ""))
        if raw is None:
            out.append(ConfigDifference(exp.key, exp.describe, None, Verdict.MISSING, exp.why))
            continue
        text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
        verdict = Verdict.OK if matches(exp, text) else Verdict.DIFFERENT
        out.append(ConfigDifference(exp.key, exp.describe, text, verdict, exp.why))
    return out


def config_summary(differences: Sequence[ConfigDifference]) -> str:
    bad = [d for d in differences if d.verdict is not Verdict.OK]
    if not differences:
        return "Nothing to compare: this model has no expected profile."
    if not bad:
        return f"All {len(differences)} checked settings match the expected profile."
    names = ", ".join(d.key for d in bad)
    return f"{len(bad)} of {len(differences)} settings differ from the expected profile: {names}."


# --------------------------------------------------------------------------- fault codes


def fault_code(kind: str, dedupe_key: str | None, message: str, known: Iterable[str]) -> str | None:
    """The knowledge-base code behind an alert: the last part of a fault's dedupe key
    (``fault|CP-1|1|status|GroundFailure``), else a known code named in the message, else the
    alert kind itself when the base has an entry for it (``charger_offline``)."""
    codes = set(known)
    if dedupe_key and kind == "fault":
        last = dedupe_key.rsplit("|", 1)[-1]
        if last in codes:
            return last
    for code in sorted(codes, key=len, reverse=True):  # the longest name first: "OverVoltage" before "Voltage"
        if code in message:
            return code
    return kind if kind in codes else None


# --------------------------------------------------------------------------- tickets


class TicketStatus(StrEnum):
    OPEN = "open"
    WAITING = "waiting"   # on the customer, the vendor or a part (RMA)
    CLOSED = "closed"


_TICKET_MOVES: Final[Mapping[TicketStatus, frozenset[TicketStatus]]] = {
    TicketStatus.OPEN: frozenset({TicketStatus.WAITING, TicketStatus.CLOSED}),
    TicketStatus.WAITING: frozenset({TicketStatus.OPEN, TicketStatus.CLOSED}),
    TicketStatus.CLOSED: frozenset({TicketStatus.OPEN}),  # reopened
}


def ticket_move_allowed(current: TicketStatus, target: TicketStatus) -> bool:
    return target in _TICKET_MOVES[current]


# Diagnostic uploads live under <data_dir>/<UPLOADS_SUBDIR>/<charger_id>/ (ingest/upload_server.py).
UPLOADS_SUBDIR: Final = "uploads"

# Messages a support user may ask a charger to send again (TriggerMessage).
TRIGGER_MESSAGES: Final[tuple[str, ...]] = ("StatusNotification", "MeterValues", "Heartbeat", "BootNotification")
