"""The packages depend on each other in one direction only (see ../shared/STYLE.md).

control is the pure core (standard library only); adapters import it; nothing imports the top.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from flowbank.config import PROJECT_ROOT

PACKAGES = ("control", "warehouse", "ingest", "pipelines", "reports", "dashboards", "flowbank")
ALLOWED: dict[str, set[str]] = {
    "control": set(),
    "warehouse": {"control"},
    # The bridge keeps its registry (credentials, transaction ids, command queue) in
    # PostgreSQL, whose SQL lives in warehouse/.
    "ingest": {"control", "warehouse"},
    "pipelines": {"control", "warehouse"},
    "reports": {"control", "warehouse"},
    "dashboards": {"control", "warehouse", "reports"},
    "flowbank": set(PACKAGES),  # the composition root: the CLI wires everything together
}
# Narrow exceptions: these modules only. The pipeline reads and writes MQTT with the bridge's own
# MQTT transport (paho cost half of its CPU at 1,000 messages/s); nothing of OCPP.
ALLOWED_MODULES: dict[tuple[str, str], set[str]] = {
    ("pipelines", "ingest"): {"ingest.mqtt_link", "ingest.publisher"},
}


def _modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _imports(path: Path) -> set[str]:
    return {module.split(".")[0] for module in _modules(path)}


def _files(package: str) -> list[Path]:
    return sorted((PROJECT_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    bad = []
    for path in _files(package):
        for module in _modules(path):
            name = module.split(".")[0]
            if name in PACKAGES and name != package and name not in ALLOWED[package] \
                    and module not in ALLOWED_MODULES.get((package, name), set()):
                bad.append(f"{path.relative_to(PROJECT_ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


def test_control_is_standard_library_only() -> None:
    bad = []
    for path in _files("control"):
        for name in _imports(path):
            if name != "control" and name not in sys.stdlib_module_names:
                bad.append(f"{path.relative_to(PROJECT_ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_event_contract_is_standard_library_only() -> None:
    path = PROJECT_ROOT / "control" / "contract.py"
    assert _imports(path) <= set(sys.stdlib_module_names)
