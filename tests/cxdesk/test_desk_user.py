"""`cxdesk.middleware.DeskUserMiddleware`: what every desk page asks of the signed-in staff
member (desk language, role, routing status) in one query."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import StaffProfile
from routing.models import AgentProfile

pytestmark = pytest.mark.django_db

ASKED = ("accounts_staffprofile", "auth_user_groups", "routing_agentprofile")


def _asked(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if any(table in q["sql"] for table in ASKED)]


@pytest.mark.parametrize("group", [None, "supervisor", "admin"])
def test_a_desk_page_reads_language_role_and_status_in_one_query(client, django_user_model, group):
    user = django_user_model.objects.create_user("ola", password="x", is_staff=True)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0], Group.objects.get_or_create(name="agent")[0])
    StaffProfile.objects.create(user=user, language="pl")
    AgentProfile.objects.create(user=user, status=AgentProfile.Status.AWAY)
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/desk/")
    assert response.status_code == 200
    assert len(_asked(ctx)) == 1, _asked(ctx)
    html = response.content.decode()
    assert '<html lang="pl"' in html, "the desk language from the one query"
    assert '<option value="away" selected' in html, "the routing status from the one query"
    role = response.wsgi_request.user._cxdesk_role
    assert role == (group or "agent"), "the highest role group"


def test_without_profiles_the_defaults_hold(client, django_user_model):
    user = django_user_model.objects.create_user("jan", password="x", is_staff=True)
    client.force_login(user)
    response = client.get("/desk/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<option value="available" selected' in html
    assert response.wsgi_request.user._cxdesk_role == "agent"


def _notification_queries(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "tickets_notification" in q["sql"]]


def test_the_bells_count_comes_with_the_same_query(desk, agent, email_inbox):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound
    from tickets.models import Notification

    ticket = ingest(email_inbound(email_inbox)).ticket
    Notification.objects.create(user=agent, kind="mention", ticket=ticket, text="look")
    Notification.objects.create(user=agent, kind="mention", ticket=ticket, text="again")
    Notification.objects.create(user=agent, kind="assigned", ticket=ticket, read_at=ticket.created_at)
    desk.get("/desk/")
    with CaptureQueriesContext(connection) as ctx:
        html = desk.get("/desk/").content.decode()
    assert 'id="bell-count" data-count="2"' in html
    assert len(_notification_queries(ctx)) == 1, "no COUNT of its own"
    assert _notification_queries(ctx) == _asked(ctx), "the one desk-user query"


def test_the_ticket_page_counts_again_after_marking_its_notifications_read(desk, agent, email_inbox):
    """The ticket view marks the ticket's notifications read before it renders: the count read
    with the desk user is out of date then, and the bell must not show it."""
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound
    from tickets.models import Notification

    ticket = ingest(email_inbound(email_inbox)).ticket
    other = ingest(email_inbound(email_inbox, address="else@example.com", message_id="<else@example.com>")).ticket
    Notification.objects.create(user=agent, kind="mention", ticket=ticket, text="look")
    Notification.objects.create(user=agent, kind="mention", ticket=other, text="and here")
    html = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert 'id="bell-count" data-count="1"' in html, "the other ticket's notification is still unread"
    panel = desk.post("/desk/notifications/read/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="bell-count" data-count="0"' in panel


def test_a_notification_written_during_the_request_is_counted(rf, agent, email_inbox):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound
    from tickets.models import Notification
    from tickets.notifications import notifications_unread_count, unread_count_preloaded

    ticket = ingest(email_inbound(email_inbox)).ticket
    with unread_count_preloaded(user_id=agent.pk, count=0):
        assert notifications_unread_count(user=agent) == 0
        Notification.objects.create(user=agent, kind="mention", ticket=ticket, text="new")
        assert notifications_unread_count(user=agent) == 1
    assert notifications_unread_count(user=agent) == 1
