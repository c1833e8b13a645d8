"""Modes: the words every front end shows, the policy, Boost's confirmation and the ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control.contract import ChargingMode
from control.modes import (
    BOOST_WARNING,
    MODE_DESCRIPTIONS,
    EtaStatus,
    ModeChange,
    ModeChangeStatus,
    ModePolicy,
    PriorityClass,
    describe,
    estimate_eta,
    priority_class,
    validate_mode_change,
)
from control.site import SiteModelError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ECO, BOOST, STANDARD = ChargingMode.ECO, ChargingMode.BOOST, ChargingMode.STANDARD


def test_every_mode_has_plain_english_words() -> None:
    assert set(MODE_DESCRIPTIONS) == set(ChargingMode)
    for mode, words in MODE_DESCRIPTIONS.items():
        assert words.mode is mode and words.title and words.subtext and len(words.description) > 40
    assert [d.title for d in MODE_DESCRIPTIONS.values()] == ["Standard", "Eco", "Boost"]


def test_only_boost_warns_about_peak_demand() -> None:
    assert describe(BOOST).warning == BOOST_WARNING and "peak" in BOOST_WARNING
    assert describe(BOOST).requires_confirmation
    assert not describe(STANDARD).requires_confirmation and not describe(ECO).requires_confirmation


@pytest.mark.parametrize(
    ("mode", "at_risk", "expected"),
    [
        (BOOST, False, PriorityClass.BOOST),
        (BOOST, True, PriorityClass.BOOST),
        (STANDARD, True, PriorityClass.DEADLINE),
        (ECO, True, PriorityClass.DEADLINE),
        (STANDARD, False, PriorityClass.STANDARD),
        (ECO, False, PriorityClass.ECO),
    ],
)
def test_priority_classes(mode: ChargingMode, at_risk: bool, expected: PriorityClass) -> None:
    assert priority_class(mode, at_risk) is expected


def test_priority_ranks_are_in_policy_order() -> None:
    assert sorted(PriorityClass, key=lambda c: c.rank) == [
        PriorityClass.BOOST,
        PriorityClass.DEADLINE,
        PriorityClass.STANDARD,
        PriorityClass.ECO,
    ]


@pytest.mark.parametrize(
    ("policy", "mode", "hardware", "at_risk", "expected"),
    [
        (ModePolicy(), ECO, 32, False, 16),
        (ModePolicy(), ECO, 10, False, 6),  # never below the minimum current
        (ModePolicy(eco_fraction=0.75, eco_max_a=20), ECO, 32, False, 20),
        (ModePolicy(), ECO, 32, True, None),  # a deadline at risk lifts the Eco cap
        (ModePolicy(), STANDARD, 32, False, None),
        (ModePolicy(), BOOST, 32, False, None),
    ],
)
def test_mode_caps(
    policy: ModePolicy, mode: ChargingMode, hardware: float, at_risk: bool, expected: float | None
) -> None:
    assert policy.mode_cap_a(mode, hardware, 6, at_risk) == expected


@pytest.mark.parametrize("kwargs", [{"eco_fraction": 0}, {"eco_fraction": 1.5}, {"eco_max_a": -1}])
def test_bad_mode_policy(kwargs: dict[str, float]) -> None:
    with pytest.raises(SiteModelError):
        ModePolicy(**kwargs)


# --------------------------------------------------------------------------- mode change requests


def request(mode: str, confirmed: bool = False, current: ChargingMode = STANDARD) -> ModeChange:
    return ModeChange(
        "CP-1",
        1,
        mode,
        requested_by="user-7",
        requested_at=T0,
        current_mode=current,
        confirmed=confirmed,
        session_id="sess-1",
    )


@pytest.mark.parametrize(
    ("req", "status", "mode", "message"),
    [
        (request("boost"), ModeChangeStatus.CONFIRMATION_REQUIRED, STANDARD, "Boost needs your confirmation"),
        (request("boost", confirmed=True), ModeChangeStatus.ACCEPTED, BOOST, "Switched to Boost."),
        (request("Eco"), ModeChangeStatus.ACCEPTED, ECO, "Switched to Eco."),
        (request("eco", current=ECO), ModeChangeStatus.UNCHANGED, ECO, "Already charging in Eco."),
        (request("turbo"), ModeChangeStatus.REJECTED, STANDARD, "'turbo' is not a charging mode; choose Standard, Eco"),
        (request("standard", current=BOOST), ModeChangeStatus.ACCEPTED, STANDARD, "Switched to Standard."),
    ],
)
def test_mode_change_requests(req: ModeChange, status: ModeChangeStatus, mode: ChargingMode, message: str) -> None:
    result = validate_mode_change(req)
    assert (result.status, result.mode) == (status, mode)
    assert result.message.startswith(message)
    assert result.accepted == (status in (ModeChangeStatus.ACCEPTED, ModeChangeStatus.UNCHANGED))
    assert (result.record.status, result.record.to_mode, result.record.ts) == (status, mode, T0)


def test_a_confirmed_boost_is_recorded_with_the_warning_shown() -> None:
    record = validate_mode_change(request("boost", confirmed=True)).record
    assert (record.charger_id, record.connector_id, record.session_id, record.requested_by) == (
        "CP-1",
        1,
        "sess-1",
        "user-7",
    )
    assert (record.from_mode, record.to_mode, record.confirmed, record.warning_shown) == (
        STANDARD,
        BOOST,
        True,
        BOOST_WARNING,
    )


def test_a_refused_boost_is_recorded_too() -> None:
    record = validate_mode_change(request("boost")).record
    assert (record.status, record.to_mode, record.confirmed, record.warning_shown) == (
        ModeChangeStatus.CONFIRMATION_REQUIRED,
        STANDARD,
        False,
        None,
    )


def test_a_naive_request_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="UTC"):
        ModeChange("CP-1", 1, "eco", "u", datetime(2024, 5, 1))  # noqa: DTZ001 - the point of the test


# --------------------------------------------------------------------------- ETA


def test_eta_below_the_taper_is_linear() -> None:
    # 40 kWh * 50 % = 20 kWh at 16 A * 3 * 230 V * 0.9 = 9936 W -> 2.0129 h
    eta = estimate_eta(20, 70, 40_000, 16, 3, now=T0)
    assert eta.status is EtaStatus.ESTIMATED and eta.known
    assert eta.duration_s == round(20_000 / 9936 * 3600)
    assert eta.finish_at == T0 + timedelta(seconds=eta.duration_s)
    assert eta.text == "About 2 h 1 min to 70 %"
    assert (eta.power_w, eta.energy_wh) == (11_040, 20_000)


def test_eta_tapers_above_80_percent() -> None:
    to_80 = estimate_eta(60, 80, 40_000, 16, 3, now=T0).duration_s
    to_100 = estimate_eta(60, 100, 40_000, 16, 3, now=T0).duration_s
    assert to_80 is not None and to_100 is not None
    assert to_100 - to_80 > to_80  # the last 20 % take longer than the 20 % before them
    untapered_80_100 = 8_000 / 9936 * 3600
    assert untapered_80_100 < to_100 - to_80 < untapered_80_100 / 0.3


def test_eta_from_inside_the_taper() -> None:
    whole = estimate_eta(80, 100, 40_000, 16, 3, now=T0).duration_s
    first, second = (
        estimate_eta(80, 90, 40_000, 16, 3, now=T0).duration_s,
        estimate_eta(90, 100, 40_000, 16, 3, now=T0).duration_s,
    )
    assert whole is not None and first is not None and second is not None
    assert abs(whole - (first + second)) <= 1
    assert second > first


def test_more_current_and_more_phases_finish_sooner() -> None:
    eco = estimate_eta(20, 80, 60_000, 8, 3, now=T0).duration_s
    boost = estimate_eta(20, 80, 60_000, 32, 3, now=T0).duration_s
    single = estimate_eta(20, 80, 60_000, 32, 1, now=T0).duration_s
    assert eco is not None and boost is not None and single is not None
    assert boost < single < eco


@pytest.mark.parametrize(
    ("soc", "battery", "current", "status", "text"),
    [
        (20, None, 16, EtaStatus.UNKNOWN_BATTERY, "ETA unknown: battery size not known"),
        (None, 40_000, 16, EtaStatus.UNKNOWN_SOC, "ETA unknown: the car does not report its charge level"),
        (20, 40_000, 0, EtaStatus.NOT_CHARGING, "ETA unknown: not charging at the moment"),
        (85, 40_000, 16, EtaStatus.REACHED, "Reached 80 %"),
    ],
)
def test_eta_says_why_it_cannot_estimate(
    soc: float | None, battery: float | None, current: float, status: EtaStatus, text: str
) -> None:
    eta = estimate_eta(soc, 80, battery, current, 3, now=T0)
    assert (eta.status, eta.text) == (status, text)
    assert eta.known == (status is EtaStatus.REACHED)


def test_eta_short_durations_read_in_minutes() -> None:
    assert estimate_eta(79, 80, 40_000, 32, 3, now=T0).text == "About 1 min to 80 %"


def test_eta_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="UTC"):
        estimate_eta(20, 80, 40_000, 16, 3, now=datetime(2024, 5, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(SiteModelError, match="phases must be 1, 2 or 3"):
        estimate_eta(20, 80, 40_000, 16, 4, now=T0)
