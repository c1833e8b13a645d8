"""scripts/services.sh is idempotent and brings stopped services back."""

from __future__ import annotations

import os
import subprocess

import pytest

from control.settings import Settings
from flowbank.config import PROJECT_ROOT
from flowbank.services import check_mqtt, check_postgres

pytestmark = [pytest.mark.integration, pytest.mark.serial]

SCRIPT = PROJECT_ROOT / "scripts" / "services.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture()
def own_services(base_settings: Settings) -> Settings:
    if not base_settings.provision_services or os.environ.get("FLOWBANK_PG_DSN"):
        pytest.skip("FLOWBANK_PG_DSN/FLOWBANK_MQTT_URL point at the user's own services; nothing to provision")
    return base_settings


def test_running_twice_succeeds(own_services: Settings) -> None:
    for _ in range(2):
        result = _run()
        assert result.returncode == 0, result.stderr
        assert "ready:" in result.stderr


def test_stopped_services_are_started_again(own_services: Settings) -> None:
    down = _run("down")
    assert down.returncode == 0, down.stderr
    assert not check_postgres(own_services).ok
    assert not check_mqtt(own_services.mqtt, timeout_s=2).ok
    up = _run()
    assert up.returncode == 0, up.stderr
    pg = check_postgres(own_services)
    assert pg.ok, pg.detail
    broker = check_mqtt(own_services.mqtt)
    assert broker.ok, broker.detail
