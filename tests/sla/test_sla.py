from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from channels_app.services import ingest
from sla.models import BusinessCalendar, SlaPolicy, TicketSla
from sla.services import check_breaches, sla_apply, sla_status_changed
from tests.channels_app.factories import email_inbound, inbound
from tickets.models import Ticket, TicketEvent
from tickets.services import reply, ticket_set_status

pytestmark = pytest.mark.django_db
WARSAW = ZoneInfo("Europe/Warsaw")


@pytest.fixture
def policies(agent):
    office = BusinessCalendar.objects.create(name="Office", timezone="Europe/Warsaw")
    SlaPolicy.objects.create(name="Default", first_response_minutes=240, resolution_minutes=2880)
    SlaPolicy.objects.create(
        name="SMS", channel="sms", first_response_minutes=30, resolution_minutes=480, calendar=office, escalate_to=agent
    )
    return office


def test_most_specific_policy_and_business_hours_targets(policies, sms_inbox, email_inbox):
    sms = ingest(inbound(sms_inbox)).ticket
    friday_4pm = datetime(2026, 11, 27, 16, 0, tzinfo=WARSAW)
    Ticket.objects.filter(pk=sms.pk).update(created_at=friday_4pm)
    sms.refresh_from_db()
    sla = sla_apply(ticket=sms, now=friday_4pm)
    assert sla.policy.name == "SMS"
    assert sla.first_response_due == datetime(2026, 11, 27, 16, 30, tzinfo=WARSAW)
    assert sla.resolution_due == datetime(2026, 11, 30, 16, 0, tzinfo=WARSAW)  # 1h Fri + 7h Mon
    mail = ingest(email_inbound(email_inbox)).ticket
    assert TicketSla.objects.get(ticket=mail).policy.name == "Default"


def test_pending_pauses_the_resolution_clock(policies, sms_inbox):
    ticket = ingest(inbound(sms_inbox)).ticket
    monday_9 = datetime(2026, 11, 30, 9, 0, tzinfo=WARSAW)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=monday_9)
    ticket.refresh_from_db()
    sla = sla_apply(ticket=ticket, now=monday_9)
    assert sla.resolution_due == datetime(2026, 11, 30, 17, 0, tzinfo=WARSAW)
    sla_status_changed(ticket=ticket, old="open", new="pending", now=datetime(2026, 11, 30, 10, 0, tzinfo=WARSAW))
    # pending from 10:00 Monday to 10:00 Tuesday: 8 open hours (10–17 Mon, 9–10 Tue) are paused
    sla_status_changed(ticket=ticket, old="pending", new="open", now=datetime(2026, 12, 1, 10, 0, tzinfo=WARSAW))
    sla.refresh_from_db()
    assert sla.paused_at is None
    assert sla.resolution_due == datetime(2026, 12, 1, 17, 0, tzinfo=WARSAW)  # Monday 17:00 pushed by 8 open hours


def test_breach_is_marked_once_escalates_and_is_an_event(
    policies, sms_inbox, agent, django_capture_on_commit_callbacks
):
    from tests.sockets import sent_events

    ticket = ingest(inbound(sms_inbox)).ticket
    sla = TicketSla.objects.get(ticket=ticket)
    later = sla.first_response_due + timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert check_breaches(now=later) == [(ticket.pk, "first_response")]
    assert check_breaches(now=later) == []
    ticket.refresh_from_db()
    assert ticket.priority == "high"
    event = TicketEvent.objects.get(ticket=ticket, kind="sla_breach")
    assert event.data["target"] == "first_response"
    assert "supervisor notified" in event.data["actions"]
    assert any(
        e["event"] == "notification.created" and e["kind"] == "sla_breach" and e["group"] == f"agent.{agent.pk}"
        for e in sent_events()
    )


def test_first_reply_stops_the_first_response_clock(policies, email_inbox, agent):
    ticket = ingest(email_inbound(email_inbox)).ticket
    reply(ticket=ticket, author=agent, body="hello")
    sla = TicketSla.objects.get(ticket=ticket)
    assert sla.first_response_met_at is not None
    assert check_breaches(now=timezone.now() + timedelta(hours=5)) == []
    ticket_set_status(ticket=ticket, status="solved", actor=agent)
    sla.refresh_from_db()
    assert sla.resolved_at is not None


def test_desk_shows_sla_filters_by_state_and_sets_agent_status(policies, sms_inbox, email_inbox, agent, client):
    from routing.models import AgentProfile

    late = ingest(inbound(sms_inbox, address="+48600100001", text="late one")).ticket
    ingest(inbound(sms_inbox, address="+48600100002", text="fresh one"))
    TicketSla.objects.filter(ticket=late).update(first_response_due=timezone.now() - timedelta(minutes=5))
    check_breaches(now=timezone.now())
    client.force_login(agent)
    breached = [t.pk for t in client.get("/desk/", {"sla": "breached"}).context["tickets"]]
    assert breached == [late.pk]
    page = client.get(f"/desk/tickets/{late.pk}/").content.decode()
    assert "SLA · SMS" in page
    assert "breached" in page
    client.post("/desk/status/", {"status": "away", "next": "/desk/"})
    assert AgentProfile.objects.get(user=agent).status == "away"
    assert client.post("/desk/status/", {"status": "asleep"}, follow=True).status_code == 200
    assert AgentProfile.objects.get(user=agent).status == "away"


def test_a_reopen_reads_the_clock_alone_without_a_savepoint(policies, email_inbox):
    """Solved → open (a customer's reply) clears `resolved_at`; the clock is read without its
    policy and calendar (only a pause counts business minutes) and inside the caller's
    transaction, with no savepoint of its own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ticket = ingest(email_inbound(email_inbox)).ticket
    ticket_set_status(ticket=ticket, status=Ticket.Status.SOLVED)
    assert TicketSla.objects.get(ticket=ticket).resolved_at is not None
    with CaptureQueriesContext(connection) as ctx:
        sla_status_changed(ticket=ticket, old="solved", new="open", now=timezone.now())
    sql = [q["sql"] for q in ctx.captured_queries]
    assert not [q for q in sql if q.startswith("SAVEPOINT")]
    reads = [q for q in sql if q.startswith('SELECT "sla_ticketsla"')]
    assert len(reads) == 1 and "JOIN" not in reads[0], reads
    assert TicketSla.objects.get(ticket=ticket).resolved_at is None
