"""A site's whole load-management configuration, as the dataflow consumes it.

Standard library only. :class:`SiteControlConfig` bundles what operators and owners configure for
one site: the circuit tree with its chargers (:mod:`control.site`), the ordered rules
(:mod:`control.rules`), each connector's charging mode, the operator limits in force, the
departures, the tariff pricing each charger and the site's ``[control]`` settings
(:class:`ControlSettings`: offline chargers, who follows the departure plan). The
warehouse reads it from PostgreSQL (``warehouse.control_store``), the pipeline routes charger
events to their site with :attr:`SiteControlConfig.charger_ids` and feeds ``decide``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from control.contract import ChargingMode
from control.rules import Rule
from control.rules_config import rules_from_mapping
from control.site import OperatorLimit, Site, SiteModelError, site_from_mapping
from control.tariffs import Tariff

ConnectorKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Departure:
    """A vehicle on a connector must leave at ``departure_at`` with ``target_soc_pct`` of a
    ``battery_wh`` battery, or with ``energy_wh`` more energy when its SoC is not known."""

    departure_at: datetime
    target_soc_pct: float | None = None
    battery_wh: float | None = None
    energy_wh: float | None = None

    def needed_wh(self, soc_pct: float | None, delivered_wh: float) -> float | None:
        """Energy still to deliver: from the SoC when both it and the battery are known, else the
        requested energy minus what the session delivered; None when it cannot be told."""
        if soc_pct is not None and self.target_soc_pct is not None and self.battery_wh is not None:
            return max(0.0, (self.target_soc_pct - soc_pct) / 100.0 * self.battery_wh)
        if self.energy_wh is not None:
            return max(0.0, self.energy_wh - delivered_wh)
        return None


class DeparturePlanning(StrEnum):
    """When a departure is charged by the cheapest-window plan of the charger's tariff."""

    ECO = "eco"  # only connectors in Eco mode (the default): Eco is the "lower cost" mode
    STANDARD_AND_ECO = "standard_and_eco"  # every departure except in Boost (Boost always charges now)
    OFF = "off"  # departures only raise the priority when at risk; no holding for cheaper hours


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """A site's ``[control]`` table: how the dataflow treats silent chargers and departures.

    ``offline_timeout_s``: a charger silent longer than this counts as offline (None: 3 x its
    heartbeat interval). ``offline_fallback_a``: what an offline charger may still draw per phase
    (the current its installed profile or its own fallback setting allows once it loses us); None:
    its last limit, which is what it keeps when only its connection dropped. The rest of its share
    goes to the others; 0 releases it all (for chargers that stop charging when they go offline).
    """

    offline_timeout_s: float | None = None
    offline_fallback_a: float | None = None
    departure_planning: DeparturePlanning = DeparturePlanning.ECO

    def __post_init__(self) -> None:
        for name in ("offline_timeout_s", "offline_fallback_a"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0):
                raise SiteModelError(f"control.{name} must be a number >= 0, got {value!r}")
        if self.offline_timeout_s is not None and self.offline_timeout_s <= 0:
            raise SiteModelError("control.offline_timeout_s must be > 0")


def settings_from_mapping(data: Any) -> ControlSettings:
    """Parse a ``[control]`` table; unknown keys are refused (a typo must not drop a setting)."""
    if data is None:
        return ControlSettings()
    if not isinstance(data, Mapping):
        raise SiteModelError("control must be a table")
    unknown = sorted(set(data) - {"offline_timeout_s", "offline_fallback_a", "departure_planning"})
    if unknown:
        raise SiteModelError(f"control: unknown key(s) {unknown}")
    planning = data.get("departure_planning", DeparturePlanning.ECO.value)
    try:
        parsed = DeparturePlanning(planning)
    except ValueError:
        raise SiteModelError(f"control.departure_planning must be one of {[p.value for p in DeparturePlanning]}, "
                             f"got {planning!r}") from None
    return ControlSettings(data.get("offline_timeout_s"), data.get("offline_fallback_a"), parsed)


def settings_to_mapping(settings: ControlSettings) -> dict[str, Any]:
    """The inverse of :func:`settings_from_mapping`, without the unset values."""
    out: dict[str, Any] = {"departure_planning": settings.departure_planning.value}
    if settings.offline_timeout_s is not None:
        out["offline_timeout_s"] = settings.offline_timeout_s
    if settings.offline_fallback_a is not None:
        out["offline_fallback_a"] = settings.offline_fallback_a
    return out


@dataclass(frozen=True, slots=True)
class SiteControlConfig:
    site: Site
    rules: tuple[Rule, ...] = ()
    modes: Mapping[ConnectorKey, ChargingMode] = field(default_factory=dict)
    timezone: str = "UTC"
    enabled: bool = True
    version: str = ""  # a fingerprint of the stored rows: equal versions, equal configuration
    departures: Mapping[ConnectorKey, Departure] = field(default_factory=dict)
    settings: ControlSettings = field(default_factory=ControlSettings)
    tariffs: Mapping[str, Tariff] = field(default_factory=dict)  # by charger: its own, else its site's

    @property
    def site_id(self) -> str:
        return self.site.site_id

    @property
    def charger_ids(self) -> tuple[str, ...]:
        return tuple(sorted(c.charger_id for c in self.site.chargers))

    def mode_of(self, charger_id: str, connector_id: int) -> ChargingMode:
        """The connector's mode; a mode set for connector 0 applies to every connector."""
        return self.modes.get((charger_id, connector_id)) or self.modes.get((charger_id, 0)) \
            or ChargingMode.STANDARD


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-able configuration rows (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def build_config(*, site: Mapping[str, Any], rules: Sequence[Mapping[str, Any]] = (),
                 modes: Mapping[ConnectorKey, str] | None = None,
                 operator_limits: Sequence[OperatorLimit] = (), timezone: str = "UTC",
                 enabled: bool = True, version: str = "",
                 departures: Mapping[ConnectorKey, Departure] | None = None,
                 tariffs: Mapping[str, Tariff] | None = None) -> SiteControlConfig:
    """Parse stored rows into a config; raises ``SiteModelError`` / ``RuleError`` naming the bad value.

    ``operator_limits`` (from the operator-limits table) are added to any in the site mapping; the
    site mapping's optional ``control`` table is :class:`ControlSettings`; ``tariffs`` price the
    chargers (by charger id).
    """
    settings = settings_from_mapping(site.get("control"))
    parsed = site_from_mapping({k: v for k, v in site.items() if k != "control"})
    if operator_limits:
        parsed = replace(parsed, operator_limits=(*parsed.operator_limits, *operator_limits))
    return SiteControlConfig(
        site=parsed, rules=rules_from_mapping(rules),
        modes={key: ChargingMode(value) for key, value in (modes or {}).items()},
        timezone=timezone, enabled=enabled, version=version, departures=dict(departures or {}),
        settings=settings, tariffs=dict(tariffs or {}))
