"""Charger timelines and tickets (RMA bundles) against the real PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from portal_fixtures import NOW
from support_fixtures import make_access, seed_support

from control.support import TicketStatus
from dashboards import support_records as records
from dashboards.access import Access, AccessDenied
from warehouse import support_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dsn(portal_dsn: str) -> str:
    seed_support(portal_dsn)
    return portal_dsn


@pytest.fixture()
def access(dsn: str) -> Access:
    return make_access(dsn)


def test_the_timeline_puts_everything_on_one_axis(access: Access, dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        support_store.record_frames(conn, [("SIM-0005", NOW - timedelta(minutes=31), "in",
                                            '[2,"1","StatusNotification",{"status":"Faulted"}]')], bridge_id="b1")
    support = access.principal("demo-support")
    timeline = records.charger_timeline(support, access, "SIM-0005", start=NOW - timedelta(hours=3), end=NOW)
    lanes = {i.lane for i in timeline.items}
    assert {records.Lane.STATUS, records.Lane.ERRORS, records.Lane.SESSIONS, records.Lane.COMMANDS,
            records.Lane.ALERTS, records.Lane.FRAMES} <= lanes
    status = [i for i in timeline.items if i.lane is records.Lane.STATUS]
    assert [s.label for s in status] == ["Available", "Charging", "Faulted"]
    assert status[-1].end == NOW and status[0].end == status[1].start
    command = next(i for i in timeline.items if i.lane is records.Lane.COMMANDS)
    assert command.label == "reset" and "accepted" in command.detail and "demo-support" in command.detail
    assert [i.start for i in timeline.items] == sorted(i.start for i in timeline.items)
    assert timeline.frames[0].frame.startswith("[2,")


def test_the_timeline_is_for_support_only(access: Access) -> None:
    for user in ("demo-owner", "demo-member", "demo-fleet"):
        with pytest.raises(AccessDenied):
            records.charger_timeline(access.principal(user), access, "SIM-0001", start=NOW - timedelta(hours=1),
                                     end=NOW)


def test_the_frame_log_keeps_the_newest_frames_per_charger(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        frames = [("SIM-0006", NOW + timedelta(seconds=i), "in", f"[2,\"{i}\",\"Heartbeat\",{{}}]") for i in range(12)]
        support_store.record_frames(conn, frames[:7], bridge_id="b1", keep=5)
        support_store.record_frames(conn, frames[7:], bridge_id="b2", keep=5)
        support_store.record_frames(conn, [("SIM-0004", NOW, "out", "[3,\"x\",{}]")], bridge_id="b1", keep=5)
        kept = support_store.frames(conn, "SIM-0006", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
        other = support_store.frames(conn, "SIM-0004", NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert [json.loads(f.frame)[1] for f in kept] == ["7", "8", "9", "10", "11"]
    assert len(other) == 1


def test_a_ticket_moves_through_its_states_and_exports_a_bundle(access: Access, dsn: str, tmp_path: Path) -> None:
    support = access.principal("demo-support")
    (tmp_path / "SIM-0005").mkdir()
    (tmp_path / "SIM-0005" / "d.log").write_text("diag\n")
    with psycopg.connect(dsn) as conn:
        support_store.record_upload(conn, charger_id="SIM-0005", file_name="d.log", path="SIM-0005/d.log",
                                    size_bytes=5, sha256="ab", content_type="text/plain", received_at=NOW)
    candidates = records.open_alerts_of(support, access, "SIM-0005")
    assert [a.alert_id for a in candidates] == ["al-ground"]
    ticket = records.open_ticket(support, access, "SIM-0005", title=" Ground fault returns ", notes="reset twice",
                                 alert_ids=["al-ground"], new_id=lambda: "T-1")
    assert (ticket.ticket_id, ticket.title, ticket.status, ticket.alert_ids) == (
        "T-1", "Ground fault returns", TicketStatus.OPEN, ("al-ground",))
    records.move_ticket(support, access, "T-1", TicketStatus.WAITING, "RMA 4711 at the vendor")
    with pytest.raises(ValueError, match="cannot become"):
        records.move_ticket(support, access, "T-1", TicketStatus.WAITING, None)
    closed = records.move_ticket(support, access, "T-1", TicketStatus.CLOSED, None)
    assert closed.status is TicketStatus.CLOSED and "RMA 4711" in closed.notes
    view = records.ticket_view(support, access, "T-1")
    assert [(e.from_status, e.to_status) for e in view.events] == [
        (None, TicketStatus.OPEN), (TicketStatus.OPEN, TicketStatus.WAITING),
        (TicketStatus.WAITING, TicketStatus.CLOSED)]
    assert [t.ticket_id for t in records.tickets(support, access, statuses=[TicketStatus.CLOSED])] == ["T-1"]
    assert records.tickets(support, access, statuses=[TicketStatus.OPEN]) == []

    name, data = records.ticket_bundle(support, access, "T-1", tmp_path)
    assert name == "T-1-SIM-0005.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = set(z.namelist())
        assert {"ticket.json", "alerts.json", "timeline.json", "ocpp_frames.jsonl", "troubleshooting.json",
                "diagnostics.json"} <= names
        assert any(n.startswith("diagnostics/") and n.endswith("d.log") for n in names)
        assert json.loads(z.read("ticket.json"))["ticket"]["status"] == "closed"
        assert json.loads(z.read("alerts.json"))[0]["alert"]["alert_id"] == "al-ground"


def test_tickets_are_refused_to_owners_members_and_fleet_managers(access: Access) -> None:
    for user in ("demo-owner", "demo-member", "demo-fleet"):
        who = access.principal(user)
        with pytest.raises(AccessDenied):
            records.open_ticket(who, access, "SIM-0001", title="x")
        with pytest.raises(AccessDenied):
            records.tickets(who, access)


def test_a_ticket_cannot_bundle_another_chargers_alert(access: Access) -> None:
    support = access.principal("demo-support")
    with pytest.raises(ValueError, match="not SIM-0001"):
        records.open_ticket(support, access, "SIM-0001", title="x", alert_ids=["al-ground"])
