"""The Sharing & reservations page and the accept-invite page, run with AppTest as the demo users."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
import pytest
from dbutil import Db as _Db
from portal_fixtures import APP, EMAIL
from streamlit.testing.v1 import AppTest

from control.sharing import token_digest
from dashboards import invite_flow
from dashboards.access import Access
from dashboards.invite_links import PendingInvites, PendingLink
from dashboards.sharing_service import SharingService
from flowbank.config import PROJECT_ROOT
from warehouse import sharing_store

pytestmark = pytest.mark.integration

INVITE_PAGE = str(PROJECT_ROOT / "dashboards" / "views" / "invite.py")
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "flowbank",
        "client_secret": "secret", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


def _service(dsn: str) -> tuple[Access, SharingService]:
    counter = itertools.count(1)
    access = Access(_Db(dsn), clock=lambda: datetime.now(UTC),
                    new_id=lambda: f"u-page-{next(counter)}-{uuid.uuid4().hex[:8]}")
    return access, SharingService(access, base_url="http://dash.test:8501")


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [s.value for s in at.subheader] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


def test_the_owner_sees_members_invitations_and_the_schedule(run_app: Callable[..., AppTest]) -> None:
    at = run_app("owner", page="views/sharing.py")
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
    at = run_app("member", page="views/sharing.py")
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
    owner = run_app("owner", page="views/sharing.py")
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


def _open_invite(email: str | None, token: str | None, *, script: str = INVITE_PAGE,
                 session: dict[str, Any] | None = None) -> AppTest:
    at = AppTest.from_file(script, default_timeout=30)
    if email is not None:
        at.user = {"is_logged_in": True, "email": email, "name": email.split("@")[0].title(),
                   "sub": f"sub-{email}", "iss": "http://oidc.test"}
    at.secrets["auth"] = AUTH
    if token is not None:
        at.query_params["token"] = token
    for key, value in (session or {}).items():
        at.session_state[key] = value
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


# --------------------------------------------------------------------------- a link opened before signing in


def _remembered(dsn: str) -> list[bytes]:
    with psycopg.connect(dsn) as conn:
        return [bytes(r[0]) for r in conn.execute("select token_sha256 from pending_invite_links").fetchall()]


@pytest.fixture()
def no_remembered_links(portal_dsn: str) -> None:
    with psycopg.connect(portal_dsn) as conn:
        conn.execute("delete from pending_invite_links")


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_a_link_opened_signed_out_is_remembered_and_leaves_the_address_bar(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    token = service.invite(access.principal("demo-owner"), "SIM-0002", "first.timer@example.com").link.split(
        "token=", 1)[1]
    for script in (APP, INVITE_PAGE):  # the app, or the page run on its own
        at = _open_invite(None, token, script=script)
        assert not at.exception, at.exception
        assert at.title[0].value == "FlowBankOS" and at.button(key="sign_in")
        assert any(invite_flow.SIGN_IN_NOTE == i.value for i in at.info), _texts(at)
        assert "token" not in at.query_params
        [html] = [h for h in at.get("html")]
        nonce = at.session_state["invite_cookie"][1]
        assert f"flowbank_invite={nonce}; Path=/; SameSite=Strict" in html.proto.body
        assert token not in html.proto.body
        assert _remembered(portal_dsn)[-1] == token_digest(token)
    assert len(_remembered(portal_dsn)) == 2  # two browsers (two sessions), one row each


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_a_link_that_cannot_work_is_explained_before_signing_in(portal_dsn: str) -> None:
    access, service = _service(portal_dsn)
    owner = access.principal("demo-owner")
    sent = service.invite(owner, "SIM-0002", "too.late@example.com")
    service.revoke(owner, "SIM-0002", sent.invite_id)
    at = _open_invite(None, sent.link.split("token=", 1)[1], script=APP)
    assert not at.exception, at.exception
    assert any("withdrawn by Olivia Owner" in e.value for e in at.error), _texts(at)
    assert at.button(key="sign_in") and "token" not in at.query_params
    assert not at.get("html") and _remembered(portal_dsn) == []


def _pending(dsn: str, email: str) -> tuple[Access, SharingService, PendingLink]:
    access, service = _service(dsn)
    token = service.invite(access.principal("demo-owner"), "SIM-0002", email).link.split("token=", 1)[1]
    return access, service, PendingInvites(access).remember(token)


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_after_sign_in_the_app_opens_the_remembered_invitation_and_then_the_charger(portal_dsn: str) -> None:
    access, service, pending = _pending(portal_dsn, "signed.in.now@example.com")
    at = _open_invite("signed.in.now@example.com", None, script=APP, session={invite_flow.PENDING_KEY: pending})
    assert not at.exception, at.exception
    assert "**Olivia Owner** invited you to share the charger **Bay 2**" in _texts(at)
    assert not at.sidebar.selectbox  # no roles yet: the invitation alone
    at.button(key="invite_accept").click().run()
    assert not at.exception, at.exception
    assert any("You now share as member **Bay 2**" in s.value for s in at.success), _texts(at)
    assert _remembered(portal_dsn) == [] and invite_flow.PENDING_KEY not in at.session_state
    assert at.session_state["invite_cookie"] == ("clear", "")

    # The same run went on to the charger (the app reran after the acceptance).
    assert at.title[0].value == "Chargers" and "Demo depot / Bay 2" in _texts(at)
    assert at.sidebar.selectbox(key="ctx_charger").value == "SIM-0002"
    after = at
    after.run()  # the news shows once
    assert not any("now share" in s.value for s in after.success)
    newcomer = access.sign_in(email="signed.in.now@example.com", display_name="x", issuer="http://oidc.test",
                              subject="sub-signed.in.now@example.com")
    service.remove_member(access.principal("demo-owner"), "SIM-0002", newcomer.user_id)


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_a_remembered_link_for_another_address_is_kept_until_dismissed(portal_dsn: str) -> None:
    _, _, pending = _pending(portal_dsn, "the.invitee@example.com")
    at = _open_invite("wrong.account@example.com", None, session={invite_flow.PENDING_KEY: pending})
    assert not at.exception, at.exception
    assert any("but you are signed in as wrong.account@example.com" in e.value for e in at.error), _texts(at)
    assert at.button(key="invite_sign_out") and len(_remembered(portal_dsn)) == 1  # kept: sign in as the invitee
    at.button(key="invite_not_now").click().run()
    assert _remembered(portal_dsn) == [] and at.session_state["invite_cookie"] == ("clear", "")


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_a_remembered_link_used_up_meanwhile_says_so_and_is_forgotten(portal_dsn: str) -> None:
    access, service, pending = _pending(portal_dsn, "twice.clicked@example.com")
    user = access.sign_in(email="twice.clicked@example.com", display_name="x", issuer="http://oidc.test",
                          subject="sub-twice.clicked@example.com")
    service.accept(user, pending.link)  # in another browser, say
    at = _open_invite("twice.clicked@example.com", None, session={invite_flow.PENDING_KEY: pending})
    assert any("has already been used. Each invitation link works once." in e.value for e in at.error), _texts(at)
    assert _remembered(portal_dsn) == []
    service.remove_member(access.principal("demo-owner"), "SIM-0002", user.user_id)


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_a_remembered_link_past_the_member_cap_or_for_a_member_already(portal_dsn: str) -> None:
    access, service, pending = _pending(portal_dsn, "one.too.many@example.com")
    owner = access.principal("demo-owner")
    members = len(service.members(owner, "SIM-0002")) - 1  # the owner is listed too
    service.set_member_cap(owner, "SIM-0002", max(members, 1))
    if members == 0:  # fill the one place so the invitee is one too many
        filler = access.sign_in(email="filler@example.com", display_name="Filler", issuer="http://oidc.test",
                                subject="sub-filler")
        with psycopg.connect(portal_dsn) as conn:
            sharing_store.add_member(conn, filler.user_id, "SIM-0002", by="demo-owner")
    at = _open_invite("one.too.many@example.com", None, session={invite_flow.PENDING_KEY: pending})
    at.button(key="invite_accept").click().run()
    assert not at.exception, at.exception
    assert any("the most its owner allows" in e.value for e in at.error), _texts(at)
    assert _remembered(portal_dsn) == []
    service.set_member_cap(owner, "SIM-0002", None)

    access, service, pending = _pending(portal_dsn, "one.too.many@example.com")  # the owner re-invites
    user = access.sign_in(email="one.too.many@example.com", display_name="x", issuer="http://oidc.test",
                          subject="sub-one.too.many@example.com")
    with psycopg.connect(portal_dsn) as conn:  # added by hand meanwhile
        sharing_store.add_member(conn, user.user_id, "SIM-0002", by="demo-owner")
    at = _open_invite("one.too.many@example.com", None, session={invite_flow.PENDING_KEY: pending})
    at.button(key="invite_accept").click().run()
    assert any("You already shared **Bay 2**" in s.value for s in at.success), _texts(at)
    assert _remembered(portal_dsn) == []
    for member in service.members(owner, "SIM-0002"):
        if member.email in ("filler@example.com", "one.too.many@example.com"):
            service.remove_member(owner, "SIM-0002", member.user_id)


@pytest.mark.usefixtures("run_app", "no_remembered_links")
def test_the_cookie_brings_the_remembered_link_back_and_a_stale_one_is_cleared(
        portal_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    access, _, pending = _pending(portal_dsn, "cookie.holder@example.com")
    # AppTest cannot send cookies: stand in for the one the browser's connection carries.
    monkeypatch.setattr(invite_flow, "_cookie_nonce", lambda: pending.nonce)
    signed_out = _open_invite(None, None, script=APP)  # back after signing out of the wrong account
    assert any(invite_flow.SIGN_IN_NOTE == i.value for i in signed_out.info), _texts(signed_out)

    at = _open_invite("cookie.holder@example.com", None, script=APP)
    assert not at.exception, at.exception
    assert "**Olivia Owner** invited you to share the charger **Bay 2**" in _texts(at)
    assert at.session_state[invite_flow.PENDING_KEY] == pending

    PendingInvites(access).forget(pending.nonce)  # used or expired meanwhile
    stale = _open_invite(EMAIL["member"], None, script=APP)
    assert not stale.exception, stale.exception
    assert stale.title[0].value == "Chargers" and stale.session_state["invite_cookie"] == ("clear", "")
    assert "flowbank_invite=; Path=/; Max-Age=0" in stale.get("html")[0].proto.body
