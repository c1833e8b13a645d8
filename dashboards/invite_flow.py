"""An invitation link opened while signed out survives the sign-in: the Streamlit side.

``st.login()`` leaves for the identity provider and comes back to the app's root in a new
Streamlit session: the ``?token=`` and ``st.session_state`` are gone, only cookies survive
(measured with Streamlit 1.67 and the local provider). So:

1. Signed out, with ``?token=`` (:func:`before_sign_in`): the link is checked and remembered on
   the server (:class:`~dashboards.invite_links.PendingInvites`), the browser gets a session
   cookie holding only a random nonce (written by a one-line script: Streamlit has no
   server-side cookie API), and the token leaves the address bar. A link that cannot work
   (damaged, expired, used, revoked) is explained right there, and nothing is remembered.
2. Signed in (:func:`pending_after_sign_in`): the nonce is read from ``st.context.cookies`` (the
   cookies of this session's own connection) once per session, and the remembered link is kept
   in ``st.session_state``, so it belongs to this browser and this session only.
3. The invite page uses it, then :func:`forget` deletes it on the server and expires the cookie;
   :func:`accepted` also focuses the new charger for the Chargers page.

The token is never put in a cookie, in the database or in a log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

import psycopg
import streamlit as st

from dashboards import context, runtime
from dashboards.invite_links import PendingInvites, PendingLink, looks_like_nonce
from dashboards.sharing_service import Accepted, InviteRefused
from warehouse.queries import QueryError

COOKIE: Final = "flowbank_invite"
PENDING_KEY: Final = "invite_pending"        # this session's PendingLink
ACCEPTED_KEY: Final = "invite_accepted"      # the Accepted just now, until the banner shows it
_LOOKED_UP_KEY: Final = "invite_cookie_looked_up"
_COOKIE_KEY: Final = "invite_cookie"         # ("set", nonce) or ("clear", ""): what the page writes
_NOTE_KEY: Final = "invite_sign_in_note"     # ("info" | "error", sentence) for the sign-in screen

SIGN_IN_NOTE: Final = ("You opened an invitation. Sign in with the e-mail address it was sent to: you come back "
                       "to the invitation to accept it.")
NOT_REMEMBERED_NOTE: Final = ("You opened an invitation, but it could not be remembered during sign-in (the "
                              "database did not answer). Sign in, then open the invitation link again.")


def _service() -> PendingInvites:
    return PendingInvites(runtime.access())


def _signed_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def _cookie_nonce() -> str | None:
    value = st.context.cookies.get(COOKIE)
    return value if looks_like_nonce(value) else None


def cookie_script(action: str, nonce: str = "") -> str:
    """The script that writes (``set``) or expires (``clear``) the nonce cookie.

    A session cookie (no expiry: gone when the browser closes), SameSite=Strict, Secure over
    https; it is read back from this app's own websocket connection, which Strict allows.
    """
    if action == "set":
        if not looks_like_nonce(nonce):
            raise ValueError("not a nonce")
        cookie = f"{COOKIE}={nonce}; Path=/; SameSite=Strict"
    elif action == "clear":
        cookie = f"{COOKIE}=; Path=/; Max-Age=0; SameSite=Strict"
    else:
        raise ValueError(f"unknown cookie action {action!r}")
    return (f"<script>document.cookie = {json.dumps(cookie)}"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>")


def write_cookie() -> None:
    """Draw the cookie script this session owes the browser, if any (every run: it is idempotent,
    and a rerun that drops the element cannot lose the write)."""
    pending = st.session_state.get(_COOKIE_KEY)
    if isinstance(pending, tuple) and len(pending) == 2:
        st.html(cookie_script(*pending), unsafe_allow_javascript=True)


def before_sign_in() -> Callable[[], None] | None:
    """Signed out: remember a ``?token=`` link; the note to draw on the sign-in screen (or None)."""
    if _signed_in() or not runtime.auth_configured():
        return None
    token = st.query_params.get("token")
    if token is not None:
        old = _cookie_nonce()
        try:
            pending = _service().remember(token, replacing=old)
        except InviteRefused as exc:
            del st.query_params["token"]
            st.session_state[_NOTE_KEY] = ("error", str(exc))
        except (psycopg.Error, QueryError):
            st.session_state[_NOTE_KEY] = ("error", NOT_REMEMBERED_NOTE)  # the token stays in the address bar
        else:
            del st.query_params["token"]  # the cookie's nonce stands for it now
            st.session_state[_COOKIE_KEY] = ("set", pending.nonce)
            st.session_state[_NOTE_KEY] = ("info", SIGN_IN_NOTE)
    elif _NOTE_KEY not in st.session_state:
        # No link in the address bar, but one remembered (say after signing out of the wrong account).
        nonce = _cookie_nonce()
        remembered = None
        if nonce is not None:
            try:
                remembered = _service().recall(nonce)
            except (psycopg.Error, QueryError):
                remembered = None
        st.session_state[_NOTE_KEY] = ("info", SIGN_IN_NOTE) if remembered else None
    note = st.session_state.get(_NOTE_KEY)
    if not note:
        return None

    def draw() -> None:
        kind, text = note
        (st.error if kind == "error" else st.info)(text, icon=":material/mail:")
        write_cookie()

    return draw


def pending_after_sign_in() -> PendingLink | None:
    """Signed in: the invitation this browser remembered before signing in, if any."""
    pending = st.session_state.get(PENDING_KEY)
    if isinstance(pending, PendingLink):
        return pending
    nonce = _cookie_nonce()
    if nonce is None or st.session_state.get(_LOOKED_UP_KEY) == nonce:
        return None
    try:
        found = _service().recall(nonce)
    except (psycopg.Error, QueryError):
        return None  # the page runs on; the next run asks again
    st.session_state[_LOOKED_UP_KEY] = nonce  # once per session: the cookie does not change under it
    if found is None:
        st.session_state[_COOKIE_KEY] = ("clear", "")  # used, expired or forgotten: a stale cookie
        return None
    st.session_state[PENDING_KEY] = found
    return found


def forget(pending: PendingLink | None, *, draw: bool = True) -> None:
    """Done with the remembered link: delete it on the server and expire the browser's cookie
    (now when ``draw``, else at the app's next run: from a widget callback, or before a rerun)."""
    if pending is None:
        return
    _service().forget(pending.nonce)
    st.session_state.pop(PENDING_KEY, None)
    st.session_state[_COOKIE_KEY] = ("clear", "")
    if draw:
        write_cookie()


def accepted(result: Accepted, pending: PendingLink | None) -> None:
    """An invitation was accepted: forget the link, and show the charger next."""
    forget(pending, draw=False)  # the caller reruns
    if "token" in st.query_params:
        del st.query_params["token"]  # used up: a reload must not try again
    st.session_state[ACCEPTED_KEY] = result
    context.focus_charger(result.charger_id)


def just_accepted() -> Accepted | None:
    result = st.session_state.get(ACCEPTED_KEY)
    return result if isinstance(result, Accepted) else None


def accepted_message(result: Accepted) -> str:
    what = "already shared" if result.already else f"now share as {result.role.label.lower()}"
    return f"You {what} **{result.charger_name}**. It is in your charger list: no hardware to scan."


def show_accepted_banner() -> None:
    """Once, above the page after an acceptance: what the user got."""
    result = st.session_state.pop(ACCEPTED_KEY, None)
    if isinstance(result, Accepted):
        st.success(accepted_message(result), icon=":material/check_circle:")
