"""cxdesk.postgresql: Django's PostgreSQL backend, with the per-request health check asked
only of a connection that rested longer than HEALTH_CHECK_AFTER (or had an error)."""

import os

import psycopg
import pytest
from django.db import connection, connections


@pytest.fixture
def checks(monkeypatch):
    if connection.vendor != "postgresql":
        assert os.environ.get("CI") != "true", "CI runs the suite on PostgreSQL"
        pytest.skip("PostgreSQL only")
    wrapper = type(connections["default"])
    assert wrapper.__module__ == "cxdesk.postgresql.base"
    assert connection.health_check_enabled
    made = []
    real = wrapper.is_usable
    monkeypatch.setattr(wrapper, "is_usable", lambda self: made.append(1) or real(self))
    return made


def _request() -> int:
    """What a request does to the connection (the test client leaves this out): Django's
    close_old_connections as it starts and ends, a statement between. Returns the backend pid."""
    connection.close_if_unusable_or_obsolete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    connection.close_if_unusable_or_obsolete()
    return pid


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_just_served_a_request_is_not_checked_again(checks, monkeypatch):
    _request()
    before = len(checks)
    for _ in range(5):
        _request()
    assert len(checks) == before, "no SELECT 1 before each request while the connection is busy"
    monkeypatch.setattr("cxdesk.postgresql.base.HEALTH_CHECK_AFTER", 0.0)
    _request()
    assert len(checks) == before + 1, "one that rested is checked as Django checks it"


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_while_it_rested_is_replaced(checks, monkeypatch):
    pid = _request()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    monkeypatch.setattr("cxdesk.postgresql.base.HEALTH_CHECK_AFTER", 0.0)
    assert _request() != pid, "checked, found dead, and opened again: the request works"
