"""History and analytics for the signed-in user: members see their own sessions only,
corrupted sessions are listed apart and never counted, exports carry the same totals."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from dbutil import Db as _Db
from streamlit.testing.v1 import AppTest

from dashboards.access import Access, AccessDenied
from dashboards.history_service import HistoryService
from warehouse.history import HistoryFilter
from warehouse.queries import NotFoundError

pytestmark = pytest.mark.integration

NOVEMBER = HistoryFilter(date(2026, 11, 1), date(2026, 11, 30))


@pytest.fixture(scope="module", autouse=True)
def _history(portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn, autocommit=True) as conn:
        # History on SIM-0001: the member's session, the owner's, and a corrupted one (excluded).
        for user_id, tag in (("demo-member", "TAG-MEMBER"), ("demo-owner", "TAG-OWNER")):
            conn.execute("insert into user_tokens (id_tag, user_id) values (%s, %s)", (tag, user_id))
        for n, (tag, day, energy_wh, flags) in enumerate((
                ("TAG-MEMBER", 20, 12_000.0, []), ("TAG-OWNER", 21, 8_000.0, []),
                ("TAG-OWNER", 22, 900_000.0, ["lifetime_register_as_session"])), start=1):
            started = datetime(2026, 11, day, 18, 0, tzinfo=UTC)
            conn.execute(
                "insert into sessions (session_id, charger_id, connector_id, transaction_id, site_id, state, revision,"
                " started_at, ended_at, energy_wh, id_tag, peak_power_w, avg_power_w, duration_s, charging_s,"
                " stop_reason, mode, flags, sample_count) values (%s, 'SIM-0001', 1, %s, 'demo', 'completed', 1, %s,"
                " %s, %s, %s, 7400, 6000, 7200, 7000, 'EVDisconnected', 'standard', %s, 10)",
                (f"SIM-0001-1-h{n}", f"h{n}", started, started + timedelta(hours=2), energy_wh, tag, flags))
            conn.execute("insert into session_day_energy (session_id, charger_id, day, energy_wh, revision)"
                         " values (%s, 'SIM-0001', %s, %s, 1)", (f"SIM-0001-1-h{n}", started.date(), energy_wh))


def _service(dsn: str) -> tuple[Access, HistoryService]:
    access = Access(_Db(dsn))
    return access, HistoryService(access)


def test_the_owner_sees_every_session_and_the_corrupted_one_apart(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    overview = service.overview(access.principal("demo-owner"), NOVEMBER)
    assert overview.history.height == 3
    assert overview.excluded["session_id"].to_list() == ["SIM-0001-1-h3"]
    assert overview.total.sessions == 2
    assert overview.total.energy_kwh == pytest.approx(20.0)  # 12 + 8; the 900 kWh "session" is excluded


def test_a_member_sees_only_their_own_sessions_even_in_detail(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    member = access.principal("demo-member")
    overview = service.overview(member, NOVEMBER)
    assert overview.history["session_id"].to_list() == ["SIM-0001-1-h1"]
    assert overview.total.energy_kwh == pytest.approx(12.0)
    assert service.detail(member, "SIM-0001-1-h1").session["user_id"] == "demo-member"
    with pytest.raises(NotFoundError):
        service.detail(member, "SIM-0001-1-h2")  # the owner's session on the same charger


def test_someone_without_the_charger_sees_nothing_and_cannot_export(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    stranger = access.sign_in(email="stranger@example.com", display_name="S", issuer="x", subject="s-h")
    assert service.sessions(stranger, NOVEMBER).is_empty()
    with pytest.raises(AccessDenied):
        service.report(stranger, NOVEMBER)


def test_the_export_totals_equal_the_screen(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    owner = access.principal("demo-owner")
    report = service.report(owner, NOVEMBER)
    rows = list(csv.DictReader(io.StringIO(report.csv().decode("utf-8"))))
    clean = [r for r in rows if r["quality"] != "excluded"]
    assert sum(float(r["energy_in_period_wh"]) for r in clean) == pytest.approx(20_000.0)
    assert report.pdf().startswith(b"%PDF")
    member_rows = list(csv.DictReader(io.StringIO(
        service.report(access.principal("demo-member"), NOVEMBER).csv().decode("utf-8"))))
    assert [r["session_id"] for r in member_rows] == ["SIM-0001-1-h1"]


@pytest.mark.parametrize("role", ["owner", "member", "fleet_manager", "support"])
def test_the_history_page_renders(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page="views/history.py", session={"hist_period": (date(2026, 11, 1), date(2026, 11, 30))})
    assert not at.exception, at.exception
    if role in ("owner", "member"):
        table = at.dataframe[0].value
        assert len(table) == (1 if role == "member" else 3)


@pytest.mark.parametrize("role", ["owner", "member", "fleet_manager"])
def test_the_analytics_page_renders_and_builds_the_exports(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page="views/analytics.py", session={"an_year": 2026})
    assert not at.exception, at.exception
    at.button(key="an_prepare").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_notes_follow_the_sessions_visibility(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    member, owner = access.principal("demo-member"), access.principal("demo-owner")
    service.add_note(member, "SIM-0001-1-h1", "  reimbursed by the office  ")
    assert [(n.author, n.body) for n in service.notes(owner, "SIM-0001-1-h1")] == [
        ("Max Member", "reimbursed by the office")]
    with pytest.raises(NotFoundError):
        service.add_note(member, "SIM-0001-1-h2", "not mine")
    with pytest.raises(ValueError, match="some text"):
        service.add_note(owner, "SIM-0001-1-h2", "   ")


def test_the_monthly_total_on_screen_is_the_csvs(run_app: Callable[..., AppTest], portal_dsn: str) -> None:
    at = run_app("owner", page="views/analytics.py", session={"an_year": 2026})
    assert not at.exception, at.exception
    months = at.dataframe[0].value  # the monthly table comes first
    november = months[months["month"] == "2026-11"]
    on_screen = float(november["kWh"].iloc[0])
    access, service = _service(portal_dsn)
    rows = list(csv.DictReader(io.StringIO(service.report(access.principal("demo-owner"), NOVEMBER).csv()
                                           .decode("utf-8"))))
    in_csv = sum(float(r["energy_in_period_wh"]) for r in rows if r["quality"] != "excluded") / 1000
    assert on_screen == pytest.approx(in_csv) == pytest.approx(20.0)


@pytest.mark.parametrize("user", ["demo-owner", "demo-member", "demo-fleet", "demo-support"])
def test_the_database_sums_are_the_lists_sums(portal_dsn: str, user: str) -> None:
    """Analytics sums in SQL (fast for a fleet's year); they must be the figures of the list."""
    access, service = _service(portal_dsn)
    who = access.principal(user)
    for flt in (NOVEMBER, HistoryFilter(date(2026, 1, 1), date(2026, 12, 31))):
        listed, summed = service.overview(who, flt), service.summaries(who, flt)
        assert summed.months == listed.months
        assert summed.total == listed.total
        assert summed.excluded["session_id"].to_list() == listed.excluded["session_id"].to_list()
        assert summed.top.select("charger_id", "energy_wh", "sessions").to_dicts() == \
            listed.top.select("charger_id", "energy_wh", "sessions").to_dicts()
