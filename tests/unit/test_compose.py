"""docker-compose.yml is for our users; there is no Docker engine here, so check it by reading it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from flowbank.cli import build_parser
from flowbank.config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return data


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:  # argparse offers no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("flowbank has no subcommands")


SERVICES = _compose()["services"]


def test_the_stack_has_what_the_platform_needs() -> None:
    assert {"timescaledb", "mosquitto", "bridge", "migrate"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "command" in s))
def test_every_command_is_a_real_flowbank_subcommand(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "flowbank"
    subcommands = _subcommands()
    assert command[1] in subcommands, f"{name}: 'flowbank {command[1]}' does not exist"
    subcommands[command[1]].parse_args(command[2:])  # the flags must parse too


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_bind_mount_exists(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith((".", "/")):
            assert (PROJECT_ROOT / source).resolve().exists(), f"{name}: {source} is missing"
        else:
            assert source in _compose()["volumes"], f"{name}: named volume {source} is not declared"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.get("restart") != "no"))
def test_long_running_services_have_health_checks(name: str) -> None:
    assert "healthcheck" in SERVICES[name]


def test_app_image_is_buildable_from_the_repo() -> None:
    build = SERVICES["bridge"]["build"]
    dockerfile = PROJECT_ROOT / build["context"] / build["dockerfile"]
    text = dockerfile.read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert "requirements.lock" in text


def test_app_services_wait_for_healthy_dependencies() -> None:
    assert SERVICES["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert SERVICES["bridge"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_broker_config_keeps_messages() -> None:
    conf = Path(PROJECT_ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text().split("\n")
    assert "persistence true" in conf
    assert "max_queued_messages 0" in conf
