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


def _list_dumper(server_side_binding: bool) -> str:
    """The dumper psycopg picks for a list of texts on a connection made with these settings."""
    from psycopg.adapt import PyFormat, Transformer

    settings_dict = {**connection.settings_dict}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], "server_side_binding": server_side_binding}
    params = type(connections["default"])(settings_dict).get_connection_params()
    return type(Transformer(params["context"]).get_dumper(["a"], PyFormat.AUTO)).__name__


def test_lists_go_as_binary_arrays_where_the_server_binds_parameters():
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    assert _list_dumper(True) == "ListBinaryDumper"
    assert _list_dumper(False) == "ListDumper"  # psycopg's client-side binding quotes text only


@pytest.mark.django_db
def test_binary_arrays_bring_back_what_was_sent():
    from django.utils import timezone

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    now = timezone.now()
    texts = ["zażółć", 'a"b\\c,{}', "", None, "NULL"]
    times = [now, None, now, None, now]
    numbers = [1, 2**40, None, 3, 70000]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM unnest(%s::varchar[], %s::timestamptz[], %s::bigint[])",
            [texts, times, numbers],
        )
        rows = cursor.fetchall()
    assert rows == list(zip(texts, times, numbers, strict=True))
