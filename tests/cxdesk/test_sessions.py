"""`cxdesk.sessions` (SESSION_ENGINE): Django's database sessions, read with one statement
written once."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cxdesk.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_it_is_the_engine():
    assert settings.SESSION_ENGINE == "cxdesk.sessions"


def test_a_signed_in_page_reads_the_session_with_the_statement(desk):
    with CaptureQueriesContext(connection) as ctx:
        assert desk.get("/desk/").status_code == 200
    reads = [q["sql"] for q in ctx.captured_queries if "django_session" in q["sql"]]
    assert len(reads) == 1 and reads[0].startswith('SELECT "session_data", "expire_date" FROM "django_session"')


def test_what_is_saved_is_read_back_and_an_expired_or_unknown_key_is_not():
    store = SessionStore()
    store["answer"] = 42
    store.save()
    key = store.session_key
    again = SessionStore(key)
    assert again["answer"] == 42 and again.session_key == key
    row = again._get_session_from_db()
    assert row.expire_date == Session.objects.get(session_key=key).expire_date
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    expired = SessionStore(key)
    assert expired.load() == {} and expired.session_key is None
    unknown = SessionStore("x" * 32)
    assert unknown.load() == {} and unknown.session_key is None


def test_an_expired_session_signs_out(desk, agent):
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = desk.get("/desk/")
    assert response.status_code == 302 and "login" in response["Location"], "signed out"


def test_signing_out_ends_the_session(desk):
    assert desk.get("/desk/").status_code == 200
    desk.post("/desk/sign-out/")
    assert Session.objects.count() == 0
    assert desk.get("/desk/").status_code == 302
