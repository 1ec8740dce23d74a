import threading

import pytest
from django.db import connection, connections

from channels_app.services import ingest
from routing.models import AgentProfile, RoutingConfig, Rule
from routing.services import agent_set_status, route_ticket
from tests.channels_app.factories import InboxFactory, email_inbound, inbound
from tests.tickets.factories import AgentFactory, TeamFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    t = TeamFactory(name="Support")
    for name in ("a1", "a2", "a3"):
        user = AgentFactory(username=name)
        t.members.add(user)
        AgentProfile.objects.create(user=user)
    return t


@pytest.fixture
def routed_inbox(team):
    return InboxFactory(
        kind="email", name="Routed", config={"address": "r@example.com", "auto_ack": "false"}, default_team=team
    )


def new_ticket(inbox, i, capture):
    with capture(execute=True):
        return ingest(email_inbound(inbox, address=f"c{i}@example.com", subject=f"T{i}")).ticket


def assignees(team):
    return list(Ticket.objects.order_by("pk").values_list("assignee__username", flat=True))


def test_round_robin_skips_away_agents_and_full_agents(team, routed_inbox, django_capture_on_commit_callbacks):
    RoutingConfig.objects.create(team=team, strategy="round_robin")
    agent_set_status(user=team.members.get(username="a2"), status="away")
    for i in range(4):
        new_ticket(routed_inbox, i, django_capture_on_commit_callbacks)
    assert assignees(team) == ["a1", "a3", "a1", "a3"]
    AgentProfile.objects.filter(user__username="a1").update(max_concurrent=2)
    new_ticket(routed_inbox, 9, django_capture_on_commit_callbacks)
    assert assignees(team)[-1] == "a3"


def test_least_loaded_and_channel_skills(team, routed_inbox, django_capture_on_commit_callbacks):
    RoutingConfig.objects.create(team=team, strategy="least_loaded")
    AgentProfile.objects.filter(user__username="a1").update(channels=["sms"])
    for i in range(4):
        new_ticket(routed_inbox, i, django_capture_on_commit_callbacks)
    assert sorted(assignees(team)) == ["a2", "a2", "a3", "a3"], "a1 handles SMS only"


def test_manual_leaves_tickets_unassigned(team, routed_inbox, django_capture_on_commit_callbacks):
    RoutingConfig.objects.create(team=team, strategy="manual")
    new_ticket(routed_inbox, 1, django_capture_on_commit_callbacks)
    assert assignees(team) == [None]


def test_continuity_then_team_when_the_owner_is_away(team, routed_inbox, django_capture_on_commit_callbacks):
    RoutingConfig.objects.create(team=team, strategy="round_robin")
    sms = InboxFactory(kind="twilio", name="S", config={"phone_number": "+15005550006"}, default_team=team)
    ticket = new_ticket(routed_inbox, 1, django_capture_on_commit_callbacks)
    owner = Ticket.objects.get(pk=ticket.pk).assignee
    from customers.models import Identity

    Identity.objects.create(customer=ticket.customer, kind="phone", address="+48600100123")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(inbound(sms, address="+48600100123", text="me again, by SMS"))
    assert Ticket.objects.get(pk=ticket.pk).assignee == owner, "the owner keeps the conversation"
    agent_set_status(user=owner, status="away")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(inbound(sms, address="+48600100123", text="hello?"))
    after = Ticket.objects.get(pk=ticket.pk)
    assert after.assignee != owner
    assert after.team == team


def test_rules_set_team_priority_tags(team, routed_inbox, django_capture_on_commit_callbacks):
    billing = TeamFactory(name="Billing")
    Rule.objects.create(
        name="refunds",
        trigger="ticket_created",
        conditions={"keywords": ["refund"]},
        actions={"team": billing.pk, "priority": "high", "tags": ["refund"]},
    )
    with django_capture_on_commit_callbacks(execute=True):
        t = ingest(
            email_inbound(routed_inbox, address="x@example.com", subject="Refund please", text="I want a refund")
        ).ticket
    t.refresh_from_db()
    assert (t.team, t.priority, list(t.tags.values_list("name", flat=True))) == (billing, "high", ["refund"])
    with django_capture_on_commit_callbacks(execute=True):
        other = ingest(
            email_inbound(routed_inbox, address="y@example.com", subject="Hello", text="refunded? no")
        ).ticket
    other.refresh_from_db()
    assert other.team == team


@pytest.mark.django_db(transaction=True)
def test_concurrent_routing_gives_one_owner_and_right_loads(team, routed_inbox):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    RoutingConfig.objects.create(team=team, strategy="least_loaded")
    from channels_app.models import Inbox

    Inbox.objects.filter(pk=routed_inbox.pk).update(default_team=None)  # route by hand below
    tickets = [
        ingest(email_inbound(routed_inbox, address=f"z{i}@example.com", subject=f"Z{i}")).ticket for i in range(6)
    ]
    Ticket.objects.update(team=team, assignee=None)
    from tickets.models import TicketEvent

    TicketEvent.objects.filter(kind="assignment").delete()  # routing already ran on commit; start clean
    barrier = threading.Barrier(6)

    def go(ticket_id):
        try:
            barrier.wait()
            route_ticket(ticket_id=ticket_id, trigger="ticket_created")
        finally:
            connections.close_all()

    # the same ticket routed twice at once, and different tickets at once
    ids = [tickets[0].pk, tickets[0].pk, tickets[1].pk, tickets[2].pk, tickets[3].pk, tickets[4].pk]
    threads = [threading.Thread(target=go, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert TicketEvent.objects.filter(ticket=tickets[0], kind="assignment").count() == 1, "one owner, assigned once"
    loads = sorted(Ticket.objects.exclude(assignee=None).values_list("assignee__username", flat=True))
    assert len(loads) == 5
    counts = sorted(loads.count(name) for name in ("a1", "a2", "a3"))
    assert counts == [1, 2, 2], "least-loaded spreads five tickets 2/2/1"


def test_rule_canned_reply_is_automatic_not_a_first_response(team, routed_inbox, django_capture_on_commit_callbacks):
    from tickets.models import Message

    Rule.objects.create(
        name="ack", trigger="ticket_created", conditions={"channel": ["email"]}, actions={"reply": "We got it."}
    )
    with django_capture_on_commit_callbacks(execute=True):
        t = ingest(email_inbound(routed_inbox, address="q@example.com", subject="Question")).ticket
    sent = Message.objects.get(ticket=t, direction="outbound")
    assert sent.body_text == "We got it."
    assert sent.metadata["auto_submitted"] is True
    assert Ticket.objects.get(pk=t.pk).first_response_at is None
