"""What one inbound message costs the database: at most 10 statements (transaction control
— BEGIN, SAVEPOINT, RELEASE, COMMIT — aside), whether it opens a ticket or continues one.
Background work (routing, webhooks, acknowledgements) is queued in the same transaction and
runs in a worker, so it is not counted here."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.services import ingest
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
