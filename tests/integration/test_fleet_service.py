"""The fleet, locations, bulk, schedule and installer services against the real PostgreSQL, called
directly as each kind of user (no Streamlit): every read scoped, every action checked and logged."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import psycopg
import pytest
from dbutil import Db as _Db
from portal_fixtures import CHARGERS, NOW

from control.access import Role
from control.contract import CommandOutcome, JsonScalar
from control.installer import SESSION_LENGTH, InstallerCodeError
from dashboards.access import Access, AccessDenied, Principal
from dashboards.fleet_service import BulkAction, FleetService, failed_ids
from dashboards.installer_service import InstallerService
from warehouse import access_store, control_store
from warehouse.command_api import Action, CommandReply, ReplyState, Target

pytestmark = pytest.mark.integration


class FakeCommands:
    """Answers like the bridge would: accepted, except for the chargers told to reject."""

    def __init__(self, reject: frozenset[str] = frozenset()) -> None:
        self.reject = set(reject)
        self.sent: list[tuple[Action, str, Mapping[str, JsonScalar] | None]] = []

    def send_many(self, action: Action, targets: Sequence[Target], *, requested_by: str | None,
                  params: Mapping[str, JsonScalar] | None = None, timeout_s: float = 5.0) -> list[CommandReply]:
        out = []
        for t in targets:
            self.sent.append((action, t.charger_id, params))
            outcome = CommandOutcome.REJECTED if t.charger_id in self.reject else CommandOutcome.ACCEPTED
            out.append(CommandReply(t.charger_id, t.connector_id, f"c-{len(self.sent)}", action, ReplyState.DONE,
                                    outcome=outcome, status="Rejected" if t.charger_id in self.reject else "Accepted"))
        return out


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def other_org(portal_dsn: str) -> str:
    """A second organisation (globex) with its own site, charger and fleet manager."""
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        access_store.ensure_organisation(conn, "globex", "Globex")
        control_store.save_site(conn, {"site_id": "gx", "name": "Globex yard", "circuits": [
            {"id": "main", "limit_a": 32, "name": "Main"}], "chargers": [
            {"id": "GX-1", "circuit": "main", "max_current_a": 16, "phases": ["L1"], "connectors": [{"id": 1}]}]},
            updated_by="test")
        conn.execute("update sites set org_id = 'globex' where site_id = 'gx'")
        conn.execute("insert into chargers (charger_id, site_id, display_name) values ('GX-1', 'gx', 'Bay 1')")
        access_store.create_user(conn, user_id="gx-fleet", email="fleet@globex.test", display_name="G", now=NOW)
        access_store.grant_fleet_manager(conn, "gx-fleet", "globex")
    return "gx-fleet"


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def access(portal_dsn: str, clock: Clock) -> Access:
    counter = itertools.count(1)
    return Access(_Db(portal_dsn), clock=clock, new_id=lambda: f"u-fl-{next(counter)}")


@pytest.fixture()
def commands() -> FakeCommands:
    return FakeCommands()


@pytest.fixture()
def svc(access: Access, commands: FakeCommands) -> FleetService:
    return FleetService(access, lambda: commands)


def _who(access: Access, user_id: str) -> Principal:
    return access.principal(user_id)


def _log(dsn: str, user_id: str, action: str) -> list[tuple[str | None, bool, str | None]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "select charger_id, allowed, detail from access_log where user_id = %s and action = %s"
            " order by ts, charger_id",
            (user_id, action))]


# --------------------------------------------------------------------------- scope


def test_the_fleet_overview_shows_the_organisations_chargers_with_totals(svc: FleetService, access: Access,
                                                                         portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)"
                     " values ('s-today', 'SIM-0001', %s, 5230, 1), ('s-old', 'SIM-0001', %s, 9999, 1)"
                     " on conflict do nothing", (NOW.date(), NOW.date() - timedelta(days=1)))
    overview = svc.overview(_who(access, "demo-fleet"))
    assert [r.charger_id for r in overview.rows] == CHARGERS
    t = overview.totals
    assert (t.sites, t.chargers, t.active_sessions) == (1, 6, 2)  # SIM-0001 charging, SIM-0002 waiting in a session
    assert t.by_status == {"Charging": 1, "Waiting for vehicle": 1, "Error": 1, "Idle": 3}
    assert t.power_kw == pytest.approx(7.4)
    assert t.energy_today_kwh == pytest.approx(5.23)  # yesterday's energy is not today's


def test_a_fleet_manager_of_another_organisation_cannot_see_or_act_on_acmes_chargers(
        svc: FleetService, access: Access, other_org: str, portal_dsn: str, commands: FakeCommands) -> None:
    gx = _who(access, other_org)
    assert [r.charger_id for r in svc.overview(gx).rows] == ["GX-1"]
    assert svc.overview(gx, site_id="demo").rows == []
    with pytest.raises(AccessDenied, match="no access to charger SIM-0001"):
        svc.quick_action(gx, "SIM-0001", Action.STOP)
    with pytest.raises(AccessDenied):
        svc.rename(gx, "SIM-0001", "Mine now")
    with pytest.raises(AccessDenied, match="no access to location demo"):
        svc.set_site_location(gx, "demo", address="x", latitude=1.0, longitude=1.0)
    results = svc.bulk(gx, ["SIM-0001", "GX-1"], BulkAction.STOP)
    assert [(r.charger_id, r.outcome) for r in results] == [("SIM-0001", "refused"), ("GX-1", "done")]
    assert [c[1] for c in commands.sent] == ["GX-1"]  # the refused charger was never acted on
    assert svc.schedule(gx, start=NOW - timedelta(days=1), end=NOW + timedelta(days=1)).bars == []
    assert (("SIM-0001", False) in [(c, a) for c, a, _ in _log(portal_dsn, other_org, "start_stop")])


def test_a_member_cannot_bulk_act_even_by_calling_the_service(svc: FleetService, access: Access,
                                                             commands: FakeCommands, portal_dsn: str) -> None:
    member = _who(access, "demo-member")
    with pytest.raises(AccessDenied, match="bulk actions"):
        svc.bulk(member, ["SIM-0001"], BulkAction.STOP)
    assert commands.sent == []
    assert _log(portal_dsn, "demo-member", "bulk_actions")[-1][1] is False
    # One charger at a time is theirs to start and stop; renaming is the owner's.
    assert svc.quick_action(member, "SIM-0001", Action.STOP).ok
    with pytest.raises(AccessDenied, match="only the charger's owner"):
        svc.rename(member, "SIM-0001", "Max's bay")


def test_bulk_with_permitted_and_unpermitted_chargers_acts_only_on_the_permitted(
        access: Access, portal_dsn: str) -> None:
    # An owner who is also fleet manager of another organisation may use bulk, but owns only two acme chargers.
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        access_store.create_user(conn, user_id="mixed", email="mixed@x.test", display_name="Mix", now=NOW)
        access_store.ensure_organisation(conn, "tiny", "Tiny Ltd")
        access_store.grant_fleet_manager(conn, "mixed", "tiny")
        access_store.grant_charger_role(conn, "mixed", "SIM-0003", Role.OWNER)
        access_store.grant_charger_role(conn, "mixed", "SIM-0004", Role.MEMBER)
    who = _who(access, "mixed")
    commands = FakeCommands(reject=frozenset({"SIM-0004"}))
    svc = FleetService(access, lambda: commands)
    results = svc.bulk(who, ["SIM-0003", "SIM-0004", "SIM-0006", "SIM-0003"], BulkAction.START)
    assert [(r.charger_id, r.ok, r.outcome) for r in results] == [
        ("SIM-0003", True, "done"), ("SIM-0004", False, "failed"), ("SIM-0006", False, "refused")]
    assert "no access to charger SIM-0006" in results[2].message
    assert "rejected by the charger" in results[1].message
    assert sorted(c[1] for c in commands.sent) == ["SIM-0003", "SIM-0004"]
    assert failed_ids(results) == ["SIM-0004"]  # a refusal is not retried
    commands.reject.clear()
    assert [r.ok for r in svc.bulk(who, failed_ids(results), BulkAction.START)] == [True]
    # The member role on SIM-0004 does not include limits: refused there, done on the owned one.
    limited = svc.bulk(who, ["SIM-0003", "SIM-0004"], BulkAction.SET_LIMIT, limit_a=10)
    assert [(r.charger_id, r.outcome) for r in limited] == [("SIM-0003", "refused"), ("SIM-0004", "refused")]
    logged = _log(portal_dsn, "mixed", "bulk_start")
    assert [(c, a) for c, a, _ in logged] == [("SIM-0003", True), ("SIM-0004", True), ("SIM-0004", True)]


def test_bulk_modes_and_limits_are_stored_for_the_dataflow(svc: FleetService, access: Access, portal_dsn: str) -> None:
    fleet = _who(access, "demo-fleet")
    eco = svc.bulk(fleet, ["SIM-0003", "SIM-0004"], BulkAction.SET_MODE, mode="eco")
    assert [r.ok for r in eco] == [True, True]
    boost = svc.bulk(fleet, ["SIM-0003"], BulkAction.SET_MODE, mode="boost")  # not confirmed
    assert not boost[0].ok and "confirmation" in boost[0].message
    limited = svc.bulk(fleet, ["SIM-0003"], BulkAction.SET_LIMIT, limit_a=10)
    assert limited[0].ok
    with psycopg.connect(portal_dsn) as conn:
        assert control_store.current_mode(conn, "SIM-0003", 1).value == "eco"
        row = conn.execute("select site_id, limit_a, ends_at, created_by from operator_limits"
                           " where charger_id = 'SIM-0003'").fetchone()
    assert row == ("demo", 10.0, None, "demo-fleet")
    cleared = svc.bulk(fleet, ["SIM-0003"], BulkAction.CLEAR_LIMIT)
    assert cleared[0].message == "limit cleared"
    with pytest.raises(ValueError, match="not a charging mode"):
        svc.bulk(fleet, ["SIM-0003"], BulkAction.SET_MODE, mode="turbo")


# --------------------------------------------------------------------------- settings


def test_rename_refuses_a_duplicate_at_the_same_location_and_saves_a_distinct_name(
        svc: FleetService, access: Access, portal_dsn: str) -> None:
    fleet = _who(access, "demo-fleet")
    verdict = svc.rename(fleet, "SIM-0006", "  bay   1 ")
    assert not verdict.ok
    assert verdict.message == "bay 1 already exists at Demo depot: choose a different name, e.g. 'bay 1 (2)'."
    assert svc.rename(fleet, "SIM-0006", "Bay 6 (north)").ok
    assert svc.rename(fleet, "SIM-0006", "Bay 6 (north)").ok  # its own name is not a duplicate
    assert svc.set_cost_centre(fleet, "SIM-0006", " CC-North ") == "CC-North"
    with psycopg.connect(portal_dsn) as conn:
        assert conn.execute("select display_name, cost_centre from chargers where charger_id = 'SIM-0006'"
                            ).fetchone() == ("Bay 6 (north)", "CC-North")
    assert [d for _, _, d in _log(portal_dsn, "demo-fleet", "rename")][-3:] == [
        "refused: bay 1 already exists at Demo depot: choose a different name, e.g. 'bay 1 (2)'.",
        "Bay 6 (north)", "Bay 6 (north)"]


def test_a_location_gets_a_manual_address_and_position_and_bad_coordinates_are_refused(
        svc: FleetService, access: Access, portal_dsn: str) -> None:
    fleet = _who(access, "demo-fleet")
    with pytest.raises(ValueError, match="both latitude and longitude"):
        svc.set_site_location(fleet, "demo", address="", latitude=52.0, longitude=None)
    svc.set_site_location(fleet, "demo", address="2 Depot Road,  Utrecht", latitude=52.1, longitude=5.12)
    with psycopg.connect(portal_dsn) as conn:
        assert conn.execute("select address, latitude, longitude from sites where site_id = 'demo'").fetchone() == (
            "2 Depot Road, Utrecht", 52.1, 5.12)
    # The owner owns only two of the depot's six chargers: the depot's address is not theirs to change.
    with pytest.raises(AccessDenied, match="SIM-0003"):
        svc.set_site_location(_who(access, "demo-owner"), "demo", address="x", latitude=None, longitude=None)


# --------------------------------------------------------------------------- schedule


def test_the_schedule_has_session_bars_planned_charging_and_departure_markers(
        svc: FleetService, access: Access, portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute(
            "insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,"
            " started_at, ended_at, energy_wh, id_tag) values"
            " ('sch-1', 'SIM-0001', 1, 't1', 'demo', 'active', 1, %s, null, 5230, 'VAN-7'),"
            " ('sch-2', 'SIM-0002', 1, 't2', 'demo', 'completed', 1, %s, %s, 8000, null)",
            (NOW - timedelta(minutes=42), NOW - timedelta(hours=6), NOW - timedelta(hours=4)))
        conn.execute("insert into departures (charger_id, connector_id, departure_at, energy_wh, set_by)"
                     " values ('SIM-0001', 1, %s, 20000, 'demo-fleet')", (NOW + timedelta(hours=5),))
        conn.execute("insert into control_decisions (ts, decision_id, site_id, charger_id, connector_id, new_limit_a,"
                     " reason, site_state) values (%s, 'd1', 'demo', 'SIM-0001', 1, 16, 'deadline at risk', 'normal')",
                     (NOW - timedelta(minutes=1),))
    sched = svc.schedule(_who(access, "demo-fleet"), start=NOW - timedelta(hours=12), end=NOW + timedelta(hours=24))
    kinds = sorted((b.charger_id, b.kind, b.ends_at - b.starts_at) for b in sched.bars)
    assert kinds == [("SIM-0001", "planned", timedelta(hours=5)), ("SIM-0001", "session", timedelta(minutes=42)),
                     ("SIM-0002", "session", timedelta(hours=2))]
    planned = next(b for b in sched.bars if b.kind == "planned")
    assert planned.label == "planned until departure: 16 A (deadline at risk)"
    assert [(d.charger_id, d.departure_at) for d in sched.departures] == [("SIM-0001", NOW + timedelta(hours=5))]
    # A member sees only their own sessions elsewhere; the fleet schedule shows them nothing of others'.
    assert svc.schedule(_who(access, "demo-member"), start=NOW - timedelta(hours=12),
                        end=NOW + timedelta(hours=24)).bars == []


# --------------------------------------------------------------------------- installer mode


def test_installer_mode_needs_a_one_time_code_that_works_once_and_ends_after_the_session(
        access: Access, clock: Clock, portal_dsn: str, other_org: str) -> None:
    rnd = itertools.count(7)
    svc = InstallerService(access, random_bytes=lambda n: bytes(next(rnd) % 256 for _ in range(n)))
    installer, support = _who(access, "demo-installer"), _who(access, "demo-support")
    with pytest.raises(AccessDenied, match="not active"):
        svc.device_profile(installer, "SIM-0005")
    with pytest.raises(AccessDenied):
        svc.issue_code(installer)  # installers do not issue codes to themselves
    with pytest.raises(AccessDenied):
        svc.redeem(support, "ABCD-EFGH")  # support issues codes but has no installer mode
    issued = svc.issue_code(support, site_id="demo", valid_hours=2)
    with psycopg.connect(portal_dsn) as conn:
        stored = conn.execute("select code_sha256 from installer_codes").fetchall()
    assert all(issued.code.encode() not in bytes(r[0]) for r in stored)  # only the hash is stored
    with pytest.raises(InstallerCodeError, match="not valid"):
        svc.redeem(installer, "2345-6789")
    session = svc.redeem(installer, issued.code.lower().replace("-", " "))
    assert session.site_id == "demo" and svc.session(installer) == session
    with pytest.raises(InstallerCodeError, match="already been used"):
        svc.redeem(installer, issued.code)
    profile = svc.device_profile(installer, "SIM-0005")
    assert (profile.serial_number, profile.firmware_version, profile.charger.model) == ("FS-1005", "1.4.2", "AC22")
    assert [(c.status, c.error_code, c.voltage_v) for c in profile.connectors] == [("Error", "GroundFailure", None)]
    with pytest.raises(AccessDenied, match="not this charger's"):
        svc.device_profile(installer, "GX-1")  # the code was for the demo site
    clock.now = NOW + SESSION_LENGTH
    assert svc.session(installer) is None
    with pytest.raises(AccessDenied, match="not active"):
        svc.device_profile(installer, "SIM-0005")
    late = svc.issue_code(support, valid_hours=1)
    clock.now = NOW + SESSION_LENGTH + timedelta(hours=2)
    with pytest.raises(InstallerCodeError, match="expired"):
        svc.redeem(installer, late.code)
    actions = _log(portal_dsn, "demo-installer", "enter_installer_mode")
    assert [a for _, a, _ in actions] == [False, True, False, False]


def test_a_voltage_sample_shows_in_the_diagnostics(access: Access, clock: Clock, portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        conn.execute("insert into meter_samples (ts, charger_id, connector_id, context, voltage_v, temperature_c)"
                     " values (%s, 'SIM-0001', 1, 'Sample.Periodic', 231.5, null)", (NOW - timedelta(minutes=1),))
    operator = _who(access, "demo-operator")
    svc = InstallerService(access, random_bytes=lambda n: bytes(range(40, 40 + n)))
    svc.redeem(operator, svc.issue_code(operator).code)  # operators issue their own
    live = svc.device_profile(operator, "SIM-0001").connectors
    assert [(c.voltage_v, c.temperature_c) for c in live] == [(231.5, None)]
