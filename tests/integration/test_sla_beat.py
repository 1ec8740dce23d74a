import pytest

from channels_app.services import ingest
from sla.models import SlaPolicy, TicketSla
from tests.channels_app.factories import InboxFactory, inbound
from tickets.models import Ticket, TicketEvent

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_breach_is_escalated_by_a_real_beat_and_worker(celery_worker_process):
    SlaPolicy.objects.create(name="Fast SMS", channel="sms", first_response_minutes=0, resolution_minutes=600)
    inbox = InboxFactory(kind="twilio", name="SMS", config={"phone_number": "+15005550006"})
    ticket = ingest(inbound(inbox, address="+48600100777", text="help!")).ticket
    assert TicketSla.objects.get(ticket=ticket).first_response_due <= ticket.created_at
    celery_worker_process(beat=True, extra_env={"CXDESK_SLA_CHECK_SECONDS": "1"})
    event = wait_for(
        lambda: TicketEvent.objects.filter(ticket=ticket, kind="sla_breach").first(),
        timeout=45,
        message="the beat's breach check",
    )
    assert event.data["target"] == "first_response"
    assert Ticket.objects.get(pk=ticket.pk).priority == "high"
    assert TicketSla.objects.get(ticket=ticket).first_response_breached_at is not None
