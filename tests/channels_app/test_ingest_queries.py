"""What one inbound message costs the database: at most 10 statements (transaction control
— BEGIN, SAVEPOINT, RELEASE, COMMIT — aside), whether it opens a ticket or continues one.
Background work (routing, webhooks, acknowledgements) is queued in the same transaction and
runs in a worker, so it is not counted here."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.services import ingest
from cxdesk.memo import memo_scope
from tests.channels_app.factories import email_inbound, inbound

LIMIT = 10
CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT")


def statements(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(CONTROL)]


@pytest.mark.parametrize("continuing", [False, True], ids=["new conversation", "continuing"])
def test_an_sms_costs_at_most_ten_statements(sms_inbox, continuing, django_capture_on_commit_callbacks):
    ingest(inbound(sms_inbox, address="+48600100999", text="earlier"))
    address = "+48600100999" if continuing else "+48600100201"
    with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=False):
        result = ingest(inbound(sms_inbox, address=address, text="now"))
    assert result.created_ticket is not continuing
    sql = statements(ctx)
    assert len(sql) <= LIMIT, "\n".join(sql)


def test_an_email_reply_costs_at_most_ten_statements(email_inbox, django_capture_on_commit_callbacks):
    first = ingest(email_inbound(email_inbox, address="ola@example.com", subject="Order", message_id="<a@x>"))
    with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=False):
        reply = ingest(email_inbound(email_inbox, address="ola@example.com", subject="Re: Order", in_reply_to="<a@x>"))
    assert reply.ticket.pk == first.ticket.pk
    sql = statements(ctx)
    assert len(sql) <= LIMIT, "\n".join(sql)


def test_a_repeat_is_still_one_message(sms_inbox):
    """No probe before the insert any more: the unique constraint catches the repeat."""
    once = ingest(inbound(sms_inbox, provider_message_id="SM-same"))
    again = ingest(inbound(sms_inbox, provider_message_id="SM-same"))
    assert again.duplicate and again.message.pk == once.message.pk
    assert once.ticket.messages.count() == 1


def test_a_reply_that_reopens_a_solved_ticket_takes_no_savepoint_and_reads_nothing_back(
    email_inbox, django_capture_on_commit_callbacks
):
    """The reopen writes the status in one UPDATE (the count counted by the database, read
    back only when asked), the SLA clock without a savepoint of its own, and the activity
    times with the previous message's channel in one statement."""
    from tickets.models import Ticket, TicketEvent
    from tickets.services import ticket_set_status

    first = ingest(email_inbound(email_inbox, address="ola@example.com", subject="Order", message_id="<a@x>"))
    ticket_set_status(ticket=first.ticket, status=Ticket.Status.SOLVED)
    with (
        memo_scope(),  # as in a batch: the webhook subscriptions asked once
        CaptureQueriesContext(connection) as ctx,
        django_capture_on_commit_callbacks(execute=False),
    ):
        reply = ingest(email_inbound(email_inbox, address="ola@example.com", subject="Re: Order", in_reply_to="<a@x>"))
    assert reply.ticket.pk == first.ticket.pk
    sql = [q["sql"] for q in ctx.captured_queries]
    assert len([q for q in sql if q.startswith("SAVEPOINT")]) == 1, "ingest's own, none for the SLA clock"
    read_back = 'SELECT "tickets_ticket"."id", "tickets_ticket"."reopen_count" FROM'
    assert not [q for q in sql if q.startswith(read_back)], "the count is not read back"
    assert not [q for q in sql if q.startswith('SELECT "tickets_message"."channel"')], "returned by the UPDATE"
    # identity, customer, header, ticket, message, activity (+ previous channel), status,
    # webhook subscriptions, SLA clock, event, outbox row: 11 (13 and 2 savepoint statements before)
    assert len(statements(ctx)) <= 11, "\n".join(statements(ctx))
    assert reply.ticket.reopen_count == 1  # read when asked
    ticket = Ticket.objects.get(pk=first.ticket.pk)
    assert (ticket.status, ticket.reopen_count) == (Ticket.Status.OPEN, 1)
    assert TicketEvent.objects.filter(ticket=ticket, kind=TicketEvent.Kind.REOPENED).count() == 1
