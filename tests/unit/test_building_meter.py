"""The building meter's pure parts: register decoding and config parsing (no Modbus server, no broker)."""

from __future__ import annotations

import argparse
import math
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from control.contract import BuildingLoad, decode, encode
from control.settings import MqttEndpoint, Secret, Settings
from control.topics import load_topic
from ingest.building_meter import (
    PRESETS,
    DataType,
    MeterConfig,
    MeterConfigError,
    MeterReadError,
    RegisterKind,
    RegisterSpec,
    Sign,
    WordOrder,
    decode_reading,
    decode_value,
    load_config,
    parse_config,
    run_load,
    run_meter,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _words(fmt: str, value: float) -> list[int]:
    """Big-endian (high word first) 16-bit registers of one packed value."""
    packed = struct.pack(f">{fmt}", value)
    return list(struct.unpack(f">{len(packed) // 2}H", packed))


def _spec(data_type: str, order: str = "big", scale: float = 1.0, sign: str = "import_positive") -> RegisterSpec:
    return RegisterSpec(
        address=0, data_type=DataType(data_type), word_order=WordOrder(order), scale=scale, sign=Sign(sign)
    )


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("spec", "registers", "expected"),
    [
        (_spec("int16"), [0x0000], 0.0),
        (_spec("int16"), [0x7FFF], 32767.0),
        (_spec("int16"), [0xFFFF], -1.0),
        (_spec("int16"), [0x8000], -32768.0),
        (_spec("uint16"), [0xFFFF], 65535.0),
        (_spec("uint16"), [0x8000], 32768.0),
        (_spec("int32"), [0xFFFF, 0xFFFE], -2.0),
        (_spec("int32", "little"), [0xFFFE, 0xFFFF], -2.0),
        (_spec("int32"), [0x0001, 0x0000], 65536.0),
        (_spec("int32", "little"), [0x0000, 0x0001], 65536.0),
        (_spec("int32"), [0x8000, 0x0000], -2147483648.0),
        (_spec("uint32"), [0xFFFF, 0xFFFF], 4294967295.0),
        (_spec("uint32"), [0x0001, 0x0002], 65538.0),
        (_spec("uint32", "little"), [0x0002, 0x0001], 65538.0),
        (_spec("float32"), _words("f", 1234.5), 1234.5),
        (_spec("float32", "little"), _words("f", 1234.5)[::-1], 1234.5),
        (_spec("float32"), _words("f", -3300.25), -3300.25),
        # scale: W x 10 and kW
        (_spec("int32", "little", scale=0.1), _words("i", 12345)[::-1], 1234.5),
        (_spec("int16", scale=0.1), _words("h", -57), -5.7),
        (_spec("float32", scale=1000), _words("f", 1.5), 1500.0),
        (_spec("uint16", scale=0.01), [1234], 12.34),
        # sign: a meter counting export as positive
        (_spec("int32", sign="export_positive"), _words("i", 2500), -2500.0),
        (_spec("int32", sign="export_positive"), _words("i", -800), 800.0),
        (_spec("float32", sign="export_positive", scale=1000), _words("f", -0.25), 250.0),
    ],
)
def test_decode_value(spec: RegisterSpec, registers: list[int], expected: float) -> None:
    assert decode_value("power_w", registers, spec) == pytest.approx(expected, rel=1e-12)


def test_word_order_matters() -> None:
    words = _words("i", 100_000)
    assert decode_value("power_w", words, _spec("int32")) == 100_000
    assert decode_value("power_w", words, _spec("int32", "little")) != 100_000


def test_zero_from_an_export_positive_meter_is_not_negative_zero() -> None:
    value = decode_value("power_w", [0, 0], _spec("int32", sign="export_positive"))
    assert value == 0 and math.copysign(1.0, value) == 1.0


@pytest.mark.parametrize(
    "registers",
    [
        [0x7FC0, 0x0000],  # NaN
        [0xFFC0, 0x0000],  # negative NaN
        [0x7F80, 0x0000],  # +inf
        [0xFF80, 0x0000],  # -inf
    ],
)
def test_not_a_number_is_rejected(registers: list[int]) -> None:
    with pytest.raises(MeterReadError) as info:
        decode_value("power_w", registers, _spec("float32"))
    assert info.value.kind == "implausible"
    assert str(info.value).startswith("power_w: ")


@pytest.mark.parametrize(
    ("spec", "registers"),
    [
        (_spec("float32"), [0x4000]),  # one register short
        (_spec("int16"), [1, 2]),
        (_spec("uint16"), [0x10000]),  # not a 16-bit word
        (_spec("int32"), [-1, 0]),
    ],
)
def test_wrong_register_shape_is_rejected(spec: RegisterSpec, registers: list[int]) -> None:
    with pytest.raises(MeterReadError) as info:
        decode_value("current_l1_a", registers, spec)
    assert info.value.kind == "implausible"


def _sdm630(**extra: Any) -> MeterConfig:
    return parse_config({"site_id": "depot-1", "host": "10.0.0.5", "preset": "sdm630", **extra})


def test_decode_reading_builds_the_contract_event() -> None:
    config = _sdm630(circuit_id="hall-b", port=5020, unit=7)
    raw = {
        "power_w": _words("f", 5400.0),
        "current_l1_a": _words("f", 8.0),
        "current_l2_a": _words("f", 7.5),
        "current_l3_a": _words("f", -1.0),
    }
    reading = decode_reading(config, raw, T0)
    assert reading == BuildingLoad(
        site_id="depot-1",
        ts=T0,
        power_w=5400.0,
        circuit_id="hall-b",
        current_l1_a=8.0,
        current_l2_a=7.5,
        current_l3_a=-1.0,
        source="modbus:10.0.0.5:5020/7",
    )
    assert decode(encode(reading)) == reading
    assert load_topic(reading.site_id) == "flowbank/v1/load/depot-1"


def test_decode_reading_with_power_only() -> None:
    config = parse_config(
        {"site_id": "s", "host": "h", "registers": {"power_w": {"address": 0, "data_type": "int16", "type": "holding"}}}
    )
    reading = decode_reading(config, {"power_w": [0xFC18]}, T0)  # -1000: export
    assert (reading.power_w, reading.current_l1_a, reading.circuit_id) == (-1000.0, None, None)


@pytest.mark.parametrize(("name", "value"), [("power_w", 2e7), ("power_w", -2e7), ("current_l2_a", 20_000.0)])
def test_implausibly_large_values_are_rejected(name: str, value: float) -> None:
    config = _sdm630()
    raw = {n: _words("f", 1.0) for n in ("power_w", "current_l1_a", "current_l2_a", "current_l3_a")}
    raw[name] = _words("f", value)
    with pytest.raises(MeterReadError, match=f"^{name}: .* beyond the plausible") as info:
        decode_reading(config, raw, T0)
    assert info.value.kind == "implausible"


def test_plausibility_bounds_are_configurable() -> None:
    config = _sdm630(max_power_w=1000)
    raw = {n: _words("f", 1.0) for n in ("current_l1_a", "current_l2_a", "current_l3_a")}
    with pytest.raises(MeterReadError, match="beyond the plausible"):
        decode_reading(config, {**raw, "power_w": _words("f", 1000.5)}, T0)
    assert decode_reading(config, {**raw, "power_w": _words("f", -1000.0)}, T0).power_w == -1000.0


# --------------------------------------------------------------------------- configuration


def test_sdm630_preset() -> None:
    config = _sdm630()
    assert (config.port, config.unit, config.poll_interval_s, config.timeout_s) == (502, 1, 1.0, 1.0)
    assert config.power_w == RegisterSpec(address=52, data_type=DataType.FLOAT32, kind=RegisterKind.INPUT)
    assert [(name, spec.address) for name, spec in config.registers()] == [
        ("power_w", 52),
        ("current_l1_a", 6),
        ("current_l2_a", 8),
        ("current_l3_a", 10),
    ]
    assert config.source == "modbus:10.0.0.5:502/1"


def test_em24_preset() -> None:
    config = parse_config({"site_id": "s", "host": "h", "preset": "em24"})
    assert config.power_w == RegisterSpec(
        address=0x28, data_type=DataType.INT32, kind=RegisterKind.HOLDING, word_order=WordOrder.LITTLE, scale=0.1
    )
    assert config.current_l3_a is not None and (config.current_l3_a.address, config.current_l3_a.scale) == (0x10, 0.001)


def test_register_table_merges_over_the_preset() -> None:
    config = _sdm630(registers={"power_w": {"sign": "export_positive"}, "current_l1_a": {"address": 200}})
    assert config.power_w == RegisterSpec(address=52, data_type=DataType.FLOAT32, sign=Sign.EXPORT_POSITIVE)
    assert config.current_l1_a is not None and config.current_l1_a.address == 200


def test_full_custom_map_and_defaults() -> None:
    config = parse_config(
        {
            "site_id": "s",
            "host": "meter.local",
            "port": 1502,
            "unit": 0,
            "poll_interval_s": 0.5,
            "timeout_s": 2,
            "max_backoff_s": 10,
            "registers": {
                "power_w": {
                    "address": 100,
                    "type": "holding",
                    "data_type": "uint32",
                    "word_order": "little",
                    "scale": 1000,
                    "sign": "export_positive",
                },
                "current_l2_a": {"address": 3, "data_type": "int16", "scale": 0.1},
            },
        }
    )
    assert config.power_w == RegisterSpec(
        address=100,
        data_type=DataType.UINT32,
        kind=RegisterKind.HOLDING,
        word_order=WordOrder.LITTLE,
        scale=1000.0,
        sign=Sign.EXPORT_POSITIVE,
    )
    assert config.current_l2_a == RegisterSpec(address=3, data_type=DataType.INT16, scale=0.1)
    assert config.current_l1_a is None and config.current_l3_a is None
    assert (config.port, config.unit, config.poll_interval_s, config.timeout_s, config.max_backoff_s) == (
        1502,
        0,
        0.5,
        2.0,
        10.0,
    )


def test_presets_are_valid() -> None:
    for name in PRESETS:
        parse_config({"site_id": "s", "host": "h", "preset": name})


_GOOD: dict[str, Any] = {"site_id": "depot-1", "host": "10.0.0.5", "preset": "sdm630"}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"site_id": None}, "site_id"),
        ({"site_id": ""}, "site_id"),
        ({"site_id": "a/b"}, "site_id"),
        ({"site_id": 12}, "site_id"),
        ({"circuit_id": "x#"}, "circuit_id"),
        ({"host": None}, "host"),
        ({"host": "  "}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": "502"}, "port"),
        ({"port": True}, "port"),
        ({"unit": 256}, "unit"),
        ({"unit": -1}, "unit"),
        ({"poll_interval_s": 0}, "poll_interval_s"),
        ({"poll_interval_s": "1s"}, "poll_interval_s"),
        ({"timeout_s": 120}, "timeout_s"),
        ({"max_backoff_s": 0.5}, "max_backoff_s"),  # shorter than the poll interval
        ({"max_power_w": 0}, "max_power_w"),
        ({"preset": "sdm999"}, "preset"),
        ({"preset": None}, "registers.power_w"),
        ({"pol_interval_s": 1}, "pol_interval_s"),
        ({"registers": "power_w=52"}, "registers"),
        ({"registers": {"voltage_v": {"address": 0, "data_type": "int16"}}}, "registers.voltage_v"),
        ({"registers": {"power_w": 52}}, "registers.power_w"),
        ({"registers": {"power_w": {"data_type": "float64"}}}, "registers.power_w.data_type"),
        ({"registers": {"power_w": {"type": "coil"}}}, "registers.power_w.type"),
        ({"registers": {"power_w": {"word_order": "middle"}}}, "registers.power_w.word_order"),
        ({"registers": {"power_w": {"scale": 0}}}, "registers.power_w.scale"),
        ({"registers": {"power_w": {"scale": -1}}}, "registers.power_w.scale"),
        ({"registers": {"power_w": {"sign": "positive"}}}, "registers.power_w.sign"),
        ({"registers": {"power_w": {"address": 65535}}}, "registers.power_w.address"),  # float32 needs 2 registers
        ({"registers": {"power_w": {"address": -1}}}, "registers.power_w.address"),
        ({"registers": {"power_w": {"adress": 5}}}, "registers.power_w.adress"),
        ({"preset": None, "registers": {"power_w": {"address": 1}}}, "registers.power_w.data_type"),
        ({"preset": None, "registers": {"power_w": {"data_type": "int16"}}}, "registers.power_w.address"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(change: dict[str, Any], key: str) -> None:
    table = {**_GOOD, **change}
    table = {k: v for k, v in table.items() if v is not None}
    with pytest.raises(MeterConfigError) as info:
        parse_config(table)
    message = str(info.value)
    assert message.startswith(f"{key}:") or message.startswith(f"{key} "), message
    assert "\n" not in message


def test_load_config_reads_toml(tmp_path: Path) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(
        'site_id = "depot-1"\nhost = "10.0.0.5"\npreset = "em24"\n\n[registers.power_w]\nsign = "export_positive"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.power_w.sign is Sign.EXPORT_POSITIVE and config.power_w.address == 0x28


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("site_id = ", "is not valid TOML"),
        (b"\xff\xfe", "is not UTF-8"),
    ],
)
def test_load_config_file_errors(tmp_path: Path, content: str | bytes | None, expected: str) -> None:
    path = tmp_path / "meter.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(MeterConfigError, match=expected) as info:
        load_config(path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- commands, no services needed


def _settings(tmp_path: Path) -> Settings:
    mqtt = MqttEndpoint(host="127.0.0.1", port=1, username=None, password=Secret(""), tls=False)
    return Settings(pg_dsn=Secret("postgresql://x@127.0.0.1/x"), mqtt=mqtt, data_dir=tmp_path)


def test_meter_command_with_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "meter.toml"
    path.write_text('site_id = "s"\nhost = "h"\nport = 99999\npreset = "sdm630"\n', encoding="utf-8")
    assert run_meter(_settings(tmp_path), path, once=True) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"flowbank meter: bad config {path}: port: expected an integer from 1 to 65535")


@pytest.mark.parametrize(("site", "power"), [("a/b", 100.0), ("site-1", math.nan)])
def test_load_publish_refuses_bad_values_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], site: str, power: float
) -> None:
    args = argparse.Namespace(
        site=site, power_w=power, circuit=None, l1_a=None, l2_a=None, l3_a=None, source="manual", timeout=0.1
    )
    assert run_load(_settings(tmp_path), args, clock=lambda: T0) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowbank load: ") and err.count("\n") == 1
