"""The notification centre page and its service: everything is the signed-in user's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dbutil import Db as _Db
from streamlit.testing.v1 import AppTest

from dashboards.access import Access, AccessDenied
from dashboards.notification_service import NotificationError, NotificationService

pytestmark = pytest.mark.integration


def test_channels_and_a_test_notification_are_the_users_own(portal_dsn: str) -> None:
    access = Access(_Db(portal_dsn))
    service = NotificationService(access)
    owner, member = access.principal("demo-owner"), access.principal("demo-member")
    with pytest.raises(NotificationError, match="no enabled channel"):
        service.send_test(owner)
    added = service.add_channel(owner, "webhook", "https://hooks.example.com/flowbank")
    assert added.secret  # shown once
    nid = service.send_test(owner)
    assert [d.kind for d in service.deliveries(owner, nid)] == ["webhook"]
    assert service.deliveries(member, nid) == []  # someone else's notification is not visible
    assert [n.notification_id for n in service.inbox(owner)][:1] == [nid]
    assert service.inbox(member) == [] or nid not in [n.notification_id for n in service.inbox(member)]
    with pytest.raises(NotificationError):
        service.add_channel(owner, "email", "not an address")


def test_muting_a_charger_needs_access_to_it(portal_dsn: str) -> None:
    access = Access(_Db(portal_dsn))
    service = NotificationService(access)
    member = access.principal("demo-member")
    service.mute_charger(member, "SIM-0001", muted=True, min_severity=None)
    assert service.preferences(member).overrides["SIM-0001"].muted
    with pytest.raises(AccessDenied):
        service.mute_charger(member, "SIM-0003", muted=True, min_severity=None)


@pytest.mark.parametrize("role", ["owner", "member", "support", "installer"])
def test_the_page_renders_for_everyone(run_app: Callable[..., AppTest], role: str) -> None:
    at = run_app(role, page="views/notifications.py")
    assert not at.exception, at.exception
    assert at.title[0].value == "Notifications"
