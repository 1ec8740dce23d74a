"""tickets.deferred.insert: a block's rows in one INSERT, on PostgreSQL as one array per
column, so that the statement is the same whatever the number of rows."""

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone

from tests.tickets.factories import TicketFactory
from tickets import deferred
from tickets.models import TicketEvent

pytestmark = pytest.mark.django_db

FIELDS = [TicketEvent._meta.get_field(name) for name in ("ticket", "kind", "actor", "data", "created_at")]


def _events(ticket, n):
    now = timezone.now()
    return [TicketEvent(ticket=ticket, kind="note", data={"n": i, "text": "é" * i}, created_at=now) for i in range(n)]


def test_rows_keep_their_values_and_ids_come_back_in_their_order():
    ticket = TicketFactory()
    rows = _events(ticket, 60)
    ids = deferred.insert(TicketEvent, FIELDS, rows, returning=True)
    stored = dict(TicketEvent.objects.filter(pk__in=ids).values_list("pk", "data"))
    assert [stored[pk] for pk in ids] == [{"n": i, "text": "é" * i} for i in range(60)]


def test_the_statement_is_the_same_for_any_number_of_rows_with_one_parameter_per_column():
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (the array form is PostgreSQL's; SQLite gets VALUES)")
    ticket = TicketFactory()
    sent = []

    def record(execute, sql, params, many, context):
        sent.append((sql, len(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        deferred.insert(TicketEvent, FIELDS, _events(ticket, 2))
        deferred.insert(TicketEvent, FIELDS, _events(ticket, 80))
    assert len(sent) == 2 and sent[0] == sent[1], sent
    assert sent[0][1] == len(FIELDS)
    assert TicketEvent.objects.filter(ticket=ticket).count() == 82


def test_a_value_too_long_for_its_column_fails_rather_than_being_cut_short():
    """The arrays are cast to the column's type without its length, as Django's bulk_create
    does: `varchar(50)[]` would cut a longer value short without a word."""
    ticket = TicketFactory()
    too_long = "x" * (TicketEvent._meta.get_field("kind").max_length + 1)
    rows = [TicketEvent(ticket=ticket, kind=too_long, data={}, created_at=timezone.now())] * 2
    with pytest.raises(DataError), transaction.atomic():
        deferred.insert(TicketEvent, FIELDS, rows)
