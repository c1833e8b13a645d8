"""warehouse/dq.py keeps Great Expectations (4-5 s, 240 MB) out of every import path but its own run.

The import check runs in a fresh interpreter: other tests in this process may have imported GX.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from control.records import QualityFlag
from flowbank.config import PROJECT_ROOT
from warehouse.dq import ASSETS, ExpectationOutcome, describe_observed
from warehouse.dq_cli import add_arguments

_PROBE = """
import sys
import warehouse.dq, warehouse.dq_cli
from flowbank.cli import build_parser
build_parser().parse_args(["dq", "--since", "2026-01-01"])
heavy = sorted(m for m in ("great_expectations", "sqlalchemy", "pandas") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_importing_dq_and_building_the_cli_does_not_import_great_expectations() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


def test_expectation_ids_are_unique_within_each_asset() -> None:
    for spec in ASSETS:
        ids = [check.id for check in spec.checks]
        assert len(ids) == len(set(ids)), spec.name
    assert [spec.name for spec in ASSETS] == [
        "meter_samples", "sessions", "session_day_energy", "status_events", "dead_letters"]


def test_the_flag_check_knows_every_quality_flag() -> None:
    rendered = ASSETS[0].query.format(since=1, until=2, **ASSETS[0].params).as_string()
    assert all(f"{flag.value}" in rendered for flag in QualityFlag)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_times_without_an_offset_are_utc_and_offsets_are_converted() -> None:
    args = _parse("--since", "2026-03-01", "--until", "2026-03-01T12:00:00+02:00")
    assert args.since == datetime(2026, 3, 1, tzinfo=UTC)
    assert args.until == datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("argv", [("--since", "yesterday"), ("--every", "0"), ("--every", "nan"), ("--asset", "x")])
def test_bad_arguments_are_refused(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)
    assert "error:" in capsys.readouterr().err


def test_the_observed_value_reads_as_a_sentence() -> None:
    outcome = ExpectationOutcome(
        asset="meter_samples", suite="warehouse.meter_samples", expectation_id="soc_pct_range",
        expectation_type="expect_column_values_to_be_between", column="soc_pct", kwargs={}, success=False,
        observed={"element_count": 10, "missing_count": 2, "unexpected_count": 2, "unexpected_percent": 25.0,
                  "partial_unexpected_list": [120.0, 101.5, 130.0, 140.0]})
    assert describe_observed(outcome) == "2 of 8 rows (25.0%), e.g. 120.0, 101.5, 130.0"
    assert outcome.severity == (25.0, 2)
