"""The charging services called directly (no Streamlit): scoping, permission checks, stored changes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time, timedelta

import psycopg
import pytest
from dbutil import Db as _Db
from portal_fixtures import EMAIL, NOW

from control.contract import JsonScalar
from control.modes import ModeChangeStatus
from dashboards import charging_device_service as device
from dashboards import charging_load_service as load
from dashboards import charging_rules_service as rules
from dashboards import charging_service as svc
from dashboards.access import Access, AccessDenied, Principal
from warehouse import control_store
from warehouse.command_api import Action, CommandReply, ReplyState, Target

pytestmark = pytest.mark.integration


class FakeCommands:
    def __init__(self) -> None:
        self.sent: list[tuple[Action, Target, str | None, Mapping[str, JsonScalar] | None]] = []

    def send(self, action: Action, target: Target, *, requested_by: str | None,
             params: Mapping[str, JsonScalar] | None = None, timeout_s: float = 5.0) -> CommandReply:
        self.sent.append((action, target, requested_by, params))
        return CommandReply(target.charger_id, target.connector_id, "c1", action, ReplyState.NO_RESULT_YET,
                            elapsed_s=timeout_s)


@pytest.fixture()
def access(portal_dsn: str) -> Access:
    return Access(_Db(portal_dsn), clock=lambda: NOW)


def _who(access: Access, role: str) -> Principal:
    return access.sign_in(email=EMAIL[role], display_name=role, issuer="http://oidc.test", subject=f"svc-{role}")


def _log(dsn: str, user_id: str, action: str) -> list[tuple[bool, str | None]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "select allowed, detail from access_log where user_id = %s and action = %s order by ts", (user_id, action))]


def test_a_member_sees_only_their_charger_and_the_fleet_manager_all(access: Access) -> None:
    all_ids = [f"SIM-{i:04d}" for i in range(1, 7)]
    member = svc.live_cards(_who(access, "member"), access, all_ids, now=NOW)
    assert [c.row.charger_id for c in member] == ["SIM-0001"]
    card = member[0]
    assert card.row.live.power_w == 7400.0 and card.row.hardware_max_a == 32
    assert card.allowed.start_stop and not card.allowed.lock and card.allowed.boost
    fleet = svc.live_cards(_who(access, "fleet_manager"), access, all_ids, now=NOW)
    assert [c.row.charger_id for c in fleet] == all_ids


def test_commands_are_checked_sent_as_the_user_and_logged(access: Access, portal_dsn: str) -> None:
    fake = FakeCommands()
    member = _who(access, "member")
    reply = svc.send_action(member, access, fake, "SIM-0001", 1, Action.STOP)
    assert reply.message == "stop: sent, no answer from the charger within 5 s"
    assert fake.sent == [(Action.STOP, Target("SIM-0001", 1), member.user_id, None)]
    assert _log(portal_dsn, member.user_id, "stop")[-1] == (True, "connector 1: " + reply.message)
    with pytest.raises(AccessDenied, match="owner"):
        svc.send_action(member, access, fake, "SIM-0001", 1, Action.LOCK)  # members may not lock
    with pytest.raises(AccessDenied, match="no access to charger SIM-0003"):
        svc.send_action(member, access, fake, "SIM-0003", 1, Action.START)
    installer = _who(access, "installer")
    with pytest.raises(AccessDenied):
        svc.send_action(installer, access, fake, "SIM-0001", 1, Action.START)
    assert len(fake.sent) == 1
    assert _log(portal_dsn, member.user_id, "lock")[-1][0] is False


def test_boost_needs_the_permission_and_the_confirmation(access: Access) -> None:
    owner = _who(access, "owner")
    unconfirmed = svc.change_mode(owner, access, "SIM-0002", 1, "boost", confirmed=False, now=NOW)
    assert unconfirmed.status is ModeChangeStatus.CONFIRMATION_REQUIRED
    confirmed = svc.change_mode(owner, access, "SIM-0002", 1, "boost", confirmed=True, now=NOW)
    assert confirmed.status is ModeChangeStatus.ACCEPTED
    with access.connection() as conn:
        assert control_store.current_mode(conn, "SIM-0002", 1).value == "boost"
    support = _who(access, "support")
    with pytest.raises(AccessDenied):
        svc.change_mode(support, access, "SIM-0001", 1, "eco", confirmed=False, now=NOW)
    svc.change_mode(owner, access, "SIM-0002", 1, "standard", confirmed=False, now=NOW)


def test_a_member_cannot_change_rules_even_by_calling_the_service(access: Access) -> None:
    member = _who(access, "member")
    view = rules.site_rules(member, access, "demo", now=NOW)
    assert not view.may_add and not view.editable_rule_ids
    mapping = rules.preset_mapping("Limit to 10 A after 18:00", rule_id="m1", zone="UTC", chargers=["SIM-0001"])
    with pytest.raises(AccessDenied, match="owner"):
        rules.save_rule(member, access, "demo", mapping)
    installer = _who(access, "installer")
    with pytest.raises(AccessDenied):
        rules.save_rule(installer, access, "demo", mapping)
    assert rules.site_rules(member, access, "demo", now=NOW).rules == ()


def test_an_owner_on_a_shared_site_changes_only_rules_on_their_own_chargers(access: Access) -> None:
    owner, fleet = _who(access, "owner"), _who(access, "fleet_manager")
    site_wide = rules.preset_mapping("Eco on workdays 07:00-19:00", rule_id="fm-eco", zone="UTC")
    with pytest.raises(AccessDenied):
        rules.save_rule(owner, access, "demo", site_wide)  # affects bays the owner does not own
    rules.save_rule(fleet, access, "demo", site_wide)
    mine = rules.preset_mapping("Limit to 10 A after 18:00", rule_id="own-10a", zone="UTC",
                                chargers=["SIM-0001", "SIM-0002"])
    rules.save_rule(owner, access, "demo", mine)
    view = rules.site_rules(owner, access, "demo", now=NOW)
    assert [r.rule_id for r in view.rules] == ["fm-eco", "own-10a"]
    assert view.editable_rule_ids == {"own-10a"}
    assert view.conflicts and "Eco on workdays" in view.conflicts[0].message
    assert "Limit to 10 A after 18:00" in view.conflicts[0].message
    with pytest.raises(AccessDenied):
        rules.set_rule_enabled(owner, access, "demo", "fm-eco", False)
    off = rules.set_rule_enabled(owner, access, "demo", "own-10a", False)
    assert not off.enabled
    rules.set_rule_enabled(owner, access, "demo", "own-10a", True)
    skipped = rules.skip_rule_once(owner, access, "demo", "own-10a", now=NOW)
    assert skipped.condition.schedule is not None and NOW.date() in skipped.condition.schedule.skipped_dates
    assert any(b.skipped for b in rules.site_rules(owner, access, "demo", now=NOW).timeline)
    rules.delete_rule(fleet, access, "demo", "fm-eco")
    rules.delete_rule(owner, access, "demo", "own-10a")


def test_load_needs_view_load_and_reports_the_fallback(access: Access, portal_dsn: str) -> None:
    with pytest.raises(AccessDenied):
        load.site_load(_who(access, "member"), access, "demo", now=NOW)
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("insert into building_loads (ts, site_id, power_w, current_l1_a, current_l2_a, current_l3_a,"
                     " source) values (%s, 'demo', 9000, 20, 10, 10, 'test')", (NOW - timedelta(minutes=5),))
        conn.execute("insert into control_decisions (ts, decision_id, site_id, charger_id, connector_id, old_limit_a,"
                     " new_limit_a, reason, binding, site_state) values (%s, 'd1', 'demo', 'SIM-0001', 1, 32, 20,"
                     " 'Limited by site', 'main_breaker', 'normal'), (%s, 'd1', 'demo', 'SIM-0003', 1, 16, 10,"
                     " 'Limited by site', 'main_breaker', 'normal')",
                     (NOW - timedelta(minutes=4), NOW - timedelta(minutes=4)))
    owner = load.site_load(_who(access, "owner"), access, "demo", now=NOW)
    assert owner.limit_a == 63 and owner.building_a == 20
    assert owner.ev_a == pytest.approx(32.2)
    assert [s.charger_id for s in owner.shares] == ["SIM-0001", "SIM-0002"]
    assert [a.charger_id for a in owner.audit] == ["SIM-0001"]  # not the bay they cannot see
    assert owner.stale and "300 s old" in (owner.stale_reason or "")  # meter_timeout_s 60
    fresh = load.site_load(_who(access, "operator"), access, "demo", now=NOW - timedelta(minutes=4, seconds=30))
    assert not fresh.stale
    cards = svc.live_cards(_who(access, "owner"), access, ["SIM-0001"], now=NOW)
    assert cards[0].banners == ("Limited by site",)


def test_device_profile_and_v2g_guards(access: Access, portal_dsn: str) -> None:
    owner, member = _who(access, "owner"), _who(access, "member")
    profile = device.device_profile(owner, access, "SIM-0001")
    assert profile.device.vendor == "FlowSim" and profile.hardware_max_a == 32
    assert profile.hardware_max_source == "site configuration"
    assert profile.badge.readiness.label == "Not Supported"  # FlowSim AC22 is not in the catalogue
    with pytest.raises(device.V2GNotReadyError, match="Charger hardware supports V2G"):
        device.save_v2g_settings(owner, access, "SIM-0001", discharge_start=time(17), discharge_end=time(21),
                                 min_soc_pct=50, price_threshold_eur_kwh=0.3, now=NOW)
    with pytest.raises(AccessDenied):
        device.confirm_v2g_prerequisites(member, access, "SIM-0001", vehicle_bidirectional=True, grid_approved=True,
                                         now=NOW)
    assert device.set_v2g_notify(member, access, "SIM-0001", True, now=NOW).notify
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("insert into device_models (vendor, model, max_current_a, phases, bidirectional) values"
                     " ('FlowSim', 'AC7', 16, 1, 'ready') on conflict do nothing")
    # SIM-0002: AC7 and OCPP 1.6: hardware ready now, protocol not.
    device.confirm_v2g_prerequisites(owner, access, "SIM-0002", vehicle_bidirectional=True, grid_approved=True,
                                     now=NOW)
    p2 = device.device_profile(owner, access, "SIM-0002")
    assert p2.badge.readiness.label == "V2G Ready"
    assert [p.name for p in p2.prerequisites if not p.met] == ["Charger speaks OCPP 2.0.1 or newer"]
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("update chargers set ocpp_version = '2.0.1' where charger_id = 'SIM-0002'")
    saved = device.save_v2g_settings(owner, access, "SIM-0002", discharge_start=time(17), discharge_end=time(21),
                                     min_soc_pct=40, price_threshold_eur_kwh=0.25, now=NOW)
    assert saved.min_soc_pct == 40
    assert device.device_profile(owner, access, "SIM-0002").v2g_unlocked
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("update chargers set ocpp_version = '1.6' where charger_id = 'SIM-0002'")
        conn.execute("delete from device_models where vendor = 'FlowSim'")


def test_the_simulators_models_are_seeded(portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn) as conn:
        rows: dict[str, str] = dict(conn.execute(
            "select model, bidirectional from device_models where vendor = 'FlowBankSim'").fetchall())
    assert rows == {"SIM-AC7": "not_supported", "SIM-AC11": "not_supported", "SIM-AC22": "coming_soon",
                    "SIM-DC50": "ready"}
