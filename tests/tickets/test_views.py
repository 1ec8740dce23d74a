import pytest
from django.test import Client

from channels_app.services import ingest
from customers.models import CustomerMerge, Identity
from tests.channels_app.factories import email_inbound, inbound
from tests.tickets.factories import AgentFactory
from tickets.models import Message, Ticket, TicketMove

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(agent):
    client = Client()
    client.force_login(agent)
    client.agent = agent
    return client


def make_tickets(email_inbox, sms_inbox, n, start=0):
    for i in range(start, start + n):
        r = ingest(email_inbound(email_inbox, address=f"v{i}@example.com", subject=f"Subject {i}", text=f"body {i}"))
        if i % 3 == 0:
            Identity.objects.create(customer=r.ticket.customer, kind="phone", address=f"+4860010{i:04d}")
            ingest(inbound(sms_inbox, address=f"+4860010{i:04d}", text=f"sms {i}"))


def test_desk_requires_staff(client, email_inbox):
    assert client.get("/desk/").status_code == 302
    customer_user = AgentFactory(username="not-staff", is_staff=False)
    client.force_login(customer_user)
    assert client.get("/desk/").status_code == 302
    ticket = ingest(email_inbound(email_inbox)).ticket
    assert client.get(f"/desk/tickets/{ticket.pk}/").status_code == 302


def test_inbox_query_count_is_constant(desk, email_inbox, sms_inbox, django_assert_max_num_queries):
    make_tickets(email_inbox, sms_inbox, 5)
    with django_assert_max_num_queries(15) as few:
        assert desk.get("/desk/").status_code == 200
    make_tickets(email_inbox, sms_inbox, 40, start=100)
    with django_assert_max_num_queries(15) as many:
        response = desk.get("/desk/")
    assert len(many.captured_queries) == len(few.captured_queries)
    assert b"Subject 139" in response.content
    assert b"body 139" in response.content, "the last message excerpt is shown"


def test_inbox_views_filters_search_and_pagination(desk, email_inbox, sms_inbox):
    make_tickets(email_inbox, sms_inbox, 6)
    one = Ticket.objects.get(subject="Subject 4")
    one.assignee = desk.agent
    one.save()
    assert b"Subject 4" in desk.get("/desk/?view=mine").content
    assert b"Subject 3" not in desk.get("/desk/?view=mine").content
    assert b"Subject 4" not in desk.get("/desk/?view=unassigned").content
    ingest(inbound(sms_inbox, address="+48600199999", text="sms-born ticket"))
    sms_only = desk.get("/desk/?channel=sms").context["tickets"]
    assert [t.channel for t in sms_only] == ["sms"], "filter by the channel a ticket was opened on"
    assert b"Subject 2" in desk.get("/desk/?q=v2@example").content
    assert b"Subject 5" not in desk.get("/desk/?q=v2@example").content
    assert b"Subject 1" in desk.get("/desk/?q=body 1").content
    assert b"Subject 3" in desk.get(f"/desk/?q=CX-{Ticket.objects.get(subject='Subject 3').pk}").content
    page = desk.get("/desk/")
    assert page.context["counts"]["open"] == 7
    assert page.context["counts"]["mine"] == 1
    partial = desk.get("/desk/?view=open", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inbox-list")
    assert b"<html" not in partial.content


def test_keyset_pagination_walks_every_ticket(desk, email_inbox, agent):
    from tickets import selectors

    for i in range(7):
        ingest(email_inbound(email_inbox, address=f"p{i}@example.com", subject=f"P{i}"))
    seen, cursor = [], ""
    while True:
        rows, cursor = selectors.inbox_page(agent=agent, view="open", before=cursor, limit=3)
        seen += [t.pk for t in rows]
        if not cursor:
            break
    assert sorted(seen) == sorted(Ticket.objects.values_list("pk", flat=True))
    assert len(seen) == len(set(seen))


def test_ticket_page_query_count_is_constant_and_shows_everything(
    desk, email_inbox, sms_inbox, django_assert_max_num_queries
):
    first = ingest(
        email_inbound(
            email_inbox, address="t@example.com", subject="Timeline", html="<p>Hi <script>x()</script></p>", text=""
        )
    )
    ticket = first.ticket
    Identity.objects.create(customer=ticket.customer, kind="phone", address="+48600100321")
    with django_assert_max_num_queries(25) as few:
        desk.get(f"/desk/tickets/{ticket.pk}/")
    for i in range(30):
        ingest(inbound(sms_inbox, address="+48600100321", text=f"sms {i}"))
    with django_assert_max_num_queries(25) as many:
        response = desk.get(f"/desk/tickets/{ticket.pk}/")
    assert len(many.captured_queries) == len(few.captured_queries)
    html = response.content.decode()
    assert "sms 29" in html
    assert "<script>x()" not in html
    assert "Customer switched channel" in html
    assert 'value="sms"' in html
    assert "why here?" in html


def test_reply_note_update_merge_split_and_undo(desk, email_inbox, sms_inbox, django_capture_on_commit_callbacks):
    a = ingest(email_inbound(email_inbox, address="w@example.com", subject="First")).ticket
    b = ingest(email_inbound(email_inbox, address="w@example.com", subject="Second")).ticket
    with django_capture_on_commit_callbacks(execute=True):
        desk.post(f"/desk/tickets/{a.pk}/reply/", {"body": "Hello from the desk", "channel": "email"})
    assert Message.objects.filter(ticket=a, direction="outbound", status="sent").count() == 1
    desk.post(f"/desk/tickets/{a.pk}/reply/", {"body": "private", "internal": "1"})
    assert Message.objects.filter(ticket=a, direction="note").count() == 1
    desk.post(
        f"/desk/tickets/{a.pk}/update/",
        {"status": "pending", "priority": "urgent", "assignee": desk.agent.pk, "team": "", "tags": "vip, refund"},
    )
    a.refresh_from_db()
    assert (a.status, a.priority, a.assignee_id) == ("pending", "urgent", desk.agent.pk)
    assert sorted(a.tags.values_list("name", flat=True)) == ["refund", "vip"]
    response = desk.post(f"/desk/tickets/{a.pk}/reply/", {"body": "x", "channel": "sms"}, follow=True)
    assert b"no phone identity" in response.content
    desk.post(f"/desk/tickets/{b.pk}/merge/", {"target": a.reference})
    assert Ticket.objects.get(pk=b.pk).merged_into_id == a.pk
    move = TicketMove.objects.get(kind="merge")
    desk.post(f"/desk/moves/{move.pk}/undo/")
    assert Ticket.objects.get(pk=b.pk).merged_into_id is None
    inbound_msg = Message.objects.filter(ticket=a, direction="inbound").first()
    desk.post(f"/desk/tickets/{a.pk}/split/", {"message": [inbound_msg.pk]})
    assert Message.objects.get(pk=inbound_msg.pk).ticket_id != a.pk


def test_customer_360_page_merge_with_confirmation_and_undo(
    desk, email_inbox, sms_inbox, django_assert_max_num_queries
):
    keep = ingest(email_inbound(email_inbox, address="ana.k@example.com", display_name="Ana K")).ticket.customer
    other = ingest(inbound(sms_inbox, address="+48600100999", display_name="Ana K")).ticket.customer
    with django_assert_max_num_queries(25):
        page = desk.get(f"/desk/customers/{keep.pk}/")
    assert other in page.context["suggestions"], "same name is suggested as a duplicate"
    desk.post(f"/desk/customers/{keep.pk}/merge/", {"other": other.pk})
    assert CustomerMerge.objects.count() == 0, "no merge without confirmation"
    desk.post(f"/desk/customers/{keep.pk}/merge/", {"other": other.pk, "confirm": "yes"})
    merge = CustomerMerge.objects.get()
    assert set(keep.identities.values_list("address", flat=True)) == {"ana.k@example.com", "+48600100999"}
    desk.post(f"/desk/customers/merges/{merge.pk}/undo/")
    assert keep.identities.count() == 1
    desk.post(f"/desk/customers/{keep.pk}/identities/", {"kind": "phone", "address": "600 100 111"})
    assert keep.identities.filter(address="+48600100111").exists()
    ident = keep.identities.get(address="+48600100111")
    desk.post(f"/desk/customers/{keep.pk}/identities/{ident.pk}/remove/")
    assert not keep.identities.filter(pk=ident.pk).exists()


def test_customer_360_query_count_is_constant(desk, email_inbox, django_assert_max_num_queries):
    customer = ingest(email_inbound(email_inbox, address="many@example.com")).ticket.customer
    with django_assert_max_num_queries(25) as few:
        desk.get(f"/desk/customers/{customer.pk}/")
    for i in range(20):
        ingest(email_inbound(email_inbox, address="many@example.com", subject=f"Issue {i}"))
    with django_assert_max_num_queries(25) as many:
        desk.get(f"/desk/customers/{customer.pk}/")
    assert len(many.captured_queries) == len(few.captured_queries)


def test_canned_responses_are_filled_for_the_ticket(desk, email_inbox):
    from tickets.models import CannedResponse

    CannedResponse.objects.create(
        title="Thanks", body="Hi {customer.first_name}, about {ticket.reference}: — {agent.name}"
    )
    ticket = ingest(email_inbound(email_inbox, address="c@example.com", display_name="Marta Nowak")).ticket
    html = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert f"Hi Marta, about {ticket.reference}: — Ana" in html


def test_full_text_indexes_exist_and_search_uses_words(desk, email_inbox):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE indexname IN ('ticket_subject_fts', 'message_body_fts')")
        assert sorted(r[0] for r in cur.fetchall()) == ["message_body_fts", "ticket_subject_fts"]
    ingest(
        email_inbound(email_inbox, address="w1@example.com", subject="Kettle", text="The heating element burned out")
    )
    ingest(email_inbound(email_inbox, address="w2@example.com", subject="Mug", text="Handle broke off"))
    found = [t.subject for t in desk.get("/desk/", {"q": "heating burned"}).context["tickets"]]
    assert found == ["Kettle"]
