import re
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Channel
from channels_app.services import ingest
from customers.models import Customer, Identity
from cxdesk.errors import ApplicationError
from tests.sockets import sent_events
from tickets.models import Message, Ticket, TicketEvent
from tickets.services import ticket_set_status

from .factories import email_inbound, inbound

pytestmark = pytest.mark.django_db


def test_same_delivery_five_times_is_one_message(sms_inbox):
    results = [ingest(inbound(sms_inbox, provider_message_id="SM123", text="hi")) for _ in range(5)]
    assert Message.objects.count() == 1
    assert [r.duplicate for r in results] == [False, True, True, True, True]
    assert {r.message.pk for r in results} == {results[0].message.pk}
    assert Ticket.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_same_delivery_from_concurrent_threads_is_one_message(sms_inbox):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (set DATABASE_URL); SQLite serialises writers")
    barrier = threading.Barrier(5)
    results, errors = [], []

    def deliver():
        try:
            barrier.wait()
            results.append(ingest(inbound(sms_inbox, provider_message_id="SMrace", address="+48 600 100 999")))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Message.objects.filter(provider_message_id="SMrace").count() == 1
    assert Customer.objects.count() == 1
    assert Ticket.objects.count() == 1
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]


@pytest.mark.django_db(transaction=True)
def test_concurrent_different_messages_of_one_new_customer_share_one_ticket(sms_inbox):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (set DATABASE_URL)")
    barrier = threading.Barrier(4)

    def deliver(i):
        try:
            barrier.wait()
            ingest(inbound(sms_inbox, provider_message_id=f"SMc{i}", address="+48600100777", text=f"part {i}"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Message.objects.count() == 4
    assert Ticket.objects.count() == 1


def test_email_case_resolves_to_one_identity(email_inbox):
    a = ingest(email_inbound(email_inbox, address="Jan.Kowalski@Example.COM", subject="Re: order"))
    b = ingest(email_inbound(email_inbox, address="jan.kowalski@example.com", subject="Re: order"))
    assert Identity.objects.filter(kind="email").count() == 1
    assert a.message.identity_id == b.message.identity_id
    assert Identity.objects.get().address == "jan.kowalski@example.com"


@pytest.mark.parametrize(
    "number", ["+48 600 100 200", "0048600100200", "600 100 200", "+48600100200", "whatsapp:+48600100200"]
)
def test_phone_formats_resolve_to_one_identity(sms_inbox, number):
    ingest(inbound(sms_inbox, address="+48600100200"))
    ingest(inbound(sms_inbox, address=number))
    assert list(Identity.objects.values_list("kind", "address")) == [("phone", "+48600100200")]


def test_same_number_on_sms_and_whatsapp_is_one_identity_and_one_ticket(sms_inbox):
    a = ingest(inbound(sms_inbox, channel=Channel.SMS, address="+48600100200"))
    b = ingest(inbound(sms_inbox, channel=Channel.WHATSAPP, address="whatsapp:+48600100200"))
    assert a.ticket.pk == b.ticket.pk
    assert b.message.thread_reason == Message.ThreadReason.OPEN_TICKET
    assert TicketEvent.objects.filter(ticket=a.ticket, kind=TicketEvent.Kind.CHANNEL_SWITCH).count() == 1


def test_email_then_sms_from_linked_customer_is_one_ticket(email_inbox, sms_inbox):
    first = ingest(email_inbound(email_inbox, address="ola@example.com", subject="Broken parcel"))
    Identity.objects.create(customer=first.ticket.customer, kind="phone", address="+48600100300")
    second = ingest(inbound(sms_inbox, address="600 100 300", text="any news?"))
    assert second.ticket.pk == first.ticket.pk
    assert second.created_ticket is False
    assert second.message.thread_reason == Message.ThreadReason.OPEN_TICKET
    event = TicketEvent.objects.get(ticket=first.ticket, kind=TicketEvent.Kind.CHANNEL_SWITCH)
    assert event.data["old"] == "email" and event.data["new"] == "sms"


def test_the_channel_switch_is_told_by_the_tickets_last_customer_channel(email_inbox, sms_inbox):
    """The ticket remembers the channel of the customer's latest message: a switch is seen
    without reading the messages back; a ticket from before that column asks them."""
    first = ingest(email_inbound(email_inbox, address="ola@example.com", subject="Broken parcel"))
    Identity.objects.create(customer=first.ticket.customer, kind="phone", address="+48600100301")
    assert Ticket.objects.get(pk=first.ticket.pk).last_customer_channel == "email"
    with CaptureQueriesContext(connection) as ctx:
        ingest(inbound(sms_inbox, address="600 100 301", text="any news?"))
    assert not [q for q in ctx.captured_queries if q["sql"].startswith('SELECT "tickets_message"."channel"')]
    assert Ticket.objects.get(pk=first.ticket.pk).last_customer_channel == "sms"
    Ticket.objects.filter(pk=first.ticket.pk).update(last_customer_channel="")  # as an older ticket
    ingest(email_inbound(email_inbox, address="ola@example.com", subject="Re: Broken parcel"))
    switches = TicketEvent.objects.filter(ticket=first.ticket, kind=TicketEvent.Kind.CHANNEL_SWITCH)
    assert [(e.data["old"], e.data["new"]) for e in switches.order_by("id")] == [("email", "sms"), ("sms", "email")]
    assert Ticket.objects.get(pk=first.ticket.pk).last_customer_channel == "email"


def test_sms_after_the_continuity_window_opens_a_new_ticket(sms_inbox):
    first = ingest(inbound(sms_inbox, text="hello"))
    Ticket.objects.filter(pk=first.ticket.pk).update(last_message_at=timezone.now() - timedelta(days=8))
    second = ingest(inbound(sms_inbox, text="hello again"))
    assert second.ticket.pk != first.ticket.pk
    assert second.created_ticket is True
    assert second.message.thread_reason == Message.ThreadReason.NEW_TICKET


def test_continuity_window_is_per_inbox(sms_inbox):
    sms_inbox.continuity_window = timedelta(hours=1)
    sms_inbox.save()
    first = ingest(inbound(sms_inbox))
    Ticket.objects.filter(pk=first.ticket.pk).update(last_message_at=timezone.now() - timedelta(hours=2))
    assert ingest(inbound(sms_inbox)).ticket.pk != first.ticket.pk


def test_customer_reply_reopens_a_solved_ticket(email_inbox, agent):
    first = ingest(email_inbound(email_inbox, message_id="<orig@x>"))
    ticket_set_status(ticket=first.ticket, status=Ticket.Status.SOLVED, actor=agent)
    reply = ingest(email_inbound(email_inbox, subject="Re: Help", in_reply_to="<orig@x>", references=["<orig@x>"]))
    ticket = Ticket.objects.get(pk=first.ticket.pk)
    assert reply.ticket.pk == ticket.pk
    assert reply.message.thread_reason == Message.ThreadReason.HEADER
    assert ticket.status == Ticket.Status.OPEN
    assert ticket.reopen_count == 1
    assert TicketEvent.objects.filter(ticket=ticket, kind=TicketEvent.Kind.REOPENED).exists()


def test_reply_to_a_closed_ticket_opens_a_new_one(email_inbox):
    first = ingest(email_inbound(email_inbox, message_id="<c@x>"))
    Ticket.objects.filter(pk=first.ticket.pk).update(status=Ticket.Status.CLOSED)
    reply = ingest(email_inbound(email_inbox, subject="Re: Help", in_reply_to="<c@x>"))
    assert reply.ticket.pk != first.ticket.pk and reply.created_ticket


def test_subject_reference_threads_only_for_the_same_customer(email_inbox):
    first = ingest(email_inbound(email_inbox, address="a@example.com", subject="Invoice"))
    ref = first.ticket.reference
    mine = ingest(email_inbound(email_inbox, address="a@example.com", subject=f"Invoice again [{ref}]"))
    assert mine.ticket.pk == first.ticket.pk
    assert mine.message.thread_reason == Message.ThreadReason.SUBJECT_REFERENCE
    stranger = ingest(email_inbound(email_inbox, address="b@example.com", subject=f"Fresh [{ref}]"))
    assert stranger.ticket.pk != first.ticket.pk


def test_reply_token_threads(email_inbox):
    first = ingest(email_inbound(email_inbox, address="t@example.com", subject="Question"))
    other = ingest(email_inbound(email_inbox, address="t@example.com", subject="Another question"))
    assert other.ticket.pk != first.ticket.pk, "a fresh email is a new conversation"
    via_token = ingest(
        email_inbound(email_inbox, address="t@example.com", subject="no refs", reply_token=first.ticket.reply_token)
    )
    assert via_token.ticket.pk == first.ticket.pk
    assert via_token.message.thread_reason == Message.ThreadReason.REPLY_TOKEN


def test_reply_arriving_before_its_parent_joins_when_the_parent_lands(email_inbox):
    child = ingest(email_inbound(email_inbox, address="o@example.com", subject="Re: X", in_reply_to="<parent@x>"))
    parent = ingest(email_inbound(email_inbox, address="o@example.com", subject="X", message_id="<parent@x>"))
    assert parent.ticket.pk == child.ticket.pk
    assert parent.message.thread_reason == Message.ThreadReason.HEADER


def test_ingest_broadcasts_after_commit(sms_inbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = ingest(inbound(sms_inbox))
    assert sent_events() == [], "nothing may be broadcast before the commit"
    for callback in callbacks:
        callback()
    events = [(e["group"], e["event"]) for e in sent_events()]
    assert (f"ticket.{result.ticket.pk}", "message.created") in events
    assert ("inbox", "ticket.activity") in events


def test_bad_input_stores_nothing(sms_inbox):
    with pytest.raises(ApplicationError):
        ingest(inbound(sms_inbox, address="not a number"))
    with pytest.raises(ApplicationError):
        ingest(inbound(sms_inbox, address=""))
    assert Customer.objects.count() == 0 and Message.objects.count() == 0


def test_html_is_sanitised_and_text_derived(email_inbox):
    result = ingest(
        email_inbound(email_inbox, text="", html='<p onclick="x()">Hello<script>alert(1)</script> <b>there</b></p>')
    )
    assert "script" not in result.message.body_html and "onclick" not in result.message.body_html
    assert result.message.body_text == "Hello there"


def test_ingest_of_a_new_customer_runs_a_bounded_number_of_queries(sms_inbox, django_assert_max_num_queries):
    ingest(inbound(sms_inbox, address="+48600100201"))  # warm caches (content types etc.)
    # 15 for the pipeline itself + 1 per outgoing-webhook event (ticket.created, message.created)
    # + 1 for the SLA policy lookup
    with django_assert_max_num_queries(18):
        ingest(inbound(sms_inbox, address="+48600100202", text="new customer"))


def _other_open_tickets(count: int = 1500) -> tuple[list[Customer], object]:
    """`count` other customers with an open ticket each, never analysed; and the time now."""
    others = Customer.objects.bulk_create([Customer(name=f"c{i}") for i in range(count)])
    now = timezone.now()
    Ticket.objects.bulk_create(
        Ticket(customer=c, subject="x", channel="sms", status="open", last_message_at=now) for c in others
    )
    return others, now


def _plan(qs) -> str:
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_continuity_lookup_goes_through_the_customer_even_before_statistics(sms_inbox):
    """A new desk under a burst: the tickets table has no statistics yet (this test's rows are
    never analysed). The lookup of a customer's open tickets must still start from the
    customer, not walk an index of every open ticket."""
    from channels_app.services import continuity_candidates

    first = ingest(inbound(sms_inbox, address="+48600100500", text="mine"))
    _others, now = _other_open_tickets()
    qs = continuity_candidates([first.ticket.customer_id], now - timedelta(days=1))
    assert [t.pk for t in qs] == [first.ticket.pk]
    plan = _plan(qs)
    assert re.search(r"Index Cond: \(+customer_id = ", plan), plan


def test_a_batchs_ticket_lookup_goes_through_the_customers_even_before_statistics(sms_inbox):
    """The same for a batch: its senders' open tickets are read and locked in one statement
    through the customer index; tickets its headers name besides, by primary key."""
    from channels_app.services import chunk_tickets, continuity_candidates

    first = ingest(inbound(sms_inbox, address="+48600100501", text="mine"))
    second = ingest(inbound(sms_inbox, address="+48600100502", text="mine too"))
    others, now = _other_open_tickets()
    named = Ticket.objects.filter(customer=others[0]).get()
    customers, cutoff = {first.ticket.customer_id, second.ticket.customer_id}, now - timedelta(days=1)
    found = chunk_tickets({named.pk, first.ticket.pk}, customers, cutoff)
    assert sorted(t.pk for t in found) == sorted([first.ticket.pk, second.ticket.pk, named.pk])
    plan = _plan(continuity_candidates(customers, cutoff))
    assert re.search(r"Index Cond: \(+customer_id = ANY", plan), plan
    assert "Seq Scan" not in plan, plan
