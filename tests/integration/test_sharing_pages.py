"""The Sharing & reservations page and the accept-invite page, run with AppTest as the demo users."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import pytest
from dbutil import Db as _Db
from portal_fixtures import EMAIL
from streamlit.testing.v1 import AppTest

from dashboards.access import Access
from dashboards.sharing_service import SharingService
from flowbank.config import PROJECT_ROOT

pytestmark = pytest.mark.integration

INVITE_PAGE = str(PROJECT_ROOT / "dashboards" / "pages" / "invite.py")


def _service(dsn: str) -> tuple[Access, SharingService]:
    counter = itertools.count(1)
    access = Access(_Db(dsn), clock=lambda: datetime.now(UTC), new_id=lambda: f"u-page-{next(counter)}")
    return access, SharingService(access, base_url="http://dash.test:8501")


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [s.value for s in at.subheader] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


def test_the_owner_sees_members_invitations_and_the_schedule(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner", page="pages/sharing.py")
    assert not at.exception, at.exception
    text = _texts(at)
    assert "Authorized users" in text and "**Max Member**" in text and "**Olivia Owner** (you)" in text
    assert at.button(key="share_remove_demo-member")
    assert at.button(key="share_cap_save")
    assert "No reservations in the next 7 days." in text or at.get("arrow_vega_lite_chart")
    assert "No sessions in this period." in text  # usage: explicit, not an empty table

    at.text_input(key="share_invite_email").input("page.invitee@example.com")
    next(b for b in at.button if b.label == "Send invitation").click().run()
    assert not at.exception, at.exception
    assert any("/invite?token=" in c.value for c in at.code)
    assert "page.invitee@example.com" in _texts(at)
    assert at.get("image")  # the QR code


def test_a_member_reserves_but_sees_no_management_controls(run_app: Callable[..., AppTest]) -> None:
    at = run_app("member", page="pages/sharing.py")
    assert not at.exception, at.exception
    text = _texts(at)
    assert "Authorized users" not in text and "Pending invitations" not in text
    keys = {b.key for b in at.button}
    assert not any(k and (k.startswith("share_remove_") or k.startswith("share_resend_")) for k in keys)
    assert "share_cap_save" not in keys
    assert not [t for t in at.text_input if t.key == "share_invite_email"]
    assert "You share this charger with its owner (Olivia Owner)" in text
    assert "Only your own sessions are shown" in text or "No sessions in this period." in text

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)  # a fixed slot: no hour boundary between the runs
    at.date_input(key="share_res_day").set_value(tomorrow)
    at.time_input(key="share_res_start").set_value(time(10, 0))
    at.selectbox(key="share_res_hours").set_value(1.0)
    next(b for b in at.button if b.label == "Reserve").click().run()
    assert not at.exception, at.exception
    assert any("Reserved" in s.value for s in at.success), _texts(at)
    # The owner books the same slot: the conflict is shown with what to do instead.
    owner = run_app("owner", page="pages/sharing.py")
    owner.date_input(key="share_res_day").set_value(tomorrow)
    owner.time_input(key="share_res_start").set_value(time(10, 30))
    owner.selectbox(key="share_res_hours").set_value(1.0)
    next(b for b in owner.button if b.label == "Reserve").click().run()
    assert not owner.exception, owner.exception
    assert any("overlaps Max Member's reservation" in w.value for w in owner.warning), _texts(owner)
    labels = [b.label for b in owner.button if b.key and b.key.startswith("share_opt_")]
    assert any(label.startswith("Move to the next free slot") for label in labels)
    assert any(label.startswith("Override: cancel Max Member's reservation") for label in labels)
    owner.button(key="share_opt_move").click().run()
    assert any("Reserved" in s.value for s in owner.success), _texts(owner)


def _open_invite(email: str, token: str | None) -> AppTest:
    at = AppTest.from_file(INVITE_PAGE, default_timeout=30)
    at.user = {"is_logged_in": True, "email": email, "name": email.split("@")[0].title(), "sub": f"sub-{email}",
               "iss": "http://oidc.test"}
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def test_a_new_user_without_roles_accepts_an_invitation(run_app: Callable[..., AppTest], portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    sent = service.invite(access.principal("demo-owner"), "SIM-0002", "Brand.New@example.com")
    token = sent.link.split("token=", 1)[1]

    at = _open_invite("intruder@example.com", token)
    assert not at.exception, at.exception
    assert any("but you are signed in as intruder@example.com" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "invite_accept"]

    at = _open_invite("brand.new@example.com", token)
    assert not at.exception, at.exception
    assert "**Olivia Owner** invited you to share the charger **Bay 2**" in _texts(at)
    at.button(key="invite_accept").click().run()
    assert not at.exception, at.exception
    assert any("now share as member **Bay 2**" in s.value for s in at.success), _texts(at)
    newcomer = access.sign_in(email="brand.new@example.com", display_name="x", issuer="http://oidc.test",
                              subject="sub-brand.new@example.com")
    assert access.visible_ids(newcomer) == ["SIM-0002"]
    service.remove_member(access.principal("demo-owner"), "SIM-0002", newcomer.user_id)


def test_the_invite_page_without_or_with_a_broken_token_explains(run_app: Callable[..., AppTest]) -> None:
    at = _open_invite(EMAIL["member"], None)
    assert not at.exception, at.exception
    assert any("Open the invitation link" in i.value for i in at.info)
    at = _open_invite(EMAIL["member"], "cut-off")
    assert any("incomplete or damaged" in e.value for e in at.error)
