"""The dashboards' page table (dashboards/nav.py)."""

from __future__ import annotations

from control.access import Role
from dashboards.nav import PAGES, page_path, visible_specs


def test_every_listed_page_exists() -> None:
    missing = [spec.file for spec in PAGES if not page_path(spec).exists()]
    assert not missing


def test_url_paths_are_unique() -> None:
    paths = [spec.url_path for spec in PAGES]
    assert len(paths) == len(set(paths))


def test_every_role_has_somewhere_to_land() -> None:
    for role in Role:
        assert visible_specs([role]), role


def test_members_do_not_see_fleet_or_installer_pages() -> None:
    sections = {spec.section for spec in visible_specs([Role.MEMBER])}
    assert sections == {"Charging", "History", "Account"}
    assert "sql.py" not in {spec.file for spec in visible_specs([Role.MEMBER, Role.OWNER, Role.FLEET_MANAGER])}
