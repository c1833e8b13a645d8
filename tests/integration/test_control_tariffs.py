"""The tariff that prices each charger reaches the load-management configuration (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import psycopg
import pytest

from control.schedules import Weekday, WeeklyWindow
from control.tariffs import PriceWindow, Tariff, TariffVersion
from warehouse import control_store
from warehouse.tariff_store import assign_tariff, save_tariff

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


def _tariff(tariff_id: str, off_peak: str) -> Tariff:
    window = PriceWindow(WeeklyWindow(time(23), time(5), frozenset(Weekday)), Decimal(off_peak), "off-peak")
    return Tariff(tariff_id, "EUR", "Europe/Berlin",
                  (TariffVersion(datetime(2026, 1, 1, tzinfo=UTC), Decimal("0.40"), Decimal("0.19"), (window,)),))


def test_each_chargers_tariff_reaches_the_control_configuration_and_moves_the_stamp(pg_dsn: str) -> None:
    site = "tariff-ctl-site"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        control_store.save_site(conn, {
            "site_id": site, "circuits": [{"id": "main", "limit_a": 40}],
            "chargers": [{"id": "TCTL-1", "circuit": "main", "max_current_a": 16},
                         {"id": "TCTL-2", "circuit": "main", "max_current_a": 16}],
            "control": {"offline_timeout_s": 90, "departure_planning": "standard_and_eco"}})
        stamp0 = control_store.config_stamp(conn, NOW)
        before = control_store.load_site_configs(conn, NOW).configs[site]
        assert before.tariffs == {}
        assert before.settings.offline_timeout_s == 90  # the [control] table is stored and read back

        site_tariff, own_tariff = _tariff("tctl-site", "0.21"), _tariff("tctl-own", "0.18")
        save_tariff(conn, site_tariff, name="Site off-peak")
        save_tariff(conn, own_tariff, name="Charger 2's own")
        assign_tariff(conn, "tctl-site", site_id=site)
        stamp1 = control_store.config_stamp(conn, NOW)
        assert stamp1 != stamp0
        loaded = control_store.load_site_configs(conn, NOW).configs[site]
        assert loaded.tariffs == {"TCTL-1": site_tariff, "TCTL-2": site_tariff}
        assert loaded.version != before.version  # so the dataflow is sent the new configuration

        assign_tariff(conn, "tctl-own", charger_id="TCTL-2")  # the charger's own wins over its site's
        stamp2 = control_store.config_stamp(conn, NOW)
        loaded = control_store.load_site_configs(conn, NOW).configs[site]
        assert stamp2 != stamp1 and loaded.tariffs == {"TCTL-1": site_tariff, "TCTL-2": own_tariff}

        cheaper = _tariff("tctl-site", "0.15")  # a new price for the same tariff
        save_tariff(conn, cheaper, name="Site off-peak")
        assert control_store.config_stamp(conn, NOW) != stamp2
        assert control_store.load_site_configs(conn, NOW).configs[site].tariffs["TCTL-1"] == cheaper
        assert control_store.config_stamp(conn, NOW) == control_store.config_stamp(conn, NOW)  # quiet: no reload
