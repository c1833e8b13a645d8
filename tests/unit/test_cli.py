"""The ``flowbank`` command's settings handling: bad values exit 2 with one line, secrets stay redacted."""

from __future__ import annotations

import logging
import os

import pytest

from flowbank.cli import main

PASSWORD = "hunter2-Pa55"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets: the developer's or CI's own FLOWBANK_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("FLOWBANK_"):
            monkeypatch.delenv(name)
    # main() points log timestamps at UTC process-wide; put the formatter back afterwards.
    monkeypatch.setattr(logging.Formatter, "converter", logging.Formatter.converter)


@pytest.mark.parametrize(("variable", "value"), [
    ("FLOWBANK_BRIDGE_PORT", "abc"),
    ("FLOWBANK_LOG_LEVEL", "chatty"),
    ("FLOWBANK_MQTT_URL", "http://broker"),
    ("FLOWBANK_PG_DSN", f"mysql://u:{PASSWORD}@db/x"),
    ("FLOWBANK_OCPP_RESPONSE_TIMEOUT_S", "nan"),
])
def test_bad_setting_exits_2_with_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["settings"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith(f"flowbank: bad setting: {variable}: ")
    assert PASSWORD not in err


def test_unreadable_config_file_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        tmp_path: os.PathLike[str]) -> None:
    monkeypatch.setenv("FLOWBANK_CONFIG", os.path.join(tmp_path, "missing.toml"))
    assert main(["settings"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "FLOWBANK_CONFIG: cannot read" in err


def test_settings_prints_the_redacted_dsn(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FLOWBANK_PG_DSN", f"postgresql://app:{PASSWORD}@db.internal:5432/flowbank")
    monkeypatch.setenv("FLOWBANK_MQTT_URL", f"mqtts://bridge:{PASSWORD}@broker.internal")
    monkeypatch.setenv("FLOWBANK_BRIDGE_PORT", "9100")
    assert main(["settings"]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    lines = out.splitlines()
    assert "pg_dsn = postgresql://app:********@db.internal:5432/flowbank" in lines
    assert "mqtt_url = mqtts://bridge@broker.internal:8883" in lines
    assert "bridge_port = 9100" in lines
    assert "provision_services = False" in lines


def test_settings_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "pg_dsn = postgresql://flowbank:********@127.0.0.1:5434/flowbank" in lines
    assert "provision_services = True" in lines
