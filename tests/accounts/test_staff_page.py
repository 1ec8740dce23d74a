"""Admins set roles and teams in the desk (/desk/staff/); everyone else gets a 404."""

import pytest
from django.db.models.signals import m2m_changed
from django.test import Client

from accounts.roles import user_role
from tests.tickets.factories import AgentFactory, TeamFactory
from tickets.models import Team

pytestmark = pytest.mark.django_db


def test_admin_sets_role_and_teams(django_capture_on_commit_callbacks):
    root = AgentFactory(username="root", role="admin")
    ana = AgentFactory(username="ana", role="agent")
    support, billing = TeamFactory(name="Support"), TeamFactory(name="Billing")
    support.members.add(ana)
    for user in (ana, AgentFactory(username="boss", role="supervisor")):
        desk = Client()
        desk.force_login(user)
        assert desk.get("/desk/staff/").status_code == 404
        assert desk.post("/desk/staff/", {"user": ana.pk, "role": "admin"}).status_code == 404
    client = Client()
    client.force_login(root)
    page = client.get("/desk/staff/")
    assert page.status_code == 200 and b"Billing" in page.content
    team_changes = []

    def on_team(sender, instance, action, **kw):
        if action in ("post_add", "post_remove"):
            team_changes.append((instance.name, action))

    m2m_changed.connect(on_team, sender=Team.members.through)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            saved = client.post("/desk/staff/", {"user": ana.pk, "role": "supervisor", "teams": [billing.pk]})
    finally:
        m2m_changed.disconnect(on_team, sender=Team.members.through)
    assert saved.status_code == 302
    ana.refresh_from_db()
    assert user_role(ana) == "supervisor"
    assert list(ana.teams.values_list("name", flat=True)) == ["Billing"]
    assert sorted(team_changes) == [("Billing", "post_add"), ("Support", "post_remove")]
    refused = client.post("/desk/staff/", {"user": root.pk, "role": "agent"}, follow=True)
    assert b"cannot take away your own admin role" in refused.content
    assert user_role(root) == "admin"


def test_staff_api_lists_roles_and_admins_change_them():
    from rest_framework.test import APIClient

    from integrations.services import api_key_create

    root = AgentFactory(username="root", role="admin")
    ana = AgentFactory(username="ana", role="agent")
    billing = TeamFactory(name="Billing")
    _, key = api_key_create(user=root, name="ops")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    listing = api.get("/api/v1/staff/").json()["results"]
    assert {(s["username"], s["role"]) for s in listing} == {("root", "admin"), ("ana", "agent")}
    bad = api.patch(f"/api/v1/staff/{ana.pk}/", {"role": "boss", "teams": []}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["fields"]["role"]
    unknown = api.patch(f"/api/v1/staff/{ana.pk}/", {"role": "supervisor", "teams": [999999]}, format="json")
    assert unknown.status_code == 400 and user_role(ana) == "agent", "nothing half-written"
    ok = api.patch(f"/api/v1/staff/{ana.pk}/", {"role": "supervisor", "teams": [billing.pk]}, format="json")
    assert ok.status_code == 200 and ok.json()["role"] == "supervisor" and ok.json()["teams"] == [billing.pk]
    agent_api = APIClient()
    agent_api.force_login(ana)
    assert agent_api.get("/api/v1/staff/").status_code == 200
    assert (
        agent_api.patch(f"/api/v1/staff/{root.pk}/", {"role": "agent", "teams": []}, format="json").status_code == 403
    )
