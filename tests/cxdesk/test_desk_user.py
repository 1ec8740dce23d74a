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
