"""The SQL page and its service: read-only DuckDB for support and operators only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dbutil import Db as _Db
from streamlit.testing.v1 import AppTest

from control.access import Permission
from control.settings import Settings
from dashboards.access import Access, AccessDenied
from dashboards.analyst_service import AnalystService, QueryRefused
from warehouse.analytics import lake_paths
from warehouse.analytics_views import AnalyticsReader, ensure_views_db

pytestmark = pytest.mark.integration


@pytest.fixture()
def service(portal_dsn: str, test_settings: Settings, tmp_path: Path) -> AnalystService:
    lake_root, db_path = lake_paths(test_settings)
    ensure_views_db(lake_root, db_path)
    reader = AnalyticsReader(db_path)
    return AnalystService(Access(_Db(portal_dsn)), lambda: reader)


def test_support_runs_a_query_and_writes_are_refused(service: AnalystService, portal_dsn: str) -> None:
    support = Access(_Db(portal_dsn)).principal("demo-support")
    result = service.run(support, "select 41 + 1 as answer")
    assert result.frame.to_dicts() == [{"answer": 42}]
    assert "sessions" in service.views(support)
    with pytest.raises(QueryRefused, match=r"read-only: DROP"):
        service.run(support, "select 1; drop view sessions")
    with pytest.raises(QueryRefused, match=r"Catalog Error|does not exist"):
        service.run(support, "select * from no_such_view")


def test_long_results_are_cut_and_say_so(service: AnalystService, portal_dsn: str) -> None:
    support = Access(_Db(portal_dsn)).principal("demo-support")
    result = service.run(support, "select * from range(10)", max_rows=3)
    assert result.frame.height == 3 and result.truncated


@pytest.mark.parametrize("user", ["demo-owner", "demo-member", "demo-fleet"])
def test_nobody_else_may_query_the_whole_lake(service: AnalystService, portal_dsn: str, user: str) -> None:
    who = Access(_Db(portal_dsn)).principal(user)
    with pytest.raises(AccessDenied) as refused:
        service.run(who, "select 1")
    assert refused.value.permission is Permission.RUN_SQL


def test_the_page_runs_a_query_as_support(run_app: Callable[..., AppTest]) -> None:
    at = run_app("support", page="views/sql.py")
    assert not at.exception, at.exception
    at.text_area(key="sql_query").set_value("select 7 as seven").run()
    at.button(key="sql_run").click().run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value.to_dict("records") == [{"seven": 7}]


def test_the_page_is_not_offered_to_an_owner(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner")
    assert not at.exception, at.exception
    with pytest.raises(Exception):  # noqa: B017 - AppTest raises its own error for a page not in the navigation
        at.switch_page("views/sql.py").run()
