import contextlib
import os

import pytest

from channels_app.services import ingest
from customers.models import Identity
from cxdesk.errors import ApplicationError
from tests.channels_app.factories import email_inbound, inbound
from tickets.models import Message, Ticket, TicketEvent, TicketMove
from tickets.services import merge_tickets, note_add, reply, split_ticket, ticket_set_status, undo_move

pytestmark = pytest.mark.django_db


def test_status_transitions_follow_the_table(email_inbox, agent):
    ticket = ingest(email_inbound(email_inbox)).ticket
    ticket_set_status(ticket=ticket, status="solved", actor=agent)
    assert ticket.solved_at is not None
    ticket_set_status(ticket=ticket, status="closed", actor=agent)
    with pytest.raises(ApplicationError) as exc:
        ticket_set_status(ticket=ticket, status="open", actor=agent)
    assert exc.value.code == "invalid_transition"
    kinds = list(TicketEvent.objects.filter(ticket=ticket, kind="status").values_list("data", flat=True))
    assert [(k["old"], k["new"]) for k in kinds] == [("new", "solved"), ("solved", "closed")]


def test_reply_is_stored_queued_then_sent_on_commit(email_inbox, agent, django_capture_on_commit_callbacks):
    from django.core import mail

    result = ingest(email_inbound(email_inbox, address="k@example.com"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = reply(ticket=result.ticket, author=agent, body="We are on it.")
    assert Message.objects.get(pk=message.pk).status == Message.Status.QUEUED
    assert mail.outbox == []
    for callback in callbacks:
        callback()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.email_message_id and message.provider_message_id == message.email_message_id
    ticket = Ticket.objects.get(pk=result.ticket.pk)
    assert ticket.first_response_at is not None and ticket.status == "open" and ticket.assignee == agent
    [sent] = mail.outbox
    assert sent.to == ["k@example.com"] or sent.to[0].endswith("<k@example.com>")
    assert f"[{ticket.reference}]" in sent.subject and sent.subject.startswith("Re: ")
    assert sent.extra_headers["In-Reply-To"] == result.message.email_message_id
    assert sent.extra_headers["Message-ID"] == message.email_message_id
    assert sent.reply_to == [f"support+{ticket.reply_token}@example.com"]
    # The customer's answer to it threads back by its headers.
    answer = ingest(
        email_inbound(email_inbox, address="k@example.com", subject=sent.subject, in_reply_to=message.email_message_id)
    )
    assert answer.ticket.pk == ticket.pk and answer.message.thread_reason == "header"


def test_a_sent_message_is_not_sent_again(email_inbox, agent, django_capture_on_commit_callbacks):
    from django.core import mail

    from channels_app.outbound import send_stored_message

    ticket = ingest(email_inbound(email_inbox)).ticket
    with django_capture_on_commit_callbacks(execute=True):
        message = reply(ticket=ticket, author=agent, body="once")
    assert send_stored_message(message.pk) == "sent"
    assert len(mail.outbox) == 1


def test_note_is_internal_and_not_sent(email_inbox, agent):
    from django.core import mail

    ticket = ingest(email_inbound(email_inbox)).ticket
    note = note_add(ticket=ticket, author=agent, body="@bob can you check?")
    assert note.direction == Message.Direction.NOTE
    assert mail.outbox == []


def test_reply_without_identity_for_channel_is_a_clear_error(email_inbox, agent):
    ticket = ingest(email_inbound(email_inbox)).ticket
    with pytest.raises(ApplicationError) as exc:
        reply(ticket=ticket, author=agent, body="hi", channel="sms")
    assert exc.value.code == "no_identity_for_channel"
    assert Message.objects.filter(direction="outbound").count() == 0


def test_merge_and_undo(email_inbox, sms_inbox, agent):
    a = ingest(email_inbound(email_inbox, address="m@example.com"))
    b = ingest(email_inbound(email_inbox, address="m@example.com", subject="Second issue"))
    assert a.ticket.pk != b.ticket.pk
    move = merge_tickets(source=b.ticket, target=a.ticket, actor=agent)
    assert Message.objects.filter(ticket=a.ticket).count() == 2
    source = Ticket.objects.get(pk=b.ticket.pk)
    assert source.status == "closed" and source.merged_into_id == a.ticket.pk
    # A reply to the merged ticket's message lands in the target.
    r = ingest(
        email_inbound(
            email_inbox, address="m@example.com", subject="Re: Second", in_reply_to=b.message.email_message_id
        )
    )
    assert r.ticket.pk == a.ticket.pk
    undo_move(move=move, actor=agent)
    source.refresh_from_db()
    assert source.status == "new" and source.merged_into_id is None
    assert list(Message.objects.filter(ticket=source).values_list("pk", flat=True)) == [b.message.pk]


def test_a_merge_moves_the_last_customer_channel_with_the_messages(email_inbox, sms_inbox, agent):
    """The target of a merge remembers the channel of the customer's latest message among
    those it received, so the next message's channel switch is told right."""
    older = ingest(inbound(sms_inbox, address="+48600100302", text="the first issue")).ticket
    Identity.objects.create(customer=older.customer, kind="email", address="c@example.com")
    newer = ingest(email_inbound(email_inbox, address="c@example.com")).ticket  # a fresh mail: its own ticket
    assert newer.pk != older.pk and (older.last_customer_channel, newer.last_customer_channel) == ("sms", "email")
    merge_tickets(source=newer, target=older, actor=agent)
    assert Ticket.objects.get(pk=older.pk).last_customer_channel == "email"


def test_split_and_undo(sms_inbox, agent):
    first = ingest(inbound(sms_inbox, text="order 1 broken"))
    second = ingest(inbound(sms_inbox, text="also: change my address"))
    move = split_ticket(ticket=first.ticket, message_ids=[second.message.pk], actor=agent)
    assert move.kind == TicketMove.Kind.SPLIT
    assert Message.objects.get(pk=second.message.pk).ticket_id == move.target_id
    assert move.target.customer_id == first.ticket.customer_id
    with pytest.raises(ApplicationError):
        split_ticket(ticket=first.ticket, message_ids=[first.message.pk], actor=agent)
    undo_move(move=move, actor=agent)
    assert Message.objects.get(pk=second.message.pk).ticket_id == first.ticket.pk
    assert Ticket.objects.get(pk=move.target_id).status == "closed"


def test_activity_batched_writes_each_tickets_newest_activity_once_and_drops_a_rolled_back_one(sms_inbox):
    """Inside `activity_batched()` the messages' tickets get their activity in one UPDATE as
    the block ends — the newest per ticket — and a message stored in a savepoint that rolls
    back leaves its ticket as it was."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from tickets.services import activity_batched, message_receive

    kept = ingest(inbound(sms_inbox, address="+48600100701")).ticket
    dropped = ingest(inbound(sms_inbox, address="+48600100702")).ticket
    before = Ticket.objects.get(pk=dropped.pk).last_message_at

    def receive(ticket, body):
        return message_receive(
            customer=ticket.customer, channel="whatsapp", ticket=ticket, body_text=body, thread_reason="test"
        )

    with transaction.atomic(), CaptureQueriesContext(connection) as ctx, activity_batched():
        receive(kept, "one")
        last = receive(kept, "two").message
        with contextlib.suppress(RuntimeError), transaction.atomic():
            receive(dropped, "gone")
            raise RuntimeError("rolled back")
    updates = [q["sql"] for q in ctx.captured_queries if 'UPDATE "tickets_ticket"' in q["sql"]]
    assert len(updates) == 1
    kept.refresh_from_db()
    assert kept.last_customer_channel == "whatsapp" and kept.last_message_at <= last.created_at
    assert kept.last_message_at > Message.objects.get(body_text="one").created_at
    dropped.refresh_from_db()
    assert dropped.last_message_at == before and dropped.last_customer_channel == "sms"


@pytest.mark.django_db(transaction=True)
def test_rows_batched_writes_tickets_and_messages_together_and_what_points_at_them_first(sms_inbox, settings, tmp_path):
    """Inside `rows_batched()` the new tickets and the messages are one INSERT each as the
    block ends; their attachments, events and SLA rows, written before them, point at ids
    drawn ahead (the foreign keys are checked at commit). Past the ids drawn, a row is
    written at once; one created in a savepoint that rolls back is not written."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from customers.models import Customer
    from tickets.services import message_receive, rows_batched

    if connection.vendor != "postgresql":
        assert os.environ.get("CI") != "true", "CI runs the suite on PostgreSQL"
        pytest.skip("PostgreSQL only (elsewhere the block writes each row at once)")
    settings.MEDIA_ROOT = str(tmp_path)
    first, second = Customer.objects.create(name="A"), Customer.objects.create(name="B")
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx, rows_batched(tickets=1, messages=3):
        a = message_receive(
            customer=first, channel="sms", inbox=sms_inbox, body_text="photo", thread_reason="new_ticket",
            attachments=[("photo.png", b"\x89PNG...", "image/png")],
        )  # fmt: skip
        b = message_receive(customer=second, channel="sms", inbox=sms_inbox, body_text="hi", thread_reason="new_ticket")
        assert not Message.objects.filter(pk=a.message.pk).exists(), "not written yet"
        with contextlib.suppress(RuntimeError), transaction.atomic():
            message_receive(customer=first, channel="sms", ticket=a.ticket, body_text="undone", thread_reason="test")
            raise RuntimeError("rolled back")
    inserts = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].startswith(('INSERT INTO "tickets_message"', 'INSERT INTO "tickets_ticket"'))
    ]
    assert len(inserts) == 3, "the ticket past the ids drawn at once; then one INSERT per kind"
    assert Message.objects.get(pk=a.message.pk).attachments.get().filename == "photo.png"
    assert Ticket.objects.get(pk=a.ticket.pk).events.filter(kind="created").exists()
    assert Message.objects.get(pk=b.message.pk).ticket_id == b.ticket.pk != a.ticket.pk
    assert not Message.objects.filter(body_text="undone").exists(), "dropped with its savepoint"
