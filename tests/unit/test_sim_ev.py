"""EV physics and connector flow: taper, phases, minimum current, DC."""

from __future__ import annotations

import pytest

from ingest.sim import ev
from ingest.sim.ev import EvModel
from ingest.sim.model import ChargerKind, Hardware, compute_flow

CAR_3PH = EvModel("test-3ph", battery_wh=60_000, ac_phases=3, ac_max_current_a=16, dc_max_power_w=100_000)
CAR_1PH = EvModel("test-1ph", battery_wh=40_000, ac_phases=1, ac_max_current_a=32, dc_max_power_w=50_000)


@pytest.mark.parametrize(("soc", "expected"), [(0.0, 1.0), (80.0, 1.0), (90.0, 0.54), (99.999, 0.08), (100.0, 0.0)])
def test_taper_is_flat_then_linear_then_zero(soc: float, expected: float) -> None:
    assert ev.taper_fraction(soc, 80.0, 0.08) == pytest.approx(expected, abs=1e-3)


def test_ac_current_tapers_above_the_taper_start() -> None:
    assert ev.ac_current_limit_a(CAR_3PH, 50.0) == 16.0
    assert ev.ac_current_limit_a(CAR_3PH, 90.0) < 16.0
    assert ev.ac_current_limit_a(CAR_3PH, 100.0) == 0.0
    # DC tapers earlier than AC
    assert ev.dc_power_limit_w(CAR_3PH, 70.0) < CAR_3PH.dc_max_power_w
    assert ev.ac_current_limit_a(CAR_3PH, 70.0) == CAR_3PH.ac_max_current_a


def test_soc_rises_by_energy_times_efficiency_and_stops_at_full() -> None:
    assert ev.soc_after(CAR_3PH, 50.0, 6_000.0) == pytest.approx(50.0 + 6_000 * 0.92 / 60_000 * 100)
    assert ev.soc_after(CAR_3PH, 99.9, 10_000.0) == 100.0


def test_three_phase_charger_with_three_phase_car() -> None:
    flow = compute_flow(Hardware(ChargerKind.AC3, max_current_a=32), 32.0, ev=CAR_3PH, soc=50, accepting=True)
    assert flow.currents_a == (16.0, 16.0, 16.0)  # the car's on-board charger is the limit
    assert flow.power_w == pytest.approx(16 * 230 * 3)
    assert flow.offered_a == 32.0


def test_single_phase_car_on_three_phase_charger_draws_on_l1_only() -> None:
    flow = compute_flow(Hardware(ChargerKind.AC3, max_current_a=16), 16.0, ev=CAR_1PH, soc=50, accepting=True)
    assert flow.currents_a == (16.0, 0.0, 0.0)
    assert flow.power_w == pytest.approx(16 * 230)


def test_profile_phase_limit_restricts_phases() -> None:
    flow = compute_flow(Hardware(ChargerKind.AC3), 16.0, ev=CAR_3PH, soc=50, accepting=True, phase_limit=1)
    assert flow.currents_a == (16.0, 0.0, 0.0)


def test_below_six_amps_no_ac_charging() -> None:
    flow = compute_flow(Hardware(ChargerKind.AC3), 5.9, ev=CAR_3PH, soc=50, accepting=True)
    assert flow.power_w == 0.0 and not flow.flowing
    assert flow.offered_a == 5.9


def test_offer_is_capped_by_hardware_and_nothing_flows_when_car_refuses() -> None:
    hw = Hardware(ChargerKind.AC1, max_current_a=16)
    assert compute_flow(hw, 63.0, ev=CAR_1PH, soc=50, accepting=True).currents_a == (16.0,)
    assert compute_flow(hw, 16.0, ev=CAR_1PH, soc=50, accepting=False).power_w == 0.0


def test_dc_power_is_min_of_offer_charger_and_car() -> None:
    hw = Hardware(ChargerKind.DC, max_power_w=50_000)
    flow = compute_flow(hw, 80_000.0, ev=CAR_3PH, soc=20, accepting=True)
    assert flow.power_w == 50_000.0
    assert flow.currents_a[0] == pytest.approx(50_000 / ev.dc_voltage_v(20))
    assert compute_flow(hw, 20_000.0, ev=CAR_3PH, soc=20, accepting=True).power_w == 20_000.0
    no_dc = EvModel("phev", battery_wh=13_000, ac_phases=1, ac_max_current_a=16, dc_max_power_w=0)
    assert compute_flow(hw, 50_000.0, ev=no_dc, soc=20, accepting=True).power_w == 0.0
