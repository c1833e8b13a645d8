"""Energy tariffs (flat or time-of-use, effective-dated) and the cost of a meter curve. Pure.

Model. A :class:`Tariff` has a currency, a site time zone and one or more :class:`TariffVersion`
s, each in force from its ``effective_from`` (UTC) until the next one, so history is costed at
the price of its time. A version has a base net price per kWh and optional time-of-use
:class:`PriceWindow` s (weekday/local-time windows with the DST policy of
:mod:`control.schedules`); the first window that contains an instant sets its price, else the
base price applies. A flat tariff is a version without windows. Prices are net (VAT excluded);
the VAT rate belongs to the version, because rates change over time too. Before the first
version there is no price: that energy is reported as uncosted, never priced at zero.

Cost of a curve. :func:`cost_of_curve` takes cumulative register samples ``(ts, energy_wh)`` and
spreads each step's energy linearly in time over the price intervals it crosses, so a session
across a price change (a window edge or a new version) is split where the price changed.

Money and rounding. Money and energy are :class:`decimal.Decimal`. The register values (via
their shortest repr) and the energies interpolated at price edges are quantized to 1 µWh
(:data:`ENERGY_QUANTUM_WH`), so line energies are differences of quantized readings: they add up
exactly to the curve's energy, and each line's ``net`` (energy times price, unrounded) is exact
and sums exactly in Decimal's default 28-digit context. The
totals are rounded as on an invoice with one line per VAT rate: per rate, the exact line amounts
are summed and rounded half-up to the currency's minor unit (:data:`MINOR_UNITS`, 2 decimals by
default), and that net times the rate, rounded half-up, is its VAT; ``net`` and ``vat`` are the
sums over the rates (one rate in the usual case) and ``gross = net + vat``. Lines are not
rounded; a report rounds them for display only.

No tariff. ``cost_of_curve(None, ...)`` returns a :class:`Cost` with status ``NO_TARIFF``, no
amounts and the call to action :data:`ADD_TARIFF_MESSAGE`; energy outside every version gives
status ``PARTIAL`` with ``uncosted_energy_wh`` set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from enum import StrEnum
from itertools import pairwise
from typing import Final

from control.contract import utc
from control.schedules import WeeklyWindow, window_occurrences, zone_of

ADD_TARIFF_MESSAGE: Final = "Add tariff to compute cost"
MINOR_UNITS: Final[dict[str, int]] = {"JPY": 0, "KRW": 0, "ISK": 0, "HUF": 2, "BHD": 3, "KWD": 3}
ENERGY_QUANTUM_WH: Final = Decimal("0.000001")
_EXACT: Final = Context(prec=50)
_WH_PER_KWH: Final = Decimal(1000)
_TICK: Final = timedelta(microseconds=1)


class TariffError(ValueError):
    """An invalid tariff or meter curve (unsorted versions, negative VAT, register going backwards)."""


@dataclass(frozen=True, slots=True)
class PriceWindow:
    """A time-of-use window and its net price per kWh, e.g. "off-peak" 23:00-06:00 at 0.22."""

    window: WeeklyWindow
    price_per_kwh: Decimal
    label: str

    def __post_init__(self) -> None:
        if not isinstance(self.price_per_kwh, Decimal) or not self.price_per_kwh.is_finite():
            raise TariffError("price_per_kwh must be a finite Decimal")


@dataclass(frozen=True, slots=True)
class TariffVersion:
    """The prices in force from ``effective_from`` (UTC) until the next version."""

    effective_from: datetime
    base_price_per_kwh: Decimal
    vat_rate: Decimal  # 0.19 for 19 %
    windows: tuple[PriceWindow, ...] = ()  # first match wins; none: a flat tariff
    base_label: str = "standard"

    def __post_init__(self) -> None:
        utc(self.effective_from)
        if not isinstance(self.base_price_per_kwh, Decimal) or not self.base_price_per_kwh.is_finite():
            raise TariffError("base_price_per_kwh must be a finite Decimal")
        if not isinstance(self.vat_rate, Decimal) or not Decimal(0) <= self.vat_rate < Decimal(1):
            raise TariffError(f"vat_rate must be a Decimal fraction in [0, 1), got {self.vat_rate!r}")


@dataclass(frozen=True, slots=True)
class Tariff:
    tariff_id: str
    currency: str  # ISO 4217, e.g. "EUR"
    zone: str  # the site's IANA zone; price windows are local time
    versions: tuple[TariffVersion, ...]

    def __post_init__(self) -> None:
        if not self.tariff_id:
            raise TariffError("tariff_id must be a non-empty string")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise TariffError(f"currency must be an ISO 4217 code like 'EUR', got {self.currency!r}")
        zone_of(self.zone)
        if not self.versions:
            raise TariffError("a tariff needs at least one version")
        for before, after in pairwise(self.versions):
            if after.effective_from <= before.effective_from:
                raise TariffError("versions must be in strictly increasing effective_from order")


def flat_tariff(
    tariff_id: str, currency: str, zone: str, price_per_kwh: Decimal, vat_rate: Decimal, effective_from: datetime
) -> Tariff:
    """A one-version tariff with a single price."""
    return Tariff(tariff_id, currency, zone, (TariffVersion(effective_from, price_per_kwh, vat_rate),))


@dataclass(frozen=True, slots=True)
class Price:
    """The net price per kWh in force at an instant, and where it comes from."""

    price_per_kwh: Decimal
    vat_rate: Decimal
    currency: str
    label: str  # the window's label or the version's base label
    effective_from: datetime  # identifies the version

    @property
    def gross_price_per_kwh(self) -> Decimal:
        with localcontext(_EXACT):
            return self.price_per_kwh * (1 + self.vat_rate)


@dataclass(frozen=True, slots=True)
class PriceInterval:
    """``[start, end)`` in UTC at one price."""

    start: datetime
    end: datetime
    price: Price


def _version_index(tariff: Tariff, instant: datetime) -> int | None:
    found = None
    for index, version in enumerate(tariff.versions):
        if version.effective_from <= instant:
            found = index
    return found


def _price_in_version(tariff: Tariff, version: TariffVersion, instant: datetime) -> Price:
    zone = zone_of(tariff.zone)
    for price_window in version.windows:
        for _, interval in window_occurrences(price_window.window, zone, instant, instant + _TICK):
            if interval.contains(instant):
                return Price(
                    price_window.price_per_kwh,
                    version.vat_rate,
                    tariff.currency,
                    price_window.label,
                    version.effective_from,
                )
    return Price(
        version.base_price_per_kwh, version.vat_rate, tariff.currency, version.base_label, version.effective_from
    )


def price_at(tariff: Tariff, instant: datetime) -> Price | None:
    """The price in force at ``instant``; None before the tariff's first version."""
    instant = utc(instant)
    index = _version_index(tariff, instant)
    return None if index is None else _price_in_version(tariff, tariff.versions[index], instant)


def price_intervals(tariff: Tariff, start: datetime, end: datetime) -> tuple[PriceInterval, ...]:
    """The prices over ``[start, end)``, split at window edges and version changes, in time order.

    Adjacent intervals with the same price, label and version are merged. The part before the
    first version is absent (no price), so the intervals may start after ``start``.
    """
    start, end = utc(start), utc(end)
    if end <= start:
        return ()
    zone = zone_of(tariff.zone)
    cuts = {start, end}
    for index, version in enumerate(tariff.versions):
        version_end = tariff.versions[index + 1].effective_from if index + 1 < len(tariff.versions) else end
        lo, hi = max(start, version.effective_from), min(end, version_end)
        if lo >= hi:
            continue
        cuts.add(lo)
        for price_window in version.windows:
            for _, interval in window_occurrences(price_window.window, zone, lo, hi):
                cuts.update(t for t in (interval.start, interval.end) if lo < t < hi)
    result: list[PriceInterval] = []
    for lo, hi in pairwise(sorted(cuts)):
        price = price_at(tariff, lo)
        if price is None:
            continue
        if result and result[-1].end == lo and result[-1].price == price:
            result[-1] = PriceInterval(result[-1].start, hi, price)
        else:
            result.append(PriceInterval(lo, hi, price))
    return tuple(result)


class CostStatus(StrEnum):
    COSTED = "costed"  # every watt-hour priced
    PARTIAL = "partial"  # some energy fell before the first tariff version: see uncosted_energy_wh
    NO_TARIFF = "no_tariff"  # no tariff at all: show ADD_TARIFF_MESSAGE, never a zero


@dataclass(frozen=True, slots=True)
class CostLine:
    """The energy of one price interval (clipped to the curve) and its exact, unrounded net amount."""

    start: datetime
    end: datetime
    energy_wh: Decimal
    price: Price
    net: Decimal


@dataclass(frozen=True, slots=True)
class Cost:
    status: CostStatus
    currency: str | None
    net: Decimal | None  # rounded to the minor unit; None when NO_TARIFF
    vat: Decimal | None
    gross: Decimal | None
    energy_wh: Decimal  # the whole curve's energy
    uncosted_energy_wh: Decimal  # energy with no price (before the first version, or no tariff)
    lines: tuple[CostLine, ...]
    message: str | None = None  # what to tell the user when not fully costed


def _minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))


def _round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(_minor_unit(currency), rounding=ROUND_HALF_UP)


def _micros(instant: datetime) -> int:
    delta = instant - datetime(1970, 1, 1, tzinfo=instant.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _checked_curve(curve: Sequence[tuple[datetime, float]]) -> list[tuple[datetime, Decimal]]:
    points: list[tuple[datetime, Decimal]] = []
    for ts, wh in curve:
        ts = utc(ts)
        energy = Decimal(repr(float(wh)))
        if not energy.is_finite():
            raise TariffError(f"energy at {ts} is not finite")
        energy = energy.quantize(ENERGY_QUANTUM_WH)
        if points:
            prev_ts, prev_wh = points[-1]
            if ts < prev_ts or (ts == prev_ts and energy != prev_wh):
                raise TariffError(f"samples must be in time order with one reading per instant (at {ts})")
            if energy < prev_wh:
                raise TariffError(f"the register went backwards at {ts} ({prev_wh} -> {energy} Wh)")
            if ts == prev_ts:
                continue
        points.append((ts, energy))
    return points


def _energy_at(points: list[tuple[datetime, Decimal]], index: int, instant: datetime) -> Decimal:
    """The cumulative energy at ``instant`` inside step ``index`` (linear in time)."""
    (t0, e0), (t1, e1) = points[index], points[index + 1]
    if instant <= t0:
        return e0
    if instant >= t1:
        return e1
    share = (e1 - e0) * Decimal(_micros(instant) - _micros(t0)) / Decimal(_micros(t1) - _micros(t0))
    return (e0 + share).quantize(ENERGY_QUANTUM_WH)


def _cumulative(points: list[tuple[datetime, Decimal]], times: list[datetime], instant: datetime) -> Decimal:
    index = bisect_left(times, instant)  # the first sample at or after instant
    if index >= len(points):
        return points[-1][1]
    return _energy_at(points, max(index - 1, 0), instant)


def cost_of_curve(tariff: Tariff | None, curve: Sequence[tuple[datetime, float]]) -> Cost:
    """The cost of the energy in a cumulative meter curve ``[(ts, energy_wh), ...]`` under ``tariff``.

    Samples must be in time order with a non-decreasing register (the dataflow's cleaned curve);
    otherwise :class:`TariffError`. See the module docstring for splitting and rounding.
    """
    with localcontext(_EXACT):
        points = _checked_curve(curve)
        total = points[-1][1] - points[0][1] if points else Decimal(0)
        if tariff is None:
            return Cost(CostStatus.NO_TARIFF, None, None, None, None, total, total, (), ADD_TARIFF_MESSAGE)
        lines: list[CostLine] = []
        times = [ts for ts, _ in points]
        if len(points) >= 2:
            for interval in price_intervals(tariff, points[0][0], points[-1][0]):
                energy = _cumulative(points, times, interval.end) - _cumulative(points, times, interval.start)
                net = energy / _WH_PER_KWH * interval.price.price_per_kwh
                lines.append(CostLine(interval.start, interval.end, energy, interval.price, net))
        costed = sum((line.energy_wh for line in lines), Decimal(0))
        uncosted = total - costed
        net_total = vat_total = Decimal(0)
        for rate in sorted({line.price.vat_rate for line in lines}):
            net_at_rate = _round_money(
                sum((ln.net for ln in lines if ln.price.vat_rate == rate), Decimal(0)), tariff.currency
            )
            net_total += net_at_rate
            vat_total += _round_money(net_at_rate * rate, tariff.currency)
        net_total = _round_money(net_total, tariff.currency)  # gives "0.00" rather than "0" when there are no lines
        if uncosted > 0:
            status, message = CostStatus.PARTIAL, f"{uncosted} Wh fall before the tariff's first version"
        else:
            status, message = CostStatus.COSTED, None
        return Cost(
            status, tariff.currency, net_total, vat_total, net_total + vat_total, total, uncosted, tuple(lines), message
        )
