"""`customers.services.senders_batch`: a drainer's senders read, locked and — asked to —
created together, and `identity_resolve` answering from what it read."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from customers.models import Customer, Identity
from customers.services import identity_resolve, senders_batch

pytestmark = pytest.mark.django_db


def test_first_time_senders_are_created_together_and_new_the_first_time_asked():
    known = Customer.objects.create(name="Known")
    Identity.objects.create(customer=known, kind="phone", address="+48600100401")
    senders = [
        ("phone", "+48600100401", "PL", ""),
        ("phone", "600 100 402", "PL", "Ola"),  # written twice in the batch, the name once
        ("phone", "+48600100402", "PL", ""),
        ("email", "New@Example.com", None, "New Person"),
    ]
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx, senders_batch(senders, create=True):
        inserts = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("INSERT")]
        assert len(inserts) == 2, inserts  # the customers, then their identities
        with CaptureQueriesContext(connection) as asked:
            first, new = identity_resolve(kind="phone", address="+48600100402", region="PL")
            again, new_again = identity_resolve(kind="phone", address="600100402", region="PL")
            old, old_new = identity_resolve(kind="phone", address="+48600100401", region="PL")
        assert not asked.captured_queries, "answered from what the batch read and wrote"
    assert (new, new_again, old_new) == (True, False, False)
    assert first.pk == again.pk and old.customer_id == known.pk
    assert first.customer.name == "Ola" and first.display_name == "Ola" and first.last_seen_at is not None
    email = Identity.objects.get(kind="email")
    assert email.address == "new@example.com" and email.customer.name == "New Person"
    assert Customer.objects.count() == 3


def test_without_create_unknown_senders_are_left_to_identity_resolve():
    with transaction.atomic(), senders_batch([("phone", "+48600100403", "PL")]):
        assert not Identity.objects.exists()
        identity, new = identity_resolve(kind="phone", address="+48600100403", region="PL")
    assert new is True and Identity.objects.get().pk == identity.pk
