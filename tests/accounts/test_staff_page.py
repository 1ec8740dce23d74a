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
