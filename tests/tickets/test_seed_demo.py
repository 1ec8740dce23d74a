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
    call_command("seed_demo", stdout=StringIO())
    assert (Ticket.objects.count(), Customer.objects.count(), Message.objects.count()) == (tickets, customers, messages)
