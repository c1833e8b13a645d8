"""Load-management configuration in PostgreSQL, through the CLI and warehouse.control_store."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from e2e_harness import own_database  # noqa: F401 - pg_dsn: it lists every limit stored

from control.contract import ChargingMode
from control.settings import Settings
from flowbank.cli import build_parser
from warehouse import control_store as store
from warehouse.control_cli import run

pytestmark = pytest.mark.integration


NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
SITE_TOML = """
site_id = "depot-9"
name = "Depot 9"
timezone = "Europe/Berlin"
safe_fallback_a = 6

[[circuits]]
id = "main"
limit_a = 63
has_meter = true

[[chargers]]
id = "CS-1"
circuit = "main"
max_current_a = 32

[[chargers]]
id = "CS-2"
circuit = "main"
max_current_a = 16
phases = "L2"

[[rules]]
id = "evening"
name = "Limit to 10 A after 18:00"
action = { kind = "cap_current", current_a = 10 }
condition.schedule = { zone = "Europe/Berlin", start = 18:00:00, end = "24:00" }
"""


def cli(settings: Settings, *argv: str, at: datetime = NOW) -> tuple[int, str, str]:
    args: argparse.Namespace = build_parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    status = run(settings, argv[0], args, out=out, err=err, now=at)
    return status, out.getvalue(), err.getvalue()


def test_site_mode_and_limit_round_trip(test_settings: Settings, pg_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("insert into chargers (charger_id) values ('CS-1'), ('CS-2')")
        stamp0 = store.config_stamp(conn, NOW)
    site_file = tmp_path / "depot-9.toml"
    site_file.write_text(SITE_TOML)
    status, out, err = cli(test_settings, "site", "apply", str(site_file), "--by", "installer@x")
    assert (status, err) == (0, ""), err
    assert out.startswith("site depot-9 saved: 2 charger(s), 1 rule(s)")
    assert "depot-9  'Depot 9'  Europe/Berlin  chargers: CS-1, CS-2  rules: 1" in cli(test_settings, "site", "list")[1]

    status, out, _ = cli(test_settings, "mode", "CS-1", "1", "boost")
    assert status == 1 and "--confirm" in out
    assert cli(test_settings, "mode", "CS-1", "1", "boost", "--confirm")[0] == 0
    assert cli(test_settings, "mode", "CS-2", "0", "eco")[0] == 0
    status, out, _ = cli(test_settings, "limit", "set", "--site", "depot-9", "--amps", "40", "--id", "grid-1",
                         "--until", "2026-11-26T19:00Z", "--reason", "grid operator request")
    assert status == 0 and "site depot-9 capped at 40 A until 2026-11-26T19:00:00+00:00" in out

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert store.config_stamp(conn, NOW) != stamp0
        loaded = store.load_site_configs(conn, NOW)
        assert loaded.errors == {}
        config = loaded.configs["depot-9"]
        assert config.charger_ids == ("CS-1", "CS-2") and config.timezone == "Europe/Berlin"
        assert config.mode_of("CS-1", 1) is ChargingMode.BOOST
        assert config.mode_of("CS-2", 1) is ChargingMode.ECO  # set for connector 0: every connector
        assert [r.name for r in config.rules] == ["Limit to 10 A after 18:00"]
        assert [(lim.limit_a, lim.ends_at) for lim in config.site.operator_limits] == [
            (40.0, datetime(2026, 11, 26, 19, 0, tzinfo=UTC))]
        # The limit is gone once it has ended, and the stamp says so without any write.
        later = NOW + timedelta(hours=3)
        assert store.load_site_configs(conn, later).configs["depot-9"].site.operator_limits == ()
        assert store.config_stamp(conn, later) != store.config_stamp(conn, NOW)
        assert conn.execute("select site_id from chargers where charger_id = 'CS-2'").fetchone() == ("depot-9",)
        assert conn.execute("select count(*), count(*) filter (where accepted) from mode_changes"
                            " where charger_id in ('CS-1', 'CS-2')").fetchone() == (3, 2)

    assert "grid-1  site depot-9  40 A" in cli(test_settings, "limit", "list")[1]
    minute = NOW + timedelta(minutes=1)
    assert cli(test_settings, "limit", "end", "grid-1", at=minute)[0] == 0
    assert cli(test_settings, "limit", "list", at=minute)[1].strip() == "no limits in force"
    assert cli(test_settings, "limit", "end", "grid-1", at=minute)[0] == 1  # already ended
    assert cli(test_settings, "decisions", "--since", "2h")[1].strip() == "no decisions in that period"
    status, out, err = cli(test_settings, "departure", "CS-1", "1", "--at", "2026-11-27T07:00+01:00",
                           "--target-soc", "80", "--battery-kwh", "64")
    assert status == 0 and "80 % SoC by 2026-11-27T06:00:00+00:00" in out, err
    assert cli(test_settings, "departure", "CS-2", "1", "--at", "2026-11-26T16:00Z", "--energy-kwh", "5")[0] == 2
    assert cli(test_settings, "departure", "CS-2", "1", "--at", "2026-11-27T06:00Z")[0] == 2  # needs what
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        leaving = store.load_site_configs(conn, NOW).configs["depot-9"].departures
    assert leaving[("CS-1", 1)].battery_wh == 64_000 and leaving[("CS-1", 1)].target_soc_pct == 80
    assert cli(test_settings, "departure", "CS-1", "1", "--clear")[0] == 0
    assert cli(test_settings, "site", "remove", "depot-9")[0] == 0
    status, _, err = cli(test_settings, "site", "show", "depot-9")
    assert status == 1 and "no site 'depot-9'" in err


@pytest.mark.parametrize(("content", "message"), [
    ("site_id = 'x'\n[[circuits]]\nid = 'main'\nlimit_a = -5\n",
     "refused: circuits[0]: current on L1 must be a finite number >= 0 A"),
    ("site_id = 'x'\n[[circuits]]\nid = 'main'\nlimit_a = 10\n[[rules]]\nid = 'r'\nname = 'R'\n"
     "action = { kind = 'explode' }\n", "refused: rules[0].action.kind"),
    ("site_id = \n", "is not valid TOML"),
])
def test_a_bad_site_file_is_refused_with_the_path_of_the_bad_value(test_settings: Settings, tmp_path: Path,
                                                                    content: str, message: str) -> None:
    site_file = tmp_path / "bad.toml"
    site_file.write_text(content)
    status, out, err = cli(test_settings, "site", "apply", str(site_file))
    assert status == 2 and out == ""
    assert message in err, err
