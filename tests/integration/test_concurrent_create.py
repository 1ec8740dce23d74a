"""Simultaneous first contacts from the same new customer, on the real PostgreSQL.

Each pair of requests is forced into the worst interleaving: a third connection holds
`LOCK TABLE customers_customer IN SHARE ROW EXCLUSIVE MODE` (reads pass, inserts wait) while
both requests start; once both are waiting on a lock — both have looked the address up and
found nothing — the lock is released and they race for the insert. This does not depend
on how the services are written (no monkeypatching): a check-then-insert without a
decider fails every pair, a correct one passes every pair.

The requests go through the Django test client in threads (each its own connection,
committing for real: `transactional_db`), the API with a Bearer key and the Twilio
webhook signed as Twilio signs it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection, connections, transaction
from django.test import Client

from customers.models import Customer, Identity
from tickets.models import Message, Ticket

from .conftest import _missing

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAIRS = 10
TOKEN = "race-token"  # noqa: S105 - a fake inbox secret


@pytest.fixture(autouse=True)
def _postgres():
    if connection.vendor != "postgresql":
        _missing("the concurrency test runs on PostgreSQL (set DATABASE_URL)")


def _waiting_backends() -> int:
    """Backends of this database waiting for a lock (any: table, row, transaction id, advisory)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # pg_stat_activity is cached per transaction
        cursor.execute(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l WHERE NOT l.granted AND l.pid IN "
            "(SELECT pid FROM pg_stat_activity WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def race(calls: list) -> list:
    """Run `calls` in threads, held at the customer insert until all are waiting; their results."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls), timeout=30)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - an exception is a result the test asserts on
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE customers_customer IN SHARE ROW EXCLUSIVE MODE")
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        # Not an assertion: a service that no longer inserts a customer in this path (or
        # serialises before its lookup) passes on; the outcome below is what is checked.
        while _waiting_backends() < len(calls) and time.monotonic() < deadline:
            time.sleep(0.02)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def test_simultaneous_api_creates_for_the_same_new_email_make_one_customer_and_two_tickets(agent):
    from integrations.services import api_key_create

    _, key = api_key_create(user=agent, name="race")

    def create(email: str, n: int):
        def call():
            response = Client().post(
                "/api/v1/tickets/",
                {"subject": f"Race {n}", "body": "first contact", "customer": {"email": email, "name": "Racer"}},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
            )
            return response.status_code, response.json()

        return call

    outcomes = []
    for pair in range(PAIRS):
        email = f"racer-{pair}-{uuid.uuid4().hex[:6]}@example.com"
        results = race([create(email, 1), create(email, 2)])
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors == [], errors
        codes = sorted(code for code, _ in results)
        customers = Customer.objects.filter(identities__kind="email", identities__address=email).distinct()
        outcomes.append((pair, codes, customers.count(), Ticket.objects.filter(customer__in=customers).count()))
    # The API contract (docs: "an unknown one creates the customer", 201 with the ticket) has
    # no dedupe without an Idempotency-Key: two creates are two tickets of one customer.
    assert outcomes == [(pair, [201, 201], 1, 2) for pair in range(PAIRS)], outcomes
    assert Identity.objects.filter(kind="email").count() == PAIRS


def test_simultaneous_sms_webhooks_from_a_new_number_make_one_customer(settings):
    from twilio.request_validator import RequestValidator

    from tests.channels_app.factories import InboxFactory

    settings.PUBLIC_URL = "https://example.com"
    inbox = InboxFactory(
        kind="twilio",
        name="Race SMS",
        config={"phone_number": "+15005550006", "default_region": "PL"},
        transport="file",
        secrets={"auth_token": TOKEN},
    )
    path = f"/hooks/twilio/{inbox.pk}/"

    def deliver(sender: str, body: str):
        params = {"MessageSid": "SM" + uuid.uuid4().hex, "From": sender, "To": "+15005550006", "Body": body}
        signature = RequestValidator(TOKEN).compute_signature(f"https://example.com{path}", params)

        def call():
            return Client().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code

        return call

    outcomes = []
    for pair in range(PAIRS):
        sender = f"+48600{pair:03d}{uuid.uuid4().int % 1000:03d}"
        codes = race([deliver(sender, "first"), deliver(sender, "second")])
        identities = Identity.objects.filter(kind="phone", address=sender)
        customers = Customer.objects.filter(identities__in=identities).distinct()
        messages = Message.objects.filter(identity__in=identities)
        tickets = Ticket.objects.filter(messages__in=messages).distinct().count()
        outcomes.append((pair, codes, customers.count(), messages.count(), tickets))
    # One customer, both messages stored, and the second joined the first's ticket (continuity).
    assert outcomes == [(pair, [200, 200], 1, 2, 1) for pair in range(PAIRS)], outcomes
