"""``flowbank simulate`` arguments become the intended fleet configuration."""

from __future__ import annotations

import argparse

import pytest

from ingest.sim.cli import CHAOS, add_arguments, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_a_quiet_realistic_fleet() -> None:
    config = config_from_args(parse(), url="ws://h:9000/ocpp", password="pw")
    assert config.mix.chargers == 4 and config.mix.dc_chargers == 1
    assert config.faults.offline_per_hour == 0 and config.faults.duplicate_probability == 0
    assert config.options.sample_interval_s == 10.0 and config.link.validate
    assert config.link.password_for("SIM-0001") == "pw"
    assert "pw" not in repr(config.link)  # never in logs
    assert config.bench_rate is None and config.behaviour.sessions_per_connector is None


def test_chaos_turns_every_fault_on_and_explicit_flags_win() -> None:
    config = config_from_args(parse("--chaos", "--duplicate-prob", "0"), url="ws://h/ocpp", password=None)
    assert config.faults.offline_per_hour == CHAOS["offline_rate"]
    assert config.faults.no_reply_probability == CHAOS["no_reply_prob"]
    assert config.behaviour.register_reset_probability == CHAOS["register_reset_prob"]
    assert config.faults.duplicate_probability == 0.0


def test_password_prefix_and_no_auth() -> None:
    config = config_from_args(parse("--password-prefix", "dev-"), url="ws://h/ocpp", password="ignored")
    assert config.link.password_for("SIM-0007") == "dev-SIM-0007"
    config = config_from_args(parse("--no-auth"), url="ws://h/ocpp", password="pw")
    assert config.link.password_for("SIM-0007") is None


def test_benchmark_and_fleet_shape_flags() -> None:
    args = parse("--chargers", "12", "--v201-fraction", "0.25", "--dc", "2", "--rate", "500", "--no-validate",
                 "--meter-interval", "0.01", "--id-tags", "A,B", "--error-codes", "GroundFailure")
    config = config_from_args(args, url="ws://h/ocpp", password=None)
    assert (config.mix.chargers, config.mix.v201_fraction, config.mix.dc_chargers) == (12, 0.25, 2)
    assert config.bench_rate == 500 and not config.link.validate
    assert config.behaviour.id_tags == ("A", "B") and config.faults.error_codes == ("GroundFailure",)


@pytest.mark.parametrize("argv", [["--v201-fraction", "1.5"], ["--speed", "0"], ["--meter-interval", "0.001"],
                                  ["--error-codes", "Boom"]])
def test_bad_values_are_refused(argv: list[str]) -> None:
    with pytest.raises((SystemExit, ValueError)):
        config_from_args(parse(*argv), url="ws://h/ocpp", password=None)
