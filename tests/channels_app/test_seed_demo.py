from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count

from customers.models import Customer
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_has_cross_channel_conversations(django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", "--tickets", "40", "--customers", "20", stdout=out)
    tickets, customers, messages = Ticket.objects.count(), Customer.objects.count(), Message.objects.count()
    assert tickets >= 25
    assert Customer.objects.annotate(k=Count("identities__kind", distinct=True)).filter(k=2).exists()
    moved = Ticket.objects.annotate(c=Count("messages__channel", distinct=True)).filter(c__gte=3)
    assert moved.exists(), "some conversations move from email to SMS and back (plus notes)"
    assert Message.objects.filter(direction="outbound", status="sent").exists()
    assert "ana / demo" in out.getvalue()
    # roles and teams (accounts): the agents see their teams' demo tickets, Ben sees all
    from django.contrib.auth import get_user_model

    from accounts.roles import user_role
    from tickets.selectors import tickets_visible_to

    ana, ben, cara = (get_user_model().objects.get(username=n) for n in ("ana", "ben", "cara"))
    assert [user_role(u) for u in (ana, ben, cara)] == ["agent", "supervisor", "agent"]
    assert tickets_visible_to(agent=ben).count() == tickets
    assert 0 < tickets_visible_to(agent=ana).count() < tickets
    assert 0 < tickets_visible_to(agent=cara).count() < tickets
    call_command("seed_demo", stdout=StringIO())
    assert (Ticket.objects.count(), Customer.objects.count(), Message.objects.count()) == (tickets, customers, messages)
