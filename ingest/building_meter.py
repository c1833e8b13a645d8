"""Building (non-EV) load inputs: a Modbus TCP meter reader, and the topic a HEMS publishes on.

Both feed the pipeline the same contract event, :class:`control.contract.BuildingLoad`: the
site's (or one circuit's) power in W, **import positive, export negative**, optional currents per
phase in A, and ``ts`` in UTC. It travels as the contract's JSON envelope
(:func:`control.contract.encode`) with QoS 1 on ``flowbank/v1/load/{site_id}``
(:func:`control.topics.load_topic`).

**A Modbus TCP meter**: ``flowbank meter --config meter.toml`` polls the meter with pymodbus's
async client and publishes each good reading with :class:`ingest.publisher.EventPublisher`
(``source = "modbus:<host>:<port>/<unit>"``; ``ts`` = the injected clock just before the first
register is read, the conservative end of the poll). ``--once`` reads once and prints the
reading without publishing, for commissioning: exit 0; a readable error and exit 1 when the
meter cannot be read; exit 2 for a bad config file. A meter behind an RS485 gateway: use the
gateway's address and the meter's unit id.

**Fail safe.** A failed poll (connection refused, no answer within ``timeout_s``, a Modbus
exception response, a short answer, or an implausible value: NaN, infinity, beyond
``max_power_w`` / ``max_current_a``) publishes **nothing**; it is never turned into a zero reading,
which would look like an idle building and free current that is not there. The pipeline's
stale-input timeout (``Site.meter_timeout_s``) then drops the site to its safe cap and shows the
"Safe fallback" banner. Failures are logged once per change of state (first failure, a different
kind of failure, recovery), not per poll, and retried after ``poll_interval_s`` doubling up to
``max_backoff_s``. After a timeout the TCP connection is dropped and opened afresh, so a late
answer can never be taken for the next one.

**An external HEMS or site controller** publishes the envelope itself, QoS 1, every few seconds
(more often than ``meter_timeout_s``, or the site drops to its safe cap: the "external
controller offline" fallback), with ``ts`` from an NTP-synchronised clock (a reading dated in the
future is also refused as stale)::

    mosquitto_pub -h 127.0.0.1 -p 1884 -q 1 -t flowbank/v1/load/depot-1 -m \\
      '{"v":1,"type":"building_load","data":{"site_id":"depot-1","ts":"'"$(date -u +%FT%TZ)"'",
        "power_w":5400.0,"current_l1_a":8.1,"current_l2_a":7.9,"current_l3_a":7.5,"source":"hems:house"}}'

``circuit_id`` (omitted: the main breaker) names a metered sub-circuit; the currents may be
omitted (the pipeline then assumes the whole power on every phase, the worst case). By hand:
``flowbank load publish --site depot-1 --power-w 5400 --l1-a 8.1`` (exit 1 if the broker did
not acknowledge it; nothing is kept for later).

**Config** (TOML; unknown keys are refused, every error is one line naming the key)::

    site_id = "depot-1"
    circuit_id = "hall-b"      # optional; omitted = the main breaker
    host = "192.168.10.20"
    port = 502                 # default 502
    unit = 1                   # Modbus unit (slave, device) id, 0-255, default 1
    poll_interval_s = 1.0      # default 1
    timeout_s = 1.0            # per request and for connecting, default 1
    max_backoff_s = 30.0       # longest pause between retries while the meter fails, default 30
    max_power_w = 10_000_000   # larger |power| is implausible (wrong register map), default 10 MW
    max_current_a = 10_000     # the same for |current|, default 10 kA
    preset = "sdm630"          # optional: a ready-made register map, see below

    [registers.power_w]        # required unless a preset gives it; also current_l1_a/_l2_a/_l3_a
    address = 52               # 0-based protocol address (register 30053 in the manual = 52)
    type = "input"             # "input" (function 04) or "holding" (function 03); default input
    data_type = "float32"      # int16, uint16, int32, uint32, float32
    word_order = "big"         # 32-bit values: "big" = high word first, "little" = low word first
    scale = 1.0                # value = raw x scale: 0.1 for W x 10, 1000 for kW; default 1
    sign = "import_positive"   # or "export_positive" (the meter counts export as positive)

A ``[registers.X]`` table in the file is merged key by key over the preset's entry, so
``[registers.power_w] sign = "export_positive"`` adapts a preset to a meter mounted the other way.
Presets (check against the meter's manual and with a known load, ``--once``, when commissioning):

- ``sdm630``: Eastron SDM630 (v2/MID) via a Modbus TCP gateway. Input registers, IEEE 754
  float32, high word first; total system power (30053) at 52, signed, in W; phase currents
  (30007/9/11) at 6, 8, 10 in A.
- ``em24``: Carlo Gavazzi EM24 / EM340 (and the Ethernet EM24). Holding registers, int32 low
  word first; "W sys" at 0x28 in W x 10 (scale 0.1); "A L1/L2/L3" at 0x0C/0x0E/0x10 in A x 1000.

Errors: :class:`MeterError` is the base; :class:`MeterConfigError` (permanent: fix the file) and
:class:`MeterReadError` (retryable). Its ``kind`` is the state the log reports changes of:
``unreachable`` (refused, connection lost, or no answer in time: one state, since a meter that
goes away mid-request times out first and refuses next), ``modbus_exception`` (the meter refuses
the request: usually a wrong address, type or unit id) or ``implausible`` (it answers nonsense).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import secrets
import signal
import struct
import sys
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from control.contract import BuildingLoad, ContractError, utc
from control.settings import Settings
from control.topics import load_topic
from ingest.publisher import EventPublisher

if TYPE_CHECKING:
    from pymodbus.client import AsyncModbusTcpClient

log = logging.getLogger(__name__)

MEASURANDS: Final = ("power_w", "current_l1_a", "current_l2_a", "current_l3_a")
_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


class MeterError(Exception):
    """Base of this module's errors."""


class MeterConfigError(MeterError, ValueError):
    """A bad meter configuration (permanent); the message is one line naming the key."""


class Failure(StrEnum):
    """The kinds of failed poll, see the module docstring."""

    UNREACHABLE = "unreachable"
    MODBUS_EXCEPTION = "modbus_exception"
    IMPLAUSIBLE = "implausible"


class MeterReadError(MeterError):
    """One poll failed (retryable); ``kind`` is the failure state the log reports changes of."""

    def __init__(self, kind: Failure, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RegisterKind(StrEnum):
    INPUT = "input"
    HOLDING = "holding"


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"


class WordOrder(StrEnum):
    BIG = "big"  # high word first (Modbus's own byte order, most meters)
    LITTLE = "little"  # low word first


class Sign(StrEnum):
    IMPORT_POSITIVE = "import_positive"
    EXPORT_POSITIVE = "export_positive"


_FORMATS: Final = {
    DataType.INT16: ("h", 1),
    DataType.UINT16: ("H", 1),
    DataType.INT32: ("i", 2),
    DataType.UINT32: ("I", 2),
    DataType.FLOAT32: ("f", 2),
}


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    address: int
    data_type: DataType
    kind: RegisterKind = RegisterKind.INPUT
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    sign: Sign = Sign.IMPORT_POSITIVE

    @property
    def count(self) -> int:
        """Registers (16-bit words) the value spans."""
        return _FORMATS[self.data_type][1]


@dataclass(frozen=True, slots=True)
class MeterConfig:
    site_id: str
    host: str
    power_w: RegisterSpec
    circuit_id: str | None = None
    port: int = 502
    unit: int = 1
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0
    max_backoff_s: float = 30.0
    max_power_w: float = 10_000_000.0
    max_current_a: float = 10_000.0
    current_l1_a: RegisterSpec | None = None
    current_l2_a: RegisterSpec | None = None
    current_l3_a: RegisterSpec | None = None

    @property
    def source(self) -> str:
        return f"modbus:{self.host}:{self.port}/{self.unit}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} unit {self.unit}"

    def registers(self) -> tuple[tuple[str, RegisterSpec], ...]:
        """The configured measurands in MEASURANDS order."""
        specs = (self.power_w, self.current_l1_a, self.current_l2_a, self.current_l3_a)
        return tuple((name, spec) for name, spec in zip(MEASURANDS, specs, strict=True) if spec is not None)


PRESETS: Final[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {
    "sdm630": {
        "power_w": {"address": 52, "type": "input", "data_type": "float32"},
        "current_l1_a": {"address": 6, "type": "input", "data_type": "float32"},
        "current_l2_a": {"address": 8, "type": "input", "data_type": "float32"},
        "current_l3_a": {"address": 10, "type": "input", "data_type": "float32"},
    },
    "em24": {
        "power_w": {"address": 0x28, "type": "holding", "data_type": "int32", "word_order": "little", "scale": 0.1},
        **{
            f"current_l{n}_a": {
                "address": address,
                "type": "holding",
                "data_type": "int32",
                "word_order": "little",
                "scale": 0.001,
            }
            for n, address in ((1, 0x0C), (2, 0x0E), (3, 0x10))
        },
    },
}

# --------------------------------------------------------------------------- configuration

_Enum = TypeVar("_Enum", bound=StrEnum)
_MISSING: Final = object()


class _Table:
    """Reads one TOML table, naming every key in its errors, and refuses keys nobody asked for."""

    def __init__(self, table: Mapping[str, Any], prefix: str = "") -> None:
        self._table, self._prefix, self._used = table, prefix, set[str]()

    def name(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def get(self, key: str) -> Any:
        self._used.add(key)
        return self._table.get(key, _MISSING)

    def integer(self, key: str, default: int | None, low: int, high: int) -> int:
        value = self.get(key)
        if value is _MISSING and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise MeterConfigError(f"{self.name(key)}: expected an integer from {low} to {high}, got {_show(value)}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise MeterConfigError(f"{self.name(key)}: expected a number from {low:g} to {high:g}, got {_show(value)}")
        return float(value)

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            raise MeterConfigError(f"{self.name(key)}: expected a non-empty string, got {_show(value)}")
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        return None if self._table.get(key, _MISSING) is _MISSING else self.text(key)

    def choice(self, key: str, enum: type[_Enum], default: _Enum | None) -> _Enum:
        value = self.get(key)
        if value is _MISSING and default is not None:
            return default
        try:
            return enum(value)
        except ValueError:
            raise MeterConfigError(
                f"{self.name(key)}: expected one of {', '.join(m.value for m in enum)}, got {_show(value)}"
            ) from None

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self._table if k not in self._used)
        if unknown:
            raise MeterConfigError(f"{self.name(unknown[0])}: unknown key")


def _show(value: Any) -> str:
    return "nothing (the key is required)" if value is _MISSING else repr(value)[:60]


def _register(name: str, table: Mapping[str, Any]) -> RegisterSpec:
    keys = _Table(table, f"registers.{name}.")
    data_type = keys.choice("data_type", DataType, None)
    address = keys.integer("address", None, 0, 0x10000 - _FORMATS[data_type][1])
    kind = keys.choice("type", RegisterKind, RegisterKind.INPUT)
    word_order = keys.choice("word_order", WordOrder, WordOrder.BIG)
    scale = keys.number("scale", 1.0, 1e-9, 1e9)  # positive: the direction is the sign's business
    sign = keys.choice("sign", Sign, Sign.IMPORT_POSITIVE)
    keys.finish()
    return RegisterSpec(address=address, data_type=data_type, kind=kind, word_order=word_order, scale=scale, sign=sign)


def parse_config(table: Mapping[str, Any]) -> MeterConfig:
    """A :class:`MeterConfig` from a parsed TOML table; :class:`MeterConfigError` names the bad key."""
    keys = _Table(table)
    site_id, circuit_id = keys.text("site_id"), keys.optional_text("circuit_id")
    try:  # the contract's own rules for ids, and the topic's
        BuildingLoad(site_id=site_id, ts=_EPOCH, power_w=0.0, circuit_id=circuit_id)
        load_topic(site_id)
    except ContractError as exc:
        raise MeterConfigError(str(exc)) from None
    host = keys.text("host")
    port = keys.integer("port", 502, 1, 65535)
    unit = keys.integer("unit", 1, 0, 255)
    poll_interval_s = keys.number("poll_interval_s", 1.0, 0.05, 3600.0)
    timeout_s = keys.number("timeout_s", 1.0, 0.05, 60.0)
    max_backoff_s = keys.number("max_backoff_s", max(30.0, poll_interval_s), poll_interval_s, 3600.0)
    max_power_w = keys.number("max_power_w", 10_000_000.0, 1.0, 1e12)
    max_current_a = keys.number("max_current_a", 10_000.0, 1.0, 1e9)
    preset_name = keys.optional_text("preset")
    if preset_name is not None and preset_name not in PRESETS:
        raise MeterConfigError(f"preset: expected one of {', '.join(PRESETS)}, got {preset_name!r}")
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in PRESETS.get(preset_name or "", {}).items()}
    own = keys.get("registers")
    if own is not _MISSING:
        if not isinstance(own, dict):
            raise MeterConfigError("registers: expected a table ([registers.power_w] ...)")
        for name, entry in own.items():
            if name not in MEASURANDS:
                raise MeterConfigError(f"registers.{name}: unknown measurand (expected one of {', '.join(MEASURANDS)})")
            if not isinstance(entry, dict):
                raise MeterConfigError(f"registers.{name}: expected a table")
            merged.setdefault(name, {}).update(entry)
    keys.finish()
    if "power_w" not in merged:
        raise MeterConfigError(f"registers.power_w: missing (required; or set preset to one of {', '.join(PRESETS)})")
    specs = {name: _register(name, merged[name]) for name in MEASURANDS if name in merged}
    return MeterConfig(
        site_id=site_id,
        circuit_id=circuit_id,
        host=host,
        port=port,
        unit=unit,
        poll_interval_s=poll_interval_s,
        timeout_s=timeout_s,
        max_backoff_s=max_backoff_s,
        max_power_w=max_power_w,
        max_current_a=max_current_a,
        power_w=specs["power_w"],
        current_l1_a=specs.get("current_l1_a"),
        current_l2_a=specs.get("current_l2_a"),
        current_l3_a=specs.get("current_l3_a"),
    )


def load_config(path: Path) -> MeterConfig:
    try:
        table = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise MeterConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MeterConfigError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise MeterConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(table)


# --------------------------------------------------------------------------- decoding (pure)


def decode_value(name: str, registers: Sequence[int], spec: RegisterSpec) -> float:
    """One measurand from its raw 16-bit registers, in the order read; scaled, import positive.

    :class:`MeterReadError` (kind ``implausible``) for a wrong register count or a non-finite value.
    """
    fmt, count = _FORMATS[spec.data_type]
    if len(registers) != count or any(not 0 <= word <= 0xFFFF for word in registers):
        raise MeterReadError(
            Failure.IMPLAUSIBLE, f"{name}: expected {count} 16-bit registers, got {list(registers)[:4]}"
        )
    words = registers if spec.word_order is WordOrder.BIG else list(reversed(registers))
    raw: float = struct.unpack(f">{fmt}", struct.pack(f">{count}H", *words))[0]
    value = raw * spec.scale
    if spec.sign is Sign.EXPORT_POSITIVE:
        value = -value
    if not math.isfinite(value):
        raise MeterReadError(Failure.IMPLAUSIBLE, f"{name}: the meter returned {value} (raw {raw})")
    return value + 0.0  # no negative zero


def decode_reading(config: MeterConfig, raw: Mapping[str, Sequence[int]], ts: datetime) -> BuildingLoad:
    """A :class:`BuildingLoad` from the raw registers of every configured measurand (pure)."""
    values: dict[str, float] = {}
    for name, spec in config.registers():
        value = decode_value(name, raw[name], spec)
        limit = config.max_power_w if name == "power_w" else config.max_current_a
        if abs(value) > limit:
            raise MeterReadError(
                Failure.IMPLAUSIBLE,
                f"{name}: {value:g} is beyond the plausible +/-{limit:g} "
                "(check the register map, data type and word order)",
            )
        values[name] = value
    return BuildingLoad(
        site_id=config.site_id, ts=utc(ts), circuit_id=config.circuit_id, source=config.source, **values
    )


# --------------------------------------------------------------------------- the reader


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MeterReader:
    """Polls one meter. ``read()`` once, or ``run()`` until ``stop`` is set; not thread-safe."""

    def __init__(self, config: MeterConfig, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config
        self._clock = clock
        self._client: AsyncModbusTcpClient | None = None
        self._failing: Failure | None = None  # the kind of the current failure; None while healthy
        self._failures = 0
        self._down_since = 0.0
        self.readings = 0

    async def read(self) -> BuildingLoad:
        """One reading, or :class:`MeterReadError`."""
        c = self.config
        # pymodbus bounds each request; this bounds the whole poll, whatever happens inside.
        budget = c.timeout_s * (len(c.registers()) + 1) + 1.0
        try:
            async with asyncio.timeout(budget):
                client = await self._connected()
                ts = self._clock()
                raw = {name: await self._registers(client, name, spec) for name, spec in c.registers()}
        except TimeoutError:
            self.close()
            raise MeterReadError(Failure.UNREACHABLE, f"no complete answer within {budget:g} s") from None
        return decode_reading(c, raw, ts)

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        from pymodbus.client import AsyncModbusTcpClient

        self.close()
        c = self.config
        # reconnect_delay=0: no reconnecting behind our back; retries=0: the backoff below is ours.
        client = AsyncModbusTcpClient(
            c.host, port=c.port, timeout=c.timeout_s, retries=0, reconnect_delay=0, name=f"meter-{c.site_id}"
        )
        started = asyncio.get_running_loop().time()
        if not await client.connect():
            client.close()
            if asyncio.get_running_loop().time() - started >= 0.9 * c.timeout_s:
                raise MeterReadError(Failure.UNREACHABLE, f"no connection within {c.timeout_s:g} s")
            raise MeterReadError(Failure.UNREACHABLE, "cannot connect (connection refused, or no route to the host)")
        self._client = client
        return client

    async def _registers(self, client: AsyncModbusTcpClient, name: str, spec: RegisterSpec) -> list[int]:
        from pymodbus.constants import ExcCodes
        from pymodbus.exceptions import ConnectionException, ModbusException

        c = self.config
        read = client.read_input_registers if spec.kind is RegisterKind.INPUT else client.read_holding_registers
        try:
            response = await read(spec.address, count=spec.count, device_id=c.unit)
        except (ConnectionException, OSError):
            self.close()
            raise MeterReadError(Failure.UNREACHABLE, "connection lost") from None
        except ModbusException:  # no answer (pymodbus's own timeout), or one that does not match the request
            self.close()  # a late answer must not be taken for the next request's
            raise MeterReadError(Failure.UNREACHABLE, f"no valid answer within {c.timeout_s:g} s") from None
        if response.isError():
            code = response.exception_code
            try:
                label = ExcCodes(code).name.lower()
            except ValueError:
                label = "unknown"
            raise MeterReadError(
                Failure.MODBUS_EXCEPTION,
                f"the meter answered Modbus exception {code} ({label}) to reading {name} "
                f"({spec.kind} register {spec.address})",
            )
        return list(response.registers)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def run(self, publish: Callable[[BuildingLoad], None], stop: asyncio.Event) -> None:
        """Poll every ``poll_interval_s`` until ``stop`` is set; back off while the meter fails."""
        c, loop = self.config, asyncio.get_running_loop()
        log.info(
            "meter %s: polling every %g s for site %s%s",
            c.where,
            c.poll_interval_s,
            c.site_id,
            f" circuit {c.circuit_id}" if c.circuit_id else "",
        )
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    reading = await self.read()
                except MeterReadError as exc:
                    self._note_failure(exc, started)
                    delay = min(c.max_backoff_s, c.poll_interval_s * 2.0 ** min(self._failures - 1, 20))
                else:
                    publish(reading)
                    self._note_success(reading, started)
                    delay = started + c.poll_interval_s - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except TimeoutError:
                        pass
        finally:
            self.close()

    def _note_failure(self, exc: MeterReadError, now: float) -> None:
        self._failures += 1
        if self._failing is None:
            self._down_since = now
        if exc.kind != self._failing:  # once per change of state, not per poll
            log.warning(
                "meter %s: %s. Publishing nothing for site %s until it answers (the site falls back "
                "to its safe cap once its last reading is older than its meter timeout); retrying with "
                "backoff up to %g s",
                self.config.where,
                exc,
                self.config.site_id,
                self.config.max_backoff_s,
            )
        self._failing = exc.kind

    def _note_success(self, reading: BuildingLoad, now: float) -> None:
        self.readings += 1
        if self._failing is not None:
            log.info(
                "meter %s: answering again after %d failed polls (%.0f s); first reading %g W",
                self.config.where,
                self._failures,
                now - self._down_since,
                reading.power_w,
            )
        elif self.readings == 1:
            log.info("meter %s: first reading %g W", self.config.where, reading.power_w)
        self._failing, self._failures = None, 0


# --------------------------------------------------------------------------- commands


def _client_id(config: MeterConfig) -> str:
    return f"flowbank-meter-{config.site_id}" + (f"-{config.circuit_id}" if config.circuit_id else "")


def _print_reading(reading: BuildingLoad) -> None:
    for name in ("site_id", "circuit_id", "ts", "power_w", "current_l1_a", "current_l2_a", "current_l3_a", "source"):
        value = getattr(reading, name)
        text = "-" if value is None else value.isoformat() if isinstance(value, datetime) else value
        print(f"{name} = {text}")
    print(f"topic = {load_topic(reading.site_id)}")


async def _read_once(config: MeterConfig) -> int:
    reader = MeterReader(config)
    try:
        reading = await reader.read()
    except MeterReadError as exc:
        print(f"flowbank meter: cannot read the meter at {config.where}: {exc}", file=sys.stderr)
        return 1
    finally:
        reader.close()
    _print_reading(reading)
    return 0


async def _poll_until_signalled(reader: MeterReader, publisher: EventPublisher) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await reader.run(publisher.publish, stop)


def run_meter(settings: Settings, config_path: Path, *, once: bool) -> int:
    """``flowbank meter``: exit 0 (stopped by a signal, or ``--once`` read), 1 (``--once`` failed), 2 (config)."""
    try:
        config = load_config(config_path)
    except MeterConfigError as exc:
        print(f"flowbank meter: bad config {config_path}: {exc}", file=sys.stderr)
        return 2
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # pymodbus logs every failed connect and timeout; the reader reports each change of state.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if once:
        return asyncio.run(_read_once(config))
    client_id = _client_id(config)
    publisher = EventPublisher(
        settings.mqtt,
        client_id=client_id,
        spool_dir=settings.data_dir / "spool" / client_id,
        memory_limit=10_000,
        spool_max_bytes=64 << 20,
    )
    publisher.start()
    reader = MeterReader(config)
    try:
        asyncio.run(_poll_until_signalled(reader, publisher))
    finally:
        publisher.stop(timeout=10.0)
    log.info("meter %s: stopped after %d readings", config.where, reader.readings)
    return 0


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="load_action", metavar="ACTION", required=True)
    p = actions.add_parser("publish", help="publish one building-load reading now (demos, benchmarks)")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--power-w", type=float, required=True, help="building power in W, import positive")
    p.add_argument("--circuit", help="circuit id (default: the main breaker)")
    for phase in (1, 2, 3):
        p.add_argument(f"--l{phase}-a", type=float, help=f"current on L{phase} in A")
    p.add_argument("--source", default="manual", help="source label (default: manual)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker's PUBACK (default 10)")


def run_load(settings: Settings, args: argparse.Namespace, *, clock: Callable[[], datetime] = _utc_now) -> int:
    """``flowbank load publish``: 0 when the broker acknowledged the reading, 1 when not, 2 for a bad value."""
    try:
        reading = BuildingLoad(
            site_id=args.site,
            ts=clock(),
            power_w=args.power_w,
            circuit_id=args.circuit,
            current_l1_a=args.l1_a,
            current_l2_a=args.l2_a,
            current_l3_a=args.l3_a,
            source=args.source,
        )
        topic = load_topic(reading.site_id)
    except ContractError as exc:
        print(f"flowbank load: {exc}", file=sys.stderr)
        return 2
    # A private, throw-away spool: an unacknowledged reading is reported, never sent later (stale).
    with tempfile.TemporaryDirectory(prefix="flowbank-load-") as spool:
        publisher = EventPublisher(
            settings.mqtt, client_id=f"flowbank-load-{secrets.token_hex(4)}", spool_dir=Path(spool)
        )
        publisher.start()
        publisher.publish(reading)
        publisher.stop(timeout=args.timeout)
    if publisher.stats().published_acked != 1:
        print(
            f"flowbank load: {settings.mqtt.url} did not acknowledge the reading within {args.timeout:g} s; "
            "it was not published",
            file=sys.stderr,
        )
        return 1
    print(f"published {reading.power_w:g} W for site {reading.site_id} on {topic}")
    return 0
