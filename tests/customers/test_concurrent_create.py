"""Two simultaneous API creates of the same new customer: one customer, no 5xx."""

import threading

import pytest
from django.db import connections
from rest_framework.test import APIClient

from customers.models import Customer, Identity
from integrations.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_creates_for_the_same_new_email_make_one_customer(agent, monkeypatch):
    from customers import services

    _, key = api_key_create(user=agent, name="race")
    barrier = threading.Barrier(2, timeout=10)
    real_create = services.Customer.objects.create

    def create_after_both_checked(**kwargs):
        barrier.wait()  # both requests passed the "is it taken?" check before either inserts
        return real_create(**kwargs)

    monkeypatch.setattr(services.Customer.objects, "create", create_after_both_checked)
    results: list[int] = []

    def post(name: str) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            response = client.post("/api/v1/customers/", {"name": name, "email": "Same@Example.com"}, format="json")
            results.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(n,)) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [201, 409], results
    assert Identity.objects.filter(kind="email", address="same@example.com").count() == 1
    assert Customer.objects.count() == 1, "the loser's customer row rolled back with its identity"
