"""The desk's daily work: bulk changes, saved views, undo order, routing from every entry
point, finding and merging people."""

from datetime import timedelta

import pytest

from channels_app.services import ingest
from customers.models import Customer, Identity
from tests.channels_app.factories import email_inbound, inbound
from tests.tickets.factories import AgentFactory
from tickets import services
from tickets.models import Notification, SavedView, Team, Ticket

pytestmark = pytest.mark.django_db


def test_bulk_from_the_desk_assigns_and_merges(desk, agent, email_inbox):
    ben = AgentFactory(username="ben", first_name="Ben")
    a, b, c = (ingest(email_inbound(email_inbox, subject=f"Order {i}")).ticket for i in range(3))
    response = desk.post(
        "/desk/bulk/", {"ids": [a.pk, b.pk], "assignee": ben.pk, "priority": "high", "action": "update"}
    )
    assert response.status_code == 302
    assert set(Ticket.objects.filter(assignee=ben, priority="high").values_list("pk", flat=True)) == {a.pk, b.pk}
    assert Notification.objects.filter(user=ben, kind="assigned").count() == 2
    desk.post("/desk/bulk/", {"ids": [c.pk, a.pk, b.pk], "action": "merge"})
    assert set(Ticket.objects.filter(merged_into=c).values_list("pk", flat=True)) == {a.pk, b.pk}, "into the first"
    page = desk.get("/desk/").content.decode()
    assert 'id="bulkbar"' in page and 'name="ids"' in page and 'id="select-page"' in page


def test_saved_view_from_the_desk_shows_its_count(desk, agent, email_inbox, sms_inbox):
    ingest(email_inbound(email_inbox))
    ingest(inbound(sms_inbox, address="+48600100999", text="sms"))
    response = desk.post("/desk/views/", {"name": "Texts", "query": "view=open&channel=sms"})
    view = SavedView.objects.get()
    from urllib.parse import parse_qs, urlsplit

    location = urlsplit(response["Location"])
    assert response.status_code == 302 and location.path == "/desk/"
    assert parse_qs(location.query) == {
        "channel": ["sms"],
        "view": ["open"],
        "sort": ["activity"],
        "saved": [str(view.pk)],
    }
    page = desk.get(response["Location"]).content.decode()
    assert f'data-saved="{view.pk}"' in page and "Texts" in page
    assert 'class="active" data-saved' in page
    from tickets.selectors import saved_view_counts

    assert saved_view_counts(agent=agent, views=[view]) == {view.pk: 1}


def test_undo_out_of_order_is_refused_and_in_order_works(agent, email_inbox):
    first = ingest(email_inbound(email_inbox, message_id="<u1@x>", subject="One")).ticket
    ingest(email_inbound(email_inbox, message_id="<u2@x>", in_reply_to="<u1@x>", subject="Re: One"))
    other = ingest(email_inbound(email_inbox, message_id="<u3@x>", subject="Two")).ticket
    split = services.split_ticket(ticket=first, message_ids=[first.messages.order_by("id").last().pk], actor=agent)
    merge = services.merge_tickets(source=split.target, target=other, actor=agent)
    from cxdesk.errors import ApplicationError

    with pytest.raises(ApplicationError) as exc:
        services.undo_move(move=split, actor=agent)
    assert exc.value.code == "undo_out_of_order" and "merge" in exc.value.message
    services.undo_move(move=merge, actor=agent)
    services.undo_move(move=split, actor=agent)
    assert first.messages.count() == 2 and other.messages.count() == 1


def test_undo_is_offered_on_both_tickets_and_on_the_timeline_event(desk, agent, email_inbox):
    a = ingest(email_inbound(email_inbox, subject="A")).ticket
    b = ingest(email_inbound(email_inbox, subject="B")).ticket
    move = services.merge_tickets(source=a, target=b, actor=agent)
    for ticket in (a, b):
        page = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
        assert page.count(f'action="/desk/moves/{move.pk}/undo/"') == 2, "side panel and timeline event"


def test_emptied_split_and_merged_tickets_are_hidden_from_the_portal(agent, email_inbox):
    from portal.selectors import portal_tickets

    t = ingest(email_inbound(email_inbox, message_id="<p1@x>")).ticket
    ingest(email_inbound(email_inbox, message_id="<p2@x>", in_reply_to="<p1@x>"))
    split = services.split_ticket(ticket=t, message_ids=[t.messages.order_by("id").last().pk], actor=agent)
    assert set(portal_tickets(customer=t.customer)) == {t, split.target}
    services.undo_move(move=split, actor=agent)
    assert list(portal_tickets(customer=t.customer)) == [t], "the emptied split ticket is gone"


def test_api_and_portal_tickets_are_routed_to_the_default_team(
    api_routing, email_inbox, django_capture_on_commit_callbacks
):
    team, ana = api_routing
    customer = Customer.objects.create(name="Ola")
    Identity.objects.create(customer=customer, kind="email", address="ola@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        ticket = services.ticket_open(customer=customer, subject="From the API", body="hi", channel="api")
    ticket.refresh_from_db()
    assert ticket.team == team and ticket.assignee == ana


@pytest.fixture
def api_routing(db):
    from routing.models import AgentProfile, RoutingConfig

    team = Team.objects.create(name="Front", is_default=True)
    ana = AgentFactory(username="front-ana")
    team.members.add(ana)
    AgentProfile.objects.create(user=ana)
    RoutingConfig.objects.create(team=team, strategy=RoutingConfig.Strategy.ROUND_ROBIN)
    return team, ana


def test_customer_search_finds_people_by_any_identity_and_edit(desk, email_inbox, sms_inbox):
    jan = ingest(email_inbound(email_inbox, address="jan.nowak@example.com")).ticket.customer
    Customer.objects.filter(pk=jan.pk).update(name="Jan Nowak")
    texter = ingest(inbound(sms_inbox, address="+48600100200", text="hi")).ticket.customer
    for q, who in (("nowak", jan), ("JAN.NOWAK@example.com", jan), ("600 100 200", texter), ("0048600100200", texter)):
        page = desk.get("/desk/customers/", {"q": q}).content.decode()
        assert f"/desk/customers/{who.pk}/" in page, q
    desk.post(
        f"/desk/customers/{texter.pk}/edit/", {"name": "Jan N.", "organization": "Acme", "attributes": "plan=gold\nbad"}
    )
    texter.refresh_from_db()
    assert (texter.name, texter.organization.name, texter.attributes) == ("Jan N.", "Acme", {"plan": "gold"})


def test_duplicate_suggestions_find_a_number_written_in_a_signature(desk, email_inbox, sms_inbox):
    jan = ingest(
        email_inbound(email_inbox, address="jan@example.com", text="Where is it?\n--\nJan Nowak\ntel. +48 600 100 200")
    ).ticket.customer
    texter = ingest(inbound(sms_inbox, address="600100200", text="Any news?")).ticket.customer
    assert texter.pk != jan.pk
    page = desk.get(f"/desk/customers/{texter.pk}/").content.decode()
    assert f"?merge={jan.pk}" in page and "mentions +48600100200" in page
    page = desk.get(f"/desk/customers/{jan.pk}/").content.decode()
    assert f"?merge={texter.pk}" in page and "+48600100200 is written in their messages" in page
    preview = desk.get(f"/desk/customers/{jan.pk}/?merge={texter.pk}").content.decode()
    assert 'id="merge-preview"' in preview and "+48600100200" in preview and "jan@example.com" in preview
    desk.post(f"/desk/customers/{jan.pk}/merge/", {"other": texter.pk, "confirm": "yes"})
    assert Identity.objects.get(kind="phone").customer_id == jan.pk


def test_sla_warning_notifies_the_assignee_once(agent, sms_inbox):
    from sla.models import SlaPolicy, TicketSla
    from sla.services import check_breaches

    SlaPolicy.objects.create(name="SMS", channel="sms", first_response_minutes=60, resolution_minutes=600)
    ticket = ingest(inbound(sms_inbox, address="+48600100777", text="hi")).ticket
    services.ticket_update(ticket=ticket, actor=None, assignee=agent)
    sla = TicketSla.objects.get(ticket=ticket)
    soon = sla.first_response_due - timedelta(minutes=10)
    check_breaches(now=soon)
    check_breaches(now=soon)
    notes = Notification.objects.filter(user=agent, kind="sla_warning")
    assert notes.count() == 1 and "due in 10 min" in notes.get().text
