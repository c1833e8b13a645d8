"""The dashboards' shell: sign-in gate, role-scoped navigation, the location context."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from portal_fixtures import CHARGERS
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.integration


def test_nobody_signed_in_sees_the_sign_in_screen_and_nothing_else(run_app: Callable[..., AppTest]) -> None:
    at = run_app(None)
    assert not at.exception
    assert at.title[0].value == "FlowBankOS"
    assert not at.sidebar.selectbox  # no location switcher: nothing is loaded for nobody


def test_a_member_sees_only_their_charger(run_app: Callable[..., AppTest]) -> None:
    at = run_app("member")
    assert not at.exception, at.exception
    charger = at.sidebar.selectbox(key="ctx_charger")
    assert charger.options == ["Bay 1 · Charging"]


def test_a_fleet_manager_sees_every_charger_of_their_organisations_site(run_app: Callable[..., AppTest]) -> None:
    at = run_app("fleet_manager")
    assert not at.exception, at.exception
    assert len(at.sidebar.selectbox(key="ctx_charger").options) == len(CHARGERS)


def test_an_owner_sees_the_two_chargers_they_own(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner")
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="ctx_charger").options == ["Bay 1 · Charging", "Bay 2 · Waiting for vehicle"]
