"""The support console's service against the real PostgreSQL: scoping, permissions, logging, results."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from support_fixtures import FakeCharger, make_access, seed_support

from control.contract import AlertState, Severity
from control.support import Verdict
from dashboards import support_service as svc
from dashboards.access import Access, AccessDenied
from warehouse import support_store
from warehouse.command_api import Action, ReplyState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dsn(portal_dsn: str) -> str:
    seed_support(portal_dsn)
    return portal_dsn


@pytest.fixture()
def access(dsn: str) -> Access:
    return make_access(dsn)


def _log(dsn: str, user_id: str, action: str) -> list[tuple[bool, str | None, str | None]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select allowed, charger_id, detail from access_log where user_id = %s and action = %s"
                            " order by ts", (user_id, action)).fetchall()


# --------------------------------------------------------------------------- alerts


def test_support_sees_every_alert_and_a_member_only_their_chargers(access: Access) -> None:
    support, member = access.principal("demo-support"), access.principal("demo-member")
    everything = svc.AlertFilters(states=())
    assert {a.alert_id for a in svc.alert_feed(support, access, everything).alerts} == {
        "al-ground", "al-offline", "al-waiting", "al-done"}
    assert [a.alert_id for a in svc.alert_feed(member, access, everything).alerts] == ["al-done"]
    with pytest.raises(AccessDenied):
        svc.alert_detail(member, access, "al-ground")


def test_filters_narrow_the_feed(access: Access) -> None:
    support = access.principal("demo-support")
    open_errors = svc.alert_feed(support, access, svc.AlertFilters(severities=(Severity.ERROR,)))
    assert {a.alert_id for a in open_errors.alerts} == {"al-ground", "al-offline"}
    by_model = svc.alert_feed(support, access, svc.AlertFilters(models=("AC22",), states=()))  # odd bays are AC22
    assert {a.charger_id for a in by_model.alerts} <= {"SIM-0001", "SIM-0003", "SIM-0005"}
    assert svc.alert_feed(support, access, svc.AlertFilters(kinds=("fault",))).alerts[0].alert_id == "al-ground"


def test_acknowledge_stores_the_note_and_the_transition_and_logs_it(access: Access, dsn: str) -> None:
    support = access.principal("demo-support")
    row = svc.acknowledge_alert(support, access, "al-offline", "  site router rebooting  ")
    assert row.state is AlertState.ACKNOWLEDGED and row.acknowledged_by == "demo-support"
    steps = svc.alert_transitions(support, access, "al-offline")
    assert [(t.from_state, t.to_state, t.actor, t.note) for t in steps] == [
        (AlertState.OPEN, AlertState.ACKNOWLEDGED, "demo-support", "site router rebooting")]
    resolved = svc.resolve_alert(support, access, "al-offline", "back online")
    assert resolved.state is AlertState.RESOLVED
    assert [t.to_state for t in svc.alert_transitions(support, access, "al-offline")][-1] is AlertState.RESOLVED
    assert [entry[0] for entry in _log(dsn, "demo-support", "acknowledge_alert")] == [True]
    assert "back online" in (_log(dsn, "demo-support", "resolve_alert")[-1][2] or "")


def test_a_member_and_an_owner_cannot_acknowledge_even_by_calling_the_service(access: Access, dsn: str) -> None:
    member, owner = access.principal("demo-member"), access.principal("demo-owner")
    with pytest.raises(AccessDenied, match=r"only the charger's owner|does not allow"):
        svc.acknowledge_alert(member, access, "al-done", None)
    with pytest.raises(AccessDenied, match="does not allow acknowledge alerts"):
        svc.acknowledge_alert(owner, access, "al-waiting", "mine")
    assert _log(dsn, "demo-owner", "acknowledge_alerts")[-1][0] is False


def test_a_fleet_manager_acknowledges_alerts_of_their_sites(access: Access) -> None:
    fleet = access.principal("demo-fleet")
    assert svc.acknowledge_alert(fleet, access, "al-waiting", None).state is AlertState.ACKNOWLEDGED


def test_guided_steps_follow_the_fault_code(access: Access) -> None:
    support = access.principal("demo-support")
    guide = svc.alert_detail(support, access, "al-ground").guide
    assert guide is not None and guide.code == "GroundFailure" and len(guide.steps) >= 2
    assert svc.alert_detail(support, access, "al-waiting").guide is None


def test_support_edits_the_knowledge_base_and_a_member_may_not(access: Access) -> None:
    support, member = access.principal("demo-support"), access.principal("demo-member")
    svc.save_guide(support, access, code="ReaderFailure", title="RFID reader down",
                   steps=["Start from the app.", "  ", "Replace the reader."], remote_fixable=True)
    kb = {g.code: g for g in svc.knowledge_base(support, access)}
    assert kb["ReaderFailure"].steps == ("Start from the app.", "Replace the reader.")
    assert kb["ReaderFailure"].updated_by == "demo-support"
    with pytest.raises(AccessDenied):
        svc.save_guide(member, access, code="ReaderFailure", title="x", steps=["y"], remote_fixable=False)


# --------------------------------------------------------------------------- troubleshooting


def test_support_may_troubleshoot_and_the_result_is_recorded(access: Access, dsn: str) -> None:
    support = access.principal("demo-support")
    charger = FakeCharger()
    result = svc.run_action(support, access, charger, "SIM-0004", Action.HARD_RESET)
    assert result.ok and result.summary == "hard reset: accepted by the charger"
    trig = svc.run_action(support, access, charger, "SIM-0004", Action.TRIGGER, connector_id=1,
                          params={"message": "MeterValues"})
    assert trig.ok
    assert [(a, t.connector_id, p) for a, t, _, p in charger.sent] == [
        (Action.HARD_RESET, None, {}), (Action.TRIGGER, 1, {"message": "MeterValues"})]
    history = svc.action_history(support, access, "SIM-0004")
    assert [h.record.action for h in history] == ["trigger", "hard_reset"]
    assert history[0].record.user_id == "demo-support" and history[0].record.reply_state == "done"
    assert _log(dsn, "demo-support", "hard_reset")[-1][:2] == (True, "SIM-0004")


def test_a_member_may_not_troubleshoot(access: Access) -> None:
    member = access.principal("demo-member")
    charger = FakeCharger()
    for action in (Action.SOFT_RESET, Action.HARD_RESET, Action.GET_CONFIG):
        with pytest.raises(AccessDenied):
            svc.run_action(member, access, charger, "SIM-0001", action)
    assert charger.sent == []


def test_an_owner_may_soft_reset_their_own_charger_only(access: Access) -> None:
    owner = access.principal("demo-owner")
    charger = FakeCharger()
    assert svc.run_action(owner, access, charger, "SIM-0001", Action.SOFT_RESET).ok
    with pytest.raises(AccessDenied, match="no access to charger SIM-0003"):
        svc.run_action(owner, access, charger, "SIM-0003", Action.SOFT_RESET)
    with pytest.raises(AccessDenied, match="does not allow troubleshoot"):
        svc.run_action(owner, access, charger, "SIM-0001", Action.HARD_RESET)
    assert [a for a, *_ in charger.sent] == [Action.SOFT_RESET]
    assert svc.allowed_actions(owner, access, "SIM-0001")[Action.SOFT_RESET] is True
    assert svc.allowed_actions(owner, access, "SIM-0001")[Action.GET_DIAGNOSTICS] is False


def test_bad_parameters_are_refused_before_anything_is_sent(access: Access) -> None:
    support = access.principal("demo-support")
    charger = FakeCharger()
    with pytest.raises(ValueError, match="trigger one of"):
        svc.run_action(support, access, charger, "SIM-0004", Action.TRIGGER, params={"message": "Reset"})
    with pytest.raises(ValueError, match="connector"):
        svc.run_action(support, access, charger, "SIM-0004", Action.RELEASE_CABLE)
    assert charger.sent == []


def test_configuration_check_shows_the_differences(access: Access) -> None:
    support = access.principal("demo-support")
    check = svc.check_configuration(support, access, FakeCharger(), "SIM-0001")  # OCPP 1.6, model AC22
    by_key = {d.key: d for d in check.differences}
    assert by_key["StopTransactionOnEVSideDisconnect"].verdict is Verdict.DIFFERENT
    assert by_key["HeartbeatInterval"].verdict is Verdict.OK
    assert by_key["NumberOfConnectors"].verdict is Verdict.OK
    assert "StopTransactionOnEVSideDisconnect" in check.summary
    assert check.values["HeartbeatInterval"] == "60"


def test_configuration_check_of_a_2_0_1_charger_asks_per_variable(access: Access) -> None:
    support = access.principal("demo-support")
    charger = FakeCharger()
    check = svc.check_configuration(support, access, charger, "SIM-0003")  # seeded as OCPP 2.0.1
    assert len(charger.sent) == len(check.differences) > 1
    assert all(p.get("key") and "." in str(p["key"]) for _, _, _, p in charger.sent)


def test_an_offline_charger_is_said_plainly(access: Access) -> None:
    support = access.principal("demo-support")
    check = svc.check_configuration(support, access, FakeCharger(online=False), "SIM-0003")
    assert check.differences == [] and "no answer" in check.summary
    assert check.result.replies[0].state is ReplyState.NO_RESULT_YET


def test_diagnostics_request_and_files(access: Access, dsn: str, tmp_path: Path) -> None:
    support, owner = access.principal("demo-support"), access.principal("demo-owner")
    charger = FakeCharger()
    result = svc.request_diagnostics(support, access, charger, "SIM-0002", upload_base_url="http://files:8090/upload/")
    assert result.ok and "diagnostics-SIM-0002.log" in result.summary
    assert charger.sent[0][3]["location"] == "http://files:8090/upload/SIM-0002"
    (tmp_path / "SIM-0002").mkdir()
    (tmp_path / "SIM-0002" / "x.log").write_bytes(b"hello")
    with psycopg.connect(dsn) as conn:
        stored = support_store.record_upload(conn, charger_id="SIM-0002", file_name="x.log", path="SIM-0002/x.log",
                                             size_bytes=5, sha256="00", content_type="text/plain",
                                             received_at=access.now())
    assert [f.file_name for f in svc.diagnostic_files(support, access, "SIM-0002")] == ["x.log"]
    record, data = svc.read_diagnostic_file(support, access, stored.file_id, tmp_path)
    assert data == b"hello" and record.charger_id == "SIM-0002"
    with pytest.raises(AccessDenied):
        svc.read_diagnostic_file(owner, access, stored.file_id, tmp_path)
