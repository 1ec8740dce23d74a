"""What a signed-in portal customer may see: their own tickets (organisation admins: their
organisation's), never internal notes, never anyone else's anything."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from customers.models import Customer
from tickets.models import Attachment, Message, Ticket


def portal_tickets(*, customer: Customer) -> QuerySet[Ticket]:
    scope = Q(customer=customer)
    if customer.organization_id and customer.attributes.get("org_admin") is True:
        scope |= Q(customer__organization_id=customer.organization_id)
    # Merged-away tickets and tickets left without a public message (an undone split) are
    # not the customer's requests any more.
    public = Message.objects.filter(ticket=OuterRef("pk")).exclude(direction=Message.Direction.NOTE)
    return (
        Ticket.objects.filter(scope, Exists(public), merged_into=None)
        .select_related("customer")
        .order_by("-last_message_at", "-id")
    )


def portal_ticket(*, customer: Customer, ticket_id: int) -> Ticket | None:
    return portal_tickets(customer=customer).filter(pk=ticket_id).first()


def portal_messages(*, ticket: Ticket) -> QuerySet[Message]:
    return (
        ticket.messages.exclude(direction=Message.Direction.NOTE)
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )


def portal_attachment(*, customer: Customer, attachment_id: int) -> Attachment | None:
    return (
        Attachment.objects.filter(pk=attachment_id, message__ticket__in=portal_tickets(customer=customer))
        .exclude(message__direction=Message.Direction.NOTE)
        .first()
    )
