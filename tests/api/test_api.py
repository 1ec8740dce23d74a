import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone
from rest_framework.exceptions import NotFound
from rest_framework.test import APIClient

from channels_app.services import ingest
from customers.models import Customer, Identity
from integrations.models import ApiKey
from integrations.services import api_key_create
from tests.channels_app.factories import InboxFactory, email_inbound, inbound
from tests.tickets.factories import AgentFactory
from tickets.models import Message, Team, Ticket, TicketEvent

pytestmark = pytest.mark.django_db


def error_of(response):
    body = response.json()
    assert set(body) == {"error"}
    # code, message, fields always; a few errors add a machine-readable fact (409 identity_taken: owner)
    assert {"code", "message", "fields"} <= set(body["error"]) <= {"code", "message", "fields", "owner"}
    return body["error"]


# --- auth -------------------------------------------------------------------------


def test_no_key_unknown_key_and_revoked_key_are_401(agent_key):
    agent, key = agent_key
    assert APIClient().get("/api/v1/tickets/").status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer cxk_nope_nope")
    response = bad.get("/api/v1/tickets/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"
    record = ApiKey.objects.get(user=agent)
    record.revoked_at = timezone.now()
    record.save()
    revoked = APIClient()
    revoked.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert revoked.get("/api/v1/tickets/").status_code == 401


@pytest.mark.django_db(transaction=True)  # committed, as a process keeps only what is
def test_a_key_in_use_is_kept_until_it_is_revoked_or_its_user_deactivated():
    """The process keeps a key in use: the next call asks nothing of the database for it.
    Revoking the key, or deactivating its user, is seen by the very next call."""
    from django.test.utils import CaptureQueriesContext

    from integrations.services import api_key_revoke

    agent = AgentFactory(username="kept-agent")

    def calls(key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    record, key = api_key_create(user=agent, name="kept")
    client = calls(key)
    assert client.get("/api/v1/tags/").status_code == 200  # writes its last use: forgets what is kept
    assert client.get("/api/v1/tags/").status_code == 200  # keeps it
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/api/v1/tags/").status_code == 200
    assert not [q["sql"] for q in ctx.captured_queries if "integrations_apikey" in q["sql"]]
    api_key_revoke(key=record)
    assert client.get("/api/v1/tags/").status_code == 401

    _, other = api_key_create(user=agent, name="other")
    client = calls(other)
    assert [client.get("/api/v1/tags/").status_code for _ in range(2)] == [200, 200]
    agent.is_active = False
    agent.save(update_fields=["is_active"])
    assert client.get("/api/v1/tags/").status_code == 401


def test_key_is_stored_hashed_with_a_prefix_and_records_last_use(api, agent_key):
    agent, key = agent_key
    record = ApiKey.objects.get(user=agent)
    assert key.startswith(f"cxk_{record.prefix}_")
    assert key not in (record.key_hash, record.prefix)
    api.get("/api/v1/tickets/")
    record.refresh_from_db()
    assert record.last_used_at is not None


def test_read_scope_key_cannot_write(db):
    agent = AgentFactory(username="reader")
    _, key = api_key_create(user=agent, name="ro", scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/tickets/").status_code == 200
    response = client.post(
        "/api/v1/tickets/", {"subject": "x", "body": "y", "customer": {"email": "a@example.com"}}, format="json"
    )
    assert response.status_code == 403
    assert "read-only" in error_of(response)["message"]


def test_non_staff_key_sees_nothing(db, email_inbox):
    ingest(email_inbound(email_inbox))
    user = AgentFactory(username="customer-user", is_staff=False)
    _, key = api_key_create(user=user, name="x")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for url in ("/api/v1/tickets/", "/api/v1/customers/", f"/api/v1/tickets/{Ticket.objects.get().pk}/"):
        assert client.get(url).status_code == 403


def test_create_api_key_command_prints_the_key_once(db):
    AgentFactory(username="ops")
    out = StringIO()
    call_command("create_api_key", "ops", "--name", "CRM", stdout=out)
    key = out.getvalue().strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/tickets/").status_code == 200
    assert ApiKey.objects.get().name == "CRM"


# --- tickets ------------------------------------------------------------------------


def test_create_for_a_new_email_is_a_bounded_number_of_statements(api, django_capture_on_commit_callbacks):
    """Once the process keeps the desk's configuration (routing rules, default team, SLA
    policies, webhook subscriptions, the domain's organisation) and the key in use: the customer and its
    identity (no savepoint: a lost race runs the transaction again), the ticket, its first
    message and event, and its routing in the same transaction, on the ticket as created —
    its team set and that event. No outbox row, no second transaction, no read-back."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cxdesk.memo import kept_clear
    from outbox.models import OutboxTask

    kept_clear()  # what a commit of the fixtures' agent and key does (the test's transaction never commits)
    with django_capture_on_commit_callbacks(execute=True):  # committed: the process may keep it
        front = Team.objects.create(name="Front", is_default=True)
    for n in (1, 2):  # the first writes its key's last use (forgetting what it kept), the second keeps
        warm = {"subject": "Hello", "body": "First.", "customer": {"email": f"warm{n}@example.com"}}
        with django_capture_on_commit_callbacks(execute=True):
            assert api.post("/api/v1/tickets/", warm, format="json").status_code == 201
    payload = {"subject": "Where is it?", "body": "Order 77.", "customer": {"email": "first@example.com"}}
    with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/tickets/", payload, format="json")
    assert response.status_code == 201, response.content
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")
    sql = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(control)]
    assert len(sql) <= 8, "\n".join(sql)
    assert not any("integrations_apikey" in q for q in sql), "the key in use is kept by the process"
    savepoints = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SAVEPOINT")]
    # The request's transaction (a savepoint here: the test runs in a transaction of its
    # own) and its routing's; none for the customer's create nor for the ticket's.
    assert len(savepoints) == 2, savepoints
    assert not OutboxTask.objects.exists(), "routed before the commit: no row to write or run"
    body = response.json()
    ticket = Ticket.objects.get(pk=body["id"])
    assert body["team"] == ticket.team_id == front.pk, "the answer is the ticket as routed"
    assert body["tags"] == [] and body["satisfaction"] is None
    assert ticket.events.filter(kind=TicketEvent.Kind.ASSIGNMENT).exists()
    customer = Customer.objects.get(pk=body["customer"]["id"])
    assert list(customer.identities.values_list("kind", "address")) == [("email", "first@example.com")]


def test_create_ticket_for_a_new_customer(api):
    payload = {
        "subject": "Order 1042 missing",
        "body": "It never came.",
        "customer": {"email": "New@Example.com", "phone": "+48 600 100 900", "name": "Nina"},
    }
    response = api.post("/api/v1/tickets/", payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["reference"] == f"CX-{body['id']}"
    assert body["status"] == "new"
    customer = Customer.objects.get(pk=body["customer"]["id"])
    assert customer.name == "Nina"
    assert set(customer.identities.values_list("kind", "address")) == {
        ("email", "new@example.com"),
        ("phone", "+48600100900"),
    }
    # the same customer by phone in another notation: no new customer
    again = api.post(
        "/api/v1/tickets/", {"subject": "Second", "body": "b", "customer": {"phone": "0048600100900"}}, format="json"
    )
    assert again.json()["customer"]["id"] == customer.pk


def test_create_ticket_bad_input_is_a_clear_400_and_stores_nothing(api):
    response = api.post("/api/v1/tickets/", {"subject": "x", "customer": {"phone": "12"}}, format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_phone"
    response = api.post("/api/v1/tickets/", {"subject": "x"}, format="json")
    assert response.status_code == 400
    assert "customer" in error_of(response)["fields"]
    assert Ticket.objects.count() == 0
    assert Customer.objects.count() == 0


def test_each_create_is_validated_on_its_own(api):
    """One serializer kept by the process validates every create: nothing of one request's
    data, defaults or errors may reach the next."""
    urgent = api.post(
        "/api/v1/tickets/",
        {"subject": "a", "priority": "urgent", "customer": {"email": "a@example.com"}},
        format="json",
    )
    assert urgent.status_code == 201, urgent.content
    assert urgent.json()["priority"] == "urgent"
    bad = api.post("/api/v1/tickets/", {"subject": "b", "priority": "soonish"}, format="json")
    assert bad.status_code == 400
    assert set(error_of(bad)["fields"]) == {"priority", "customer"}
    plain = api.post("/api/v1/tickets/", {"body": "c", "customer": {"email": "c@example.com"}}, format="json")
    assert plain.status_code == 201, plain.content
    assert (plain.json()["priority"], plain.json()["subject"]) == ("normal", "c")  # no subject: the body's


def test_list_filters_and_cursor_pagination(api, email_inbox, sms_inbox, django_assert_max_num_queries):
    for i in range(7):
        ingest(email_inbound(email_inbox, address=f"c{i}@example.com", subject=f"S{i}"))
    ingest(inbound(sms_inbox, address="+48600100555"))
    with django_assert_max_num_queries(8):
        page = api.get("/api/v1/tickets/?page_size=3").json()
    assert len(page["results"]) == 3
    assert page["next"]
    seen = [t["id"] for t in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [t["id"] for t in page["results"]]
    assert sorted(seen) == sorted(Ticket.objects.values_list("pk", flat=True))
    assert [t["channel"] for t in api.get("/api/v1/tickets/?channel=sms").json()["results"]] == ["sms"]
    assert api.get("/api/v1/tickets/?assignee=none").json()["results"]
    bad = api.get("/api/v1/tickets/?updated_since=yesterday")
    assert bad.status_code == 400
    assert "updated_since" in error_of(bad)["fields"]


def test_updated_since_never_misses_rows_updated_in_the_same_second(api, email_inbox):
    t1 = ingest(email_inbound(email_inbox, address="a@example.com")).ticket
    t2 = ingest(email_inbound(email_inbox, address="b@example.com")).ticket
    same = timezone.now().replace(microsecond=500000)
    Ticket.objects.filter(pk__in=[t1.pk, t2.pk]).update(updated_at=same)
    since = same.replace(microsecond=0).isoformat()
    ids = [t["id"] for t in api.get("/api/v1/tickets/", {"updated_since": since}).json()["results"]]
    assert ids == sorted([t1.pk, t2.pk])


def test_patch_status_priority_assignee_tags(api, email_inbox):
    ticket = ingest(email_inbound(email_inbox)).ticket
    response = api.patch(
        f"/api/v1/tickets/{ticket.pk}/",
        {"status": "pending", "priority": "high", "assignee": api.agent.pk, "tags": ["vip", "refund"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["priority"], body["assignee"], sorted(body["tags"])) == (
        "pending",
        "high",
        api.agent.pk,
        ["refund", "vip"],
    )
    bad = api.patch(f"/api/v1/tickets/{ticket.pk}/", {"status": "new"}, format="json")
    assert bad.status_code == 409
    assert error_of(bad)["code"] == "invalid_transition"
    events = api.get(f"/api/v1/tickets/{ticket.pk}/events/").json()["results"]
    assert {"status", "priority", "assignment", "tags"} <= {e["kind"] for e in events}


def test_reply_note_and_timeline(api, email_inbox, django_capture_on_commit_callbacks):
    from django.core import mail

    ticket = ingest(email_inbound(email_inbox, address="r@example.com")).ticket
    with django_capture_on_commit_callbacks(execute=True):
        reply = api.post(f"/api/v1/tickets/{ticket.pk}/messages/", {"body": "On it", "channel": "email"}, format="json")
    assert reply.status_code == 201, reply.content
    assert reply.json()["direction"] == "outbound"
    note = api.post(f"/api/v1/tickets/{ticket.pk}/messages/", {"body": "internal", "internal": True}, format="json")
    assert note.json()["direction"] == "note"
    timeline = api.get(f"/api/v1/tickets/{ticket.pk}/messages/").json()["results"]
    assert [m["direction"] for m in timeline] == ["inbound", "outbound", "note"]
    assert any(m.to == ["r@example.com"] or "r@example.com" in m.to[0] for m in mail.outbox)
    no_sms = api.post(f"/api/v1/tickets/{ticket.pk}/messages/", {"body": "x", "channel": "sms"}, format="json")
    assert no_sms.status_code == 400
    assert error_of(no_sms)["code"] == "no_identity_for_channel"


def test_unknown_ticket_is_404_in_the_error_shape(api):
    response = api.get("/api/v1/tickets/999999/")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- customers ---------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["+48 600 100 200", "0048600100200", "600100200"])
def test_screen_pop_lookup_by_phone_in_any_format(api, sms_inbox, email_inbox, phone, django_assert_max_num_queries):
    first = ingest(inbound(sms_inbox, address="+48600100200", text="hello"))
    Identity.objects.create(customer=first.ticket.customer, kind="email", address="p@example.com")
    ingest(email_inbound(email_inbox, address="p@example.com", subject="Re: more"))
    with django_assert_max_num_queries(10):
        response = api.get("/api/v1/customers/", {"phone": phone})
    [found] = response.json()["results"]
    assert found["id"] == first.ticket.customer_id
    assert found["stats"]["open_tickets"] == 1
    assert found["stats"]["channels"] == ["email", "sms"]
    assert found["open_tickets"][0]["reference"] == first.ticket.reference
    assert api.get("/api/v1/customers/", {"email": "P@EXAMPLE.com"}).json()["results"][0]["id"] == found["id"]
    assert api.get("/api/v1/customers/", {"phone": "+48 600 999 999"}).json()["results"] == []


def test_customer_360_timeline_merge_and_unmerge(api, email_inbox, sms_inbox):
    a = ingest(email_inbound(email_inbox, address="m@example.com")).ticket.customer
    b = ingest(inbound(sms_inbox, address="+48600100700")).ticket.customer
    merged = api.post(f"/api/v1/customers/{a.pk}/merge/", {"other": b.pk}, format="json")
    assert merged.status_code == 200
    detail = api.get(f"/api/v1/customers/{a.pk}/").json()
    assert {i["kind"] for i in detail["identities"]} == {"email", "phone"}
    assert detail["stats"]["tickets"] == 2
    timeline = api.get(f"/api/v1/customers/{a.pk}/timeline/").json()["results"]
    assert {m["channel"] for m in timeline} == {"email", "sms"}
    again = api.post(f"/api/v1/customers/{a.pk}/merge/", {"other": b.pk}, format="json")
    assert again.status_code == 409
    undone = api.post(f"/api/v1/customers/{a.pk}/unmerge/", {"merge": merged.json()["merge"]}, format="json")
    assert undone.status_code == 200
    assert undone.json()["id"] == b.pk


def test_create_customer_and_duplicate_identity(api):
    response = api.post("/api/v1/customers/", {"name": "Ola", "email": "ola@example.com"}, format="json")
    assert response.status_code == 201
    dup = api.post("/api/v1/customers/", {"name": "Ola 2", "email": "OLA@example.com"}, format="json")
    assert dup.status_code == 409
    assert error_of(dup)["code"] == "identity_taken"


# --- inboxes, attachments, inbound email --------------------------------------------


def test_inboxes_never_show_secrets(api):
    InboxFactory(kind="twilio", name="T", config={"phone_number": "+15005550006"}, secrets={"auth_token": "TOPSECRET"})
    response = api.get("/api/v1/inboxes/")
    assert "TOPSECRET" not in response.content.decode()
    assert response.json()["results"][0]["secrets_set"] == ["auth_token"]


def test_attachment_download_is_permission_checked_and_a_download(api, email_inbox):
    from channels_app.types import InboundAttachment

    msg = email_inbound(email_inbox)
    msg.attachments = [
        InboundAttachment(filename="x.html", content_type="text/html", content=b"<script>alert(1)</script>")
    ]
    att = ingest(msg).message.attachments.get()
    response = api.get(f"/api/v1/attachments/{att.pk}/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Type"] == "application/octet-stream"
    assert b"".join(response.streaming_content) == b"<script>alert(1)</script>"
    outsider = AgentFactory(username="outsider", is_staff=False)
    _, key = api_key_create(user=outsider, name="x")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(f"/api/v1/attachments/{att.pk}/").status_code == 403


def test_inbound_email_endpoint(api, email_inbox):
    raw = b"From: relay@example.com\r\nSubject: via MTA\r\nMessage-ID: <mta1@x>\r\n\r\nhello\r\n"
    first = api.post("/api/v1/inbound/email/", data=raw, content_type="message/rfc822")
    assert first.status_code == 201
    assert set(first.json()) == {"ticket", "message", "created_ticket", "duplicate"}
    again = api.post("/api/v1/inbound/email/", data=raw, content_type="message/rfc822")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    bad = api.post("/api/v1/inbound/email/", data=b"Subject: nobody\r\n\r\nx", content_type="message/rfc822")
    assert bad.status_code == 400
    assert error_of(bad)["fields"]["raw_inbound"]


# --- idempotency, throttling, schema --------------------------------------------------


def test_idempotency_key_replays_the_first_answer(api):
    payload = {"subject": "Once", "body": "b", "customer": {"email": "idem@example.com"}}
    first = api.post("/api/v1/tickets/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = api.post("/api/v1/tickets/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Ticket.objects.count() == 1
    other = api.post("/api/v1/tickets/", {**payload, "subject": "Different"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422


@pytest.mark.django_db(transaction=True)
def test_idempotency_under_concurrent_retries(agent_key):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    _, key = agent_key
    payload = {"subject": "Race", "body": "b", "customer": {"email": "race@example.com"}}
    barrier = threading.Barrier(4)
    results = []

    def call():
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            barrier.wait()
            response = client.post("/api/v1/tickets/", payload, format="json", HTTP_IDEMPOTENCY_KEY="race-1")
            results.append((response.status_code, response.json().get("id")))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Ticket.objects.count() == 1
    assert set(results) == {(201, Ticket.objects.get().pk)}


def test_throttling_answers_429_with_retry_after(api, settings, monkeypatch):
    """At most the rate's count in each window of its period; the 429 says when the window
    ends, and the next window allows again."""
    from django.core.cache import cache

    from integrations.throttling import ApiKeyRateThrottle

    cache.clear()
    now = [6_000_000 * 60 + 45.0]  # 45 s into a minute
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: now[0])
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "api": "3/min"}
    ApiKeyRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [api.get("/api/v1/tags/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        response = api.get("/api/v1/tags/")
        assert response["Retry-After"] == "15"
        assert error_of(response)["code"] == "throttled"
        now[0] += 15
        assert api.get("/api/v1/tags/").status_code == 200, "a new window"
    finally:
        ApiKeyRateThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        cache.clear()


def test_schema_and_docs_are_served_locally(client, api):
    schema = api.get("/api/v1/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/v1/tickets/",
        "/api/v1/customers/{id}/merge/",
        "/api/v1/inbound/email/",
        "/api/v1/tickets/{id}/messages/",
    ):
        assert path in text
    from tests.tickets.factories import AgentFactory as AF

    client.force_login(AF(username="docs-reader"))
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()
    assert b"swagger-ui" in docs.content


def test_old_ticket_excluded_by_updated_since(api, email_inbox):
    old = ingest(email_inbound(email_inbox, address="o@example.com")).ticket
    Ticket.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=2))
    new = ingest(email_inbound(email_inbox, address="n@example.com")).ticket
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert [t["id"] for t in api.get("/api/v1/tickets/", {"updated_since": since}).json()["results"]] == [new.pk]
    assert Message.objects.count() == 2


def test_customer_listing_is_a_constant_number_of_queries(api, email_inbox, django_assert_max_num_queries):
    for i in range(3):
        ingest(email_inbound(email_inbox, address=f"l{i}@example.com"))
    api.get("/api/v1/tags/")  # the key's last-used time is written once a minute: not part of the count
    with django_assert_max_num_queries(8) as few:
        api.get("/api/v1/customers/")
    for i in range(3, 15):
        ingest(email_inbound(email_inbox, address=f"l{i}@example.com"))
    with django_assert_max_num_queries(8) as many:
        assert len(api.get("/api/v1/customers/").json()["results"]) == 15
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.parametrize("pk", ["²7", "٣", "1e3", "-1"])
def test_a_non_ascii_or_odd_id_in_the_url_is_a_404_not_a_500(api, pk):
    """`str.isdigit()` accepts superscripts that int() refuses: ids are checked with isdecimal."""
    from tickets.api import pk_from

    response = api.get(f"/api/v1/views/{pk}/")
    assert response.status_code == 404
    if not pk.isdecimal():
        with pytest.raises(NotFound):
            pk_from({"pk": pk})
