"""A site's whole load-management configuration, as the dataflow consumes it.

Standard library only. :class:`SiteControlConfig` bundles what operators and owners configure for
one site: the circuit tree with its chargers (:mod:`control.site`), the ordered rules
(:mod:`control.rules`), each connector's charging mode and the operator limits in force. The
warehouse reads it from PostgreSQL (``warehouse.control_store``), the pipeline routes charger
events to their site with :attr:`SiteControlConfig.charger_ids` and feeds ``decide``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from control.contract import ChargingMode
from control.rules import Rule
from control.rules_config import rules_from_mapping
from control.site import OperatorLimit, Site, site_from_mapping

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


@dataclass(frozen=True, slots=True)
class SiteControlConfig:
    site: Site
    rules: tuple[Rule, ...] = ()
    modes: Mapping[ConnectorKey, ChargingMode] = field(default_factory=dict)
    timezone: str = "UTC"
    enabled: bool = True
    version: str = ""  # a fingerprint of the stored rows: equal versions, equal configuration
    departures: Mapping[ConnectorKey, Departure] = field(default_factory=dict)

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
                 departures: Mapping[ConnectorKey, Departure] | None = None) -> SiteControlConfig:
    """Parse stored rows into a config; raises ``SiteModelError`` / ``RuleError`` naming the bad value.

    ``operator_limits`` (from the operator-limits table) are added to any in the site mapping.
    """
    parsed = site_from_mapping(site)
    if operator_limits:
        parsed = replace(parsed, operator_limits=(*parsed.operator_limits, *operator_limits))
    return SiteControlConfig(
        site=parsed, rules=rules_from_mapping(rules),
        modes={key: ChargingMode(value) for key, value in (modes or {}).items()},
        timezone=timezone, enabled=enabled, version=version, departures=dict(departures or {}))
