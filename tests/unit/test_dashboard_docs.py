"""docs/dashboards.md shows the permission table exactly as control/access.py GRANTS has it."""

from __future__ import annotations

from control.access import GRANTS, Permission, Role
from flowbank.config import PROJECT_ROOT


def test_the_documented_permission_table_is_the_policy() -> None:
    lines = (PROJECT_ROOT / "docs" / "dashboards.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| permission |"))
    roles = [cell.strip() for cell in header.strip("|").split("|")[1:]]
    assert roles == [r.label for r in Role]
    documented: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            documented[cells[0].strip("`")] = {roles[i] for i, c in enumerate(cells[1:]) if c == "✓"}
    assert set(documented) == {p.value for p in Permission}
    for permission in Permission:
        assert documented[permission.value] == {r.label for r in Role if permission in GRANTS[r]}, permission
