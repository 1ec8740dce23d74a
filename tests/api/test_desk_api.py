"""The API for daily desk work: bulk changes, saved views, a customer's identities, templates."""

import pytest

from channels_app.services import ingest
from customers.models import Customer, Identity
from tests.channels_app.factories import email_inbound
from tests.tickets.factories import AgentFactory
from tickets.models import Tag, Team, Ticket, TicketEvent

from .test_api import error_of

pytestmark = pytest.mark.django_db


def _tickets(email_inbox, n):
    return [
        ingest(email_inbound(email_inbox, address=f"b{i}@example.com", subject=f"Bulk {i}")).ticket for i in range(n)
    ]


def test_bulk_answers_per_id_with_events_for_each(api, email_inbox, django_capture_on_commit_callbacks):
    from integrations.models import WebhookSubscription

    tickets = _tickets(email_inbox, 3)
    ben = AgentFactory(username="ben", first_name="Ben")
    team = Team.objects.create(name="Tier 2")
    Tag.objects.create(name="old")
    tickets[0].tags.add(Tag.objects.get(name="old"))
    Ticket.objects.filter(pk=tickets[2].pk).update(status="closed")
    WebhookSubscription.objects.create(url="https://hooks.example.com/x", events=["ticket.updated"], secret="s")
    ids = [t.pk for t in tickets] + [999999]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(
            "/api/v1/tickets/bulk/",
            {"ids": ids, "assignee": ben.pk, "team": team.pk, "status": "pending", "priority": "high",
             "add_tags": ["vip"], "remove_tags": ["old"]},
            format="json",
        )  # fmt: skip
    assert response.status_code == 200, response.content
    results = {r["id"]: r for r in response.json()["results"]}
    assert results[tickets[0].pk]["status"] == "done" and results[tickets[1].pk]["status"] == "done"
    assert results[tickets[2].pk]["status"] == "refused" and results[tickets[2].pk]["code"] == "invalid_transition"
    assert results[999999] == {"id": 999999, "status": "refused", "code": "not_found", "message": "no such ticket"}
    for t in tickets[:2]:
        t.refresh_from_db()
        assert (t.assignee_id, t.team_id, t.status, t.priority) == (ben.pk, team.pk, "pending", "high")
        assert sorted(t.tags.values_list("name", flat=True)) == ["vip"]
        kinds = set(TicketEvent.objects.filter(ticket=t).values_list("kind", flat=True))
        assert {"status", "priority", "assignment"} <= kinds, "the same events as single changes"
    tickets[2].refresh_from_db()
    assert tickets[2].status == "closed" and tickets[2].assignee_id is None, "refused ticket untouched"
    assert len(callbacks) >= 2, "broadcasts and webhooks scheduled after commit"


def test_bulk_bad_input_is_a_400_and_changes_nothing(api, email_inbox):
    tickets = _tickets(email_inbox, 2)
    for body in (
        {"ids": []},
        {"ids": ["x"]},
        {"ids": [tickets[0].pk], "status": "bogus"},
        {"ids": [1], "assignee": 10**6},
    ):
        response = api.post("/api/v1/tickets/bulk/", body, format="json")
        assert response.status_code == 400, body
        assert error_of(response)["code"]
    assert not Ticket.objects.exclude(status="new").exists()


def test_bulk_query_count_is_constant_per_ticket(api, email_inbox, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def run(n):
        ids = [t.pk for t in _tickets(email_inbox, n)]
        with CaptureQueriesContext(connection) as ctx:
            assert (
                api.post("/api/v1/tickets/bulk/", {"ids": ids, "priority": "urgent"}, format="json").status_code == 200
            )
        return len(ctx)

    three, six = run(3), run(6)
    assert six - three <= 3 * 13, f"at most 13 queries per ticket ({three} for 3, {six} for 6)"
    assert three <= 3 * 13 + 8, "plus a small constant for the request itself"


def test_saved_views_api_own_and_shared_with_counts(api, email_inbox, sms_inbox):
    _tickets(email_inbox, 2)
    response = api.post(
        "/api/v1/views/", {"name": "Email", "filters": {"channel": "email"}, "shared": True}, format="json"
    )
    assert response.status_code == 201, response.content
    view = response.json()
    assert view["count"] == 2 and view["filters"] == {"channel": "email", "view": "open", "sort": "activity"}
    other = AgentFactory(username="cara")
    from rest_framework.test import APIClient

    from integrations.services import api_key_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=other, name='k')[1]}")
    assert [v["name"] for v in client.get("/api/v1/views/").json()] == ["Email"], "shared views are listed"
    assert client.delete(f"/api/v1/views/{view['id']}/").status_code == 403, "only the owner deletes"
    mine = client.post("/api/v1/views/", {"name": "Mine", "filters": {"view": "mine"}}, format="json").json()
    assert [v["name"] for v in api.get("/api/v1/views/").json()] == ["Email"], "a personal view stays personal"
    assert api.get(f"/api/v1/views/{mine['id']}/").status_code == 404
    assert api.post("/api/v1/views/", {"name": ""}, format="json").status_code == 400
    assert api.delete(f"/api/v1/views/{view['id']}/").status_code == 204


def test_identities_api_add_conflict_and_delete(api, email_inbox):
    jan = ingest(email_inbound(email_inbox, address="jan@example.com")).ticket.customer
    eva = ingest(email_inbound(email_inbox, address="eva@example.com")).ticket.customer
    url = f"/api/v1/customers/{jan.pk}/identities/"
    response = api.post(url, {"kind": "phone", "address": "600 100 200"}, format="json")
    assert response.status_code == 201 and response.json()["address"] == "+48600100200"
    response = api.post(
        f"/api/v1/customers/{eva.pk}/identities/", {"kind": "phone", "address": "+48600100200"}, format="json"
    )
    assert response.status_code == 409
    assert error_of(response)["owner"] == jan.pk, "the owner's id, to merge them"
    assert api.post(url, {"kind": "fax", "address": "1"}, format="json").status_code == 400
    assert api.post(url, {"kind": "phone", "address": "not a number"}, format="json").status_code == 400
    phone = Identity.objects.get(kind="phone")
    assert api.delete(f"{url}{phone.pk}/").status_code == 204
    email = Identity.objects.get(customer=jan, kind="email")
    response = api.delete(f"{url}{email.pk}/")
    assert response.status_code == 400 and error_of(response)["code"] == "last_identity"
    assert api.delete(f"/api/v1/customers/{eva.pk}/identities/{email.pk}/").status_code == 404, "not eva's"
    assert api.get("/api/v1/customers/abc/identities/").status_code == 404
    assert Customer.objects.count() == 2


def test_whatsapp_template_through_the_api_when_the_window_is_closed(api, db, django_capture_on_commit_callbacks):
    import responses

    from tests.channels_app.factories import InboxFactory, inbound

    wa = InboxFactory(
        kind="whatsapp", name="WA", config={"phone_number_id": "555", "templates": "order_update:pl"},
        secrets={"access_token": "t"}, transport="live",
    )  # fmt: skip
    from datetime import timedelta

    from django.utils import timezone

    from tickets.models import Message

    ticket = ingest(inbound(wa, address="+48600100300", text="hello")).ticket
    Message.objects.filter(ticket=ticket).update(created_at=timezone.now() - timedelta(days=2))
    url = f"/api/v1/tickets/{ticket.pk}/messages/"
    closed = api.post(url, {"body": "free text", "channel": "whatsapp"}, format="json")
    assert closed.status_code == 409 and error_of(closed)["code"] == "channel_window_closed"
    import json

    with responses.RequestsMock() as mock:
        mock.post("https://graph.facebook.com/v21.0/555/messages", json={"messages": [{"id": "wamid.1"}]})
        with django_capture_on_commit_callbacks(execute=True):
            sent = api.post(
                url,
                {"body": "[template]", "channel": "whatsapp", "template": {"name": "order_update", "language": "pl"}},
                format="json",
            )
        assert sent.status_code == 201, sent.content
        body = json.loads(mock.calls[0].request.body)
    assert body["type"] == "template" and body["template"] == {"name": "order_update", "language": {"code": "pl"}}
