"""cxdesk.lookups.InConstants: `IN` with the code's constants written into the SQL."""

import pytest
from django.db import connection
from django.db.models import F, Q
from django.test.utils import CaptureQueriesContext

from cxdesk.lookups import InConstants
from tests.tickets.factories import TicketFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def test_it_finds_what_in_finds_with_the_values_in_the_sql():
    for status in ("new", "open", "pending", "solved", "closed"):
        TicketFactory(status=status)
    with CaptureQueriesContext(connection) as ctx:
        found = set(
            Ticket.objects.filter(Q(InConstants(F("status"), Ticket.OPEN_STATUSES))).values_list("status", flat=True)
        )
    assert found == set(Ticket.objects.filter(status__in=Ticket.OPEN_STATUSES).values_list("status", flat=True))
    assert found == {"new", "open", "pending"}
    assert "IN ('new', 'open', 'pending')" in ctx.captured_queries[0]["sql"]


@pytest.mark.parametrize("values", [(), ("open", "x') OR ('1'='1"), ("new open",), ("né",)])
def test_anything_but_plain_words_is_refused(values):
    with pytest.raises(ValueError, match="plain words"):
        InConstants(F("status"), values)
