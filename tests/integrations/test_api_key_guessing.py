"""API key guessing is throttled per client address (cache-based), with a clear 429."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from integrations.services import api_key_create
from integrations.throttling import _keys
from tests.tickets.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_counters():
    for ip in ("127.0.0.1", "10.9.9.9"):
        cache.delete_many(_keys(ip))
    yield
    for ip in ("127.0.0.1", "10.9.9.9"):
        cache.delete_many(_keys(ip))


def test_wrong_keys_from_one_address_get_429_with_retry_after(settings):
    settings.CXDESK_API_KEY_FAILURES = 5
    _, good = api_key_create(user=AgentFactory(username="k1"), name="k")
    api = APIClient()
    for i in range(5):
        api.credentials(HTTP_AUTHORIZATION=f"Bearer cxk_guess{i}")
        assert api.get("/api/v1/tickets/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION="Bearer cxk_guess-next")
    answer = api.get("/api/v1/tickets/")
    assert answer.status_code == 429
    assert 1 <= int(answer["Retry-After"]) <= settings.CXDESK_API_KEY_FAILURE_WINDOW
    assert answer.json()["error"]["code"] == "throttled"
    assert "unknown API keys" in answer.json()["error"]["message"]
    # the right key is not tried either while the address is blocked (no oracle)...
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")
    assert api.get("/api/v1/tickets/").status_code == 429
    # ...but another address is not affected
    other = APIClient(REMOTE_ADDR="10.9.9.9")
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")
    assert other.get("/api/v1/tickets/").status_code == 200


def test_valid_keys_do_not_count(settings):
    settings.CXDESK_API_KEY_FAILURES = 3
    _, good = api_key_create(user=AgentFactory(username="k2"), name="k")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {good}")
    for _ in range(6):
        assert api.get("/api/v1/tickets/").status_code == 200
