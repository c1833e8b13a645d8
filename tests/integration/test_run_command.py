"""`flowbank run`: the whole platform comes up, does real work, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from mqtt_sessions import bridge_client_ids, end_sessions, pipeline_client_ids

from control.settings import MqttEndpoint

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_starts_the_platform_and_stops_on_ctrl_c(pg_dsn: str, mqtt_endpoint: MqttEndpoint,
                                                      tmp_path: Path) -> None:
    port, dashboard_port, oidc_port = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "FLOWBANK_DASHBOARD_PORT": str(dashboard_port),
           "FLOWBANK_PG_DSN": pg_dsn, "FLOWBANK_MQTT_URL": mqtt_endpoint.url,
           "FLOWBANK_DATA_DIR": str(tmp_path / "data"), "FLOWBANK_BRIDGE_PORT": str(port),
           "FLOWBANK_BRIDGE_ID": f"run-test-{port}", "FLOWBANK_PIPELINE_ID": f"run-test-{port}"}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flowbank.cli", "run", "--chargers", "2", "--speed", "30",
                                 "--oidc-port", str(oidc_port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        samples = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with psycopg.connect(pg_dsn) as conn:
                row = conn.execute("select count(*) from meter_samples where charger_id like 'SIM-%'").fetchone()
            samples = row[0] if row else 0
            if samples > 0:
                break
            time.sleep(1)
        output = log_path.read_text(errors="replace")
        assert proc.poll() is None, output[-3000:]
        assert f"ws://127.0.0.1:{port}/ocpp/<charge-point-id>" in output
        assert "[run] load management: site 'demo'" in output  # the AC demo charger, on a managed site
        with psycopg.connect(pg_dsn) as conn:
            site = conn.execute("select config from sites where site_id = 'demo'").fetchone()
        assert site is not None and [c["id"] for c in site[0]["chargers"]] == ["SIM-0001"], site
        assert samples > 0, "no meter sample made it from the simulated chargers to TimescaleDB\n" + output[-3000:]
        # The dashboards run too, with the local sign-in provider and one demo user per role.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and f"127.0.0.1:{dashboard_port}" not in output:
            time.sleep(1)
            output = log_path.read_text(errors="replace")
        assert f"http://127.0.0.1:{dashboard_port}" in output, output[-3000:]
        assert "owner@flowbank.demo" in output and "fleet@flowbank.demo" in output
        with psycopg.connect(pg_dsn) as conn:
            people = conn.execute("select count(*) from users where email like '%@flowbank.demo'").fetchone()
        assert people == (6,)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        output = log_path.read_text(errors="replace")
        assert code == 0, output[-3000:]
        assert "[run] stopped" in output
        assert "Traceback" not in output, output[-5000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        end_sessions(mqtt_endpoint, pipeline_client_ids(f"run-test-{port}") + bridge_client_ids(f"run-test-{port}"))
