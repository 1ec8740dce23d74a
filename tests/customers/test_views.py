import pytest

from channels_app.services import ingest
from customers.models import CustomerMerge, Identity
from tests.channels_app.factories import email_inbound, inbound
from tests.tickets.factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_customer_360_page_merge_with_confirmation_and_undo(
    desk, email_inbox, sms_inbox, django_assert_max_num_queries
):
    keep = ingest(email_inbound(email_inbox, address="ana.k@example.com", display_name="Ana K")).ticket.customer
    other = ingest(inbound(sms_inbox, address="+48600100999", display_name="Ana K")).ticket.customer
    with django_assert_max_num_queries(25):
        page = desk.get(f"/desk/customers/{keep.pk}/")
    assert other in [s.customer for s in page.context["suggestions"]], "same name is suggested as a duplicate"
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


def test_customer_360_shows_identities_tickets_open_first_and_figures(desk, email_inbox, sms_inbox):
    from tickets.services import ticket_update

    older_open = ingest(inbound(sms_inbox, address="+48600100555", text="Older but open")).ticket
    customer = older_open.customer
    Identity.objects.create(customer=customer, kind="email", address="z@example.com")
    newer = ingest(email_inbound(email_inbox, address="z@example.com", subject="Newer, solved")).ticket
    assert newer.customer_id == customer.pk and newer.pk != older_open.pk
    ticket_update(ticket=newer, status="solved")
    page = desk.get(f"/desk/customers/{customer.pk}/").content.decode()
    assert "z@example.com" in page and "+48600100555" in page
    stats = page[page.index('class="stats"') :]
    assert "<b>2</b><span>tickets</span>" in stats and "<b>1</b><span>open</span>" in stats
    channels = page[page.index("Channels:") : page.index("First seen")]
    assert 'title="email"' in channels and 'title="sms"' in channels
    tickets = page[page.index('class="other-tickets"') :]
    assert tickets.index(older_open.reference) < tickets.index(newer.reference), "open tickets first"


def test_identity_add_from_the_ticket_panel_returns_to_the_ticket(desk, email_inbox):
    ticket = ingest(email_inbound(email_inbox, address="p@example.com")).ticket
    nxt = f"/desk/tickets/{ticket.pk}/"
    response = desk.post(f"/desk/customers/{ticket.customer_id}/identities/", {"kind": "phone", "address": "+48 600 100 222", "next": nxt})  # fmt: skip
    assert response.status_code == 302 and response["Location"] == nxt
    assert ticket.customer.identities.filter(address="+48600100222").exists()
    evil = desk.post(f"/desk/customers/{ticket.customer_id}/identities/", {"kind": "email", "address": "bad", "next": "https://evil.example/"}, follow=True)  # fmt: skip
    assert evil.redirect_chain[0][0] == f"/desk/customers/{ticket.customer_id}/"
    assert b'class="error"' in evil.content, "the service's error is shown"


def test_duplicates_by_identity_pattern_and_customer_pages_need_staff(client, desk, email_inbox, sms_inbox):
    a = ingest(email_inbound(email_inbox, address="marta.k@shop.example")).ticket.customer
    b = ingest(email_inbound(email_inbox, address="marta.k@gmail.example")).ticket.customer
    c = ingest(inbound(sms_inbox, address="+48600100444")).ticket.customer
    Identity.objects.create(customer=a, kind="phone", address="+1600100444")
    suggestions = desk.get(f"/desk/customers/{a.pk}/").context["suggestions"]
    assert {s.customer for s in suggestions} == {b, c}
    assert all(s.reasons == ["a similar address"] for s in suggestions)
    assert desk.get("/desk/customers/999999/").status_code == 404
    client.force_login(AgentFactory(username="plain", is_staff=False))
    assert client.get(f"/desk/customers/{a.pk}/").status_code == 302
    client.post(f"/desk/customers/{a.pk}/merge/", {"other": b.pk, "confirm": "yes"})
    assert CustomerMerge.objects.count() == 0
