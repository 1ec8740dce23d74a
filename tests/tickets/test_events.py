"""tickets.events: one writer per kind; inside `batched()` the block's events are written
together as it ends, each with the time it was recorded."""

import contextlib

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.sockets import sent_events
from tests.tickets.factories import TicketFactory
from tickets import events
from tickets.models import TicketEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_writes_its_events_in_one_insert_with_their_own_times_and_announces_their_ids():
    ticket = TicketFactory()
    with CaptureQueriesContext(connection) as ctx, transaction.atomic(), events.batched():
        first = events.created(ticket, channel="email")
        recorded = timezone.now()
        with contextlib.suppress(RuntimeError), transaction.atomic():
            events.reopened(ticket, old="solved", message_id=1)
            raise RuntimeError("this savepoint rolls back: its event with it")
        second = events.channel_switched(ticket, old="sms", new="email", message_id=2)
        assert first.pk is None and not TicketEvent.objects.exists(), "written as the batch ends"
    inserts = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('INSERT INTO "tickets_ticketevent"')]
    assert len(inserts) == 1
    stored = list(TicketEvent.objects.order_by("pk").values_list("pk", "kind", "created_at"))
    assert [(pk, kind) for pk, kind, _at in stored] == [(first.pk, "created"), (second.pk, "channel_switch")]
    assert stored[0][2] <= recorded <= stored[1][2], "each keeps the time it was recorded"
    announced = [(e["kind"], e["event_id"]) for e in sent_events() if e["event"] == "ticket.event"]
    assert announced == [("created", first.pk), ("channel_switch", second.pk)]


def test_a_batch_that_raises_writes_nothing():
    ticket = TicketFactory()
    with contextlib.suppress(RuntimeError), transaction.atomic(), events.batched():
        events.created(ticket, channel="email")
        raise RuntimeError
    assert not TicketEvent.objects.exists()


def test_outside_a_batch_an_event_is_written_at_once():
    ticket = TicketFactory()
    event = events.created(ticket, channel="email")
    assert event.pk and TicketEvent.objects.get().kind == "created"
