import pytest

from channels_app.services import ingest
from customers.models import Customer, CustomerMerge, Identity
from customers.services import merge_customers, unmerge_customers
from cxdesk.errors import ApplicationError
from tests.channels_app.factories import email_inbound, inbound
from tickets.models import Ticket, TicketEvent

pytestmark = pytest.mark.django_db


def test_merge_moves_everything_and_unmerge_restores_exactly(email_inbox, sms_inbox, agent):
    a = ingest(email_inbound(email_inbox, address="ewa@example.com", display_name="Ewa"))
    b = ingest(inbound(sms_inbox, address="+48600100400", display_name="Ewa N."))
    keep, other = a.ticket.customer, b.ticket.customer
    other.attributes = {"plan": "gold"}
    other.save()
    merge = merge_customers(keep=keep, other=other, actor=agent)

    other.refresh_from_db()
    keep.refresh_from_db()
    assert other.merged_into_id == keep.pk
    assert set(Identity.objects.filter(customer=keep).values_list("address", flat=True)) == {
        "ewa@example.com",
        "+48600100400",
    }
    assert set(Ticket.objects.filter(customer=keep).values_list("pk", flat=True)) == {a.ticket.pk, b.ticket.pk}
    assert keep.attributes == {"plan": "gold"}
    assert list(TicketEvent.objects.filter(kind=TicketEvent.Kind.CUSTOMER_MERGED).values_list("ticket", flat=True)) == [
        b.ticket.pk
    ]

    # After the merge, the customer's next SMS joins their open ticket.
    c = ingest(inbound(sms_inbox, address="+48600100400"))
    assert c.ticket.customer_id == keep.pk

    unmerge_customers(merge=merge, actor=agent)
    other.refresh_from_db()
    keep.refresh_from_db()
    assert other.merged_into_id is None
    assert list(Identity.objects.filter(customer=other).values_list("address", flat=True)) == ["+48600100400"]
    assert Ticket.objects.get(pk=b.ticket.pk).customer_id == other.pk
    assert Ticket.objects.get(pk=a.ticket.pk).customer_id == keep.pk
    assert keep.attributes == {}
    assert CustomerMerge.objects.get().undone_at is not None
    with pytest.raises(ApplicationError):
        unmerge_customers(merge=merge, actor=agent)


def test_merge_refuses_self_and_merged(email_inbox):
    c1 = ingest(email_inbound(email_inbox, address="x1@example.com")).ticket.customer
    c2 = ingest(email_inbound(email_inbox, address="x2@example.com")).ticket.customer
    c3 = ingest(email_inbox and email_inbound(email_inbox, address="x3@example.com")).ticket.customer
    with pytest.raises(ApplicationError):
        merge_customers(keep=c1, other=c1)
    merge_customers(keep=c1, other=c2)
    with pytest.raises(ApplicationError):
        merge_customers(keep=c3, other=Customer.objects.get(pk=c2.pk))
