"""cxdesk.compiled: a queryset compiled once per process, run with new values (`Compiled`)
or kept under a key (`Statements`), gives what the ORM gives."""

import pytest
from django.db import connection
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from customers.models import Customer, Identity
from customers.services import identity_with_customer
from cxdesk.compiled import Compiled, Statement, Statements

pytestmark = pytest.mark.django_db


def _lookup():
    return Compiled(
        lambda kind, address: Identity.objects.select_related("customer").filter(kind=kind, address=address),
        "kind",
        "address",
    )


def test_it_finds_what_the_orm_finds_with_the_related_row_and_converted_values():
    customer = Customer.objects.create(name="Ann", attributes={"plan": "gold", "seats": 3})
    Identity.objects.create(customer=customer, kind="email", address="o'hara@example.com")
    Identity.objects.create(customer=customer, kind="phone", address="+48600100200")
    lookup = _lookup()
    found = lookup.first(kind="email", address="o'hara@example.com")
    expected = Identity.objects.select_related("customer").get(kind="email", address="o'hara@example.com")
    assert found == expected and found.address == "o'hara@example.com" and found.created_at == expected.created_at
    assert not found._state.adding and found._state.db == "default"
    with CaptureQueriesContext(connection) as ctx:
        assert found.customer == customer and found.customer.attributes == {"plan": "gold", "seats": 3}
    assert not ctx.captured_queries, "the customer came with the identity"
    assert lookup.first(kind="phone", address="+48600100200").kind == "phone"
    assert lookup.first(kind="email", address="nobody@example.com") is None
    assert lookup.first(kind="phone", address="o'hara@example.com") is None, "both values are used"


def test_it_compiles_once_then_runs_one_statement(monkeypatch):
    customer = Customer.objects.create(name="Ann")
    Identity.objects.create(customer=customer, kind="email", address="ann@example.com")
    lookup = _lookup()
    assert lookup.first(kind="email", address="ann@example.com") is not None
    compiled = []
    real = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compiled.append(1) or real(self, *a, **k))
    with CaptureQueriesContext(connection) as ctx:
        assert lookup.first(kind="email", address="ann@example.com").customer_id == customer.pk
        assert lookup.first(kind="email", address="bob@example.com") is None
    assert compiled == [] and len(ctx.captured_queries) == 2


def test_a_parameter_that_does_not_land_once_is_refused():
    twice = Compiled(
        lambda address: Identity.objects.filter(address=address) | Identity.objects.filter(kind=address), "address"
    )
    with pytest.raises(ValueError, match="lands 2 times"):
        twice.first(address="x")


def test_identity_with_customer_is_the_kept_lookup():
    customer = Customer.objects.create(name="Cy")
    identity = Identity.objects.create(customer=customer, kind="email", address="cy@example.com")
    assert identity_with_customer("email", "cy@example.com") == identity
    assert identity_with_customer("email", "cy@example.com").customer.name == "Cy"


def test_a_kept_statement_reads_what_the_orm_reads_converted_every_time(monkeypatch):
    Customer.objects.create(name="Ann", attributes={"plan": "gold"})
    kept = Statements(size=10)
    built = []

    def build():
        built.append(1)
        return Statement.of(Customer.objects.order_by("pk").values_list("name", "attributes", "created_at"))

    assert kept.get("all", build).rows() == list(
        Customer.objects.order_by("pk").values_list("name", "attributes", "created_at")
    )
    assert kept.get("all", build).rows()[0][1] == {"plan": "gold"}, "the JSON column is converted"
    Customer.objects.create(name="Bob")
    assert [row[0] for row in kept.get("all", build).rows()] == ["Ann", "Bob"], "run again, not replayed"
    assert built == [1] and len(kept) == 1
    assert kept.get(None, build).row()[0] == "Ann" and built == [1, 1] and len(kept) == 1, "None keeps nothing"


def test_kept_statements_are_bounded_and_a_statement_that_matches_nothing_runs_nothing():
    kept = Statements(size=2)
    for n in range(3):
        kept.get(n, lambda: Statement.of(Customer.objects.values_list("pk")))
    assert len(kept) == 1, "full: forgotten all at once, then the new one kept"
    nothing = Statement.of(Customer.objects.none().values_list("pk"))
    with CaptureQueriesContext(connection) as ctx:
        assert nothing.rows() == [] and nothing.row() is None
    assert not ctx.captured_queries


def test_number_markers_fill_every_place_they_land_and_must_land_unless_optional():
    from tickets.models import Ticket

    customer = Customer.objects.create(name="Ann")
    theirs = Identity.objects.create(customer=customer, kind="email", address="ann@example.com")
    both = Compiled(
        lambda customer_id: Identity.objects.filter(customer_id=customer_id).filter(
            customer__name__gt="", customer__pk=customer_id
        ),
        "customer_id",
        numbers=("customer_id",),
    )
    assert both.first(customer_id=customer.pk) == theirs
    assert both.first(customer_id=customer.pk + 1000) is None
    nowhere = Compiled(lambda ticket_id: Ticket.objects.all(), "ticket_id", numbers=("ticket_id",))
    with pytest.raises(ValueError, match="lands 0 times"):
        nowhere.first(ticket_id=1)
    allowed = Compiled(
        lambda ticket_id: Ticket.objects.all(), "ticket_id", numbers=("ticket_id",), optional=("ticket_id",)
    )
    assert allowed.first(ticket_id=1) is None
