import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEntry
from channels_app.models import RawInbound
from channels_app.services import ingest, ingest_raw_email
from channels_app.types import InboundAttachment
from customers.models import Customer
from customers.services import identity_add, merge_customers
from integrations.models import WebhookDelivery
from integrations.services import webhook_subscribe
from portal.views import SESSION_KEY
from sla.metrics import measures
from surveys.models import SurveyResponse
from tests.channels_app.factories import email_inbound, inbound
from tests.tickets.factories import AgentFactory
from tickets.models import Attachment, Message, Ticket, TicketEvent
from tickets.services import note_add, reply, ticket_set_status

pytestmark = pytest.mark.django_db

BODY = "my order 4711 arrived with a cracked blue teapot"
SMS = "the kettle also leaks sms text"
RECEIPT = b"%PDF-1.4 receipt bytes for order 4711"
NEEDLES = [
    "ola.nowak@example.com",
    "48600100200",
    "ola nowak",
    "blue teapot",
    "kettle also leaks",
    "lovely service comment",
    "receipt-4711.pdf",
    "ola.old@example.com",
    "ola the elder",
    "dear ola",
    "shopper-id-99",
]


def personal_data_left() -> dict[str, list[str]]:
    """Every row of every table as text, searched for the customer's data."""
    found: dict[str, list[str]] = {}
    with connection.cursor() as cur:
        for table in connection.introspection.table_names():
            cur.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - table names from introspection
            for (row,) in cur.fetchall():
                low = row.lower()
                for needle in NEEDLES:
                    if needle in low:
                        found.setdefault(table, []).append(needle)
    return found


@pytest.fixture
def history(email_inbox, sms_inbox, agent, django_capture_on_commit_callbacks):
    webhook_subscribe(url="https://hooks.example/x", events=["message.created", "ticket.created"])
    with django_capture_on_commit_callbacks(execute=True):
        first = ingest(
            email_inbound(
                email_inbox,
                address="ola.nowak@example.com",
                display_name="Ola Nowak",
                subject="Cracked blue teapot",
                text=BODY,
                attachments=[
                    InboundAttachment(filename="receipt-4711.pdf", content_type="application/pdf", content=RECEIPT)
                ],
            )
        )
        customer = first.ticket.customer
        Customer.objects.filter(pk=customer.pk).update(attributes={"shop_id": "shopper-id-99"})
        identity_add(customer=customer, kind="phone", address="+48600100200")
        ingest(inbound(sms_inbox, address="+48600100200", text=SMS))
        reply(ticket=first.ticket, author=agent, body="Dear Ola, a new teapot is on its way.")
        note_add(ticket=first.ticket, author=agent, body="Ola Nowak is a regular; blue teapot again")
        ticket_set_status(ticket=first.ticket, status=Ticket.Status.SOLVED, actor=agent)
        SurveyResponse.objects.update_or_create(
            ticket=first.ticket,
            defaults={"token_hash": "h" * 64, "channel": "email", "csat": 5, "comment": "lovely service comment"},
        )
        SurveyResponse.objects.filter(ticket=first.ticket).update(answered_at=timezone.now())
        older = ingest(
            email_inbound(email_inbox, address="ola.old@example.com", display_name="Ola the Elder", text="old mail")
        ).ticket.customer
        merge_customers(keep=customer, other=older, actor=agent)
        colleague = ingest(email_inbound(email_inbox, address="kasia@example.com", text="shared ticket")).ticket
        Message.objects.create(
            ticket=colleague,
            direction=Message.Direction.INBOUND,
            channel="email",
            identity=customer.identities.get(address="ola.nowak@example.com"),
            body_text="on a colleague's ticket: the kettle also leaks",
            status=Message.Status.RECEIVED,
        )
        ingest_raw_email(
            raw=b"From: Ola Nowak <ola.nowak@example.com>\r\nTo: support@example.com\r\nSubject: again\r\n"
            b"Message-ID: <raw-1@example.com>\r\n\r\nthe kettle also leaks, raw mail\r\n",
            inbox=email_inbox,
            source="api",
        )
    api = APIClient()
    api.force_authenticate(agent)
    made = api.post(
        "/api/v1/tickets/",
        {"subject": "By phone", "body": "called about the blue teapot", "customer": {"email": "ola.nowak@example.com"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="call-1",
    )
    assert made.status_code == 201, made.content
    return customer


def test_export_has_everything_and_is_audited(history, agent):
    api = APIClient()
    api.force_authenticate(agent)
    response = api.get(f"/api/v1/customers/{history.pk}/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    data = json.loads(zf.read("customer.json"))
    assert data["customer"]["name"] == "Ola Nowak"
    assert {i["address"] for i in data["identities"]} == {
        "ola.nowak@example.com",
        "+48600100200",
        "ola.old@example.com",
    }
    assert data["merged_customers"][0]["name"] == "Ola the Elder"
    bodies = [m["body_text"] for t in data["tickets"] for m in t["messages"]]
    assert BODY in bodies and SMS in bodies
    assert any(t["survey"] and t["survey"]["comment"] == "lovely service comment" for t in data["tickets"])
    assert any(e["kind"] == "status" for t in data["tickets"] for e in t["events"])
    att = next(a for t in data["tickets"] for m in t["messages"] for a in m["attachments"])
    assert att["filename"] == "receipt-4711.pdf" and zf.read(att["file"]) == RECEIPT
    assert "activity" in data
    assert [m["body_text"] for m in data["messages_on_other_tickets"]] == [
        "on a colleague's ticket: the kettle also leaks"
    ]
    entry = AuditEntry.objects.get(action="customer.exported")
    assert entry.actor == agent and entry.object_id == str(history.pk) and "nowak" not in str(entry.data).lower()

    other = AgentFactory(username="other-agent")
    desk = Client()
    desk.force_login(other)
    page = desk.post(f"/desk/customers/{history.pk}/export/")
    assert page.status_code == 200 and page["Content-Type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(b"".join(page.streaming_content))).namelist()[0] == "customer.json"
    assert AuditEntry.objects.filter(action="customer.exported").count() == 2
    assert api.get("/api/v1/customers/999999/export/").status_code == 404


def test_erase_removes_personal_data_and_keeps_measures(history, agent, django_capture_on_commit_callbacks):
    start, end = timezone.now() - timedelta(days=1), timezone.now() + timedelta(days=1)
    before = measures(start=start, end=end, by="channel")
    tickets_before = Ticket.objects.count()
    messages_before = Message.objects.count()
    stored = Attachment.objects.get().file.name
    assert default_storage.exists(stored)
    found_before = personal_data_left()
    assert {
        "customers_customer",
        "customers_customermerge",
        "customers_identity",
        "integrations_idempotencyrecord",
        "integrations_webhookdelivery",
        "surveys_surveyresponse",
        "tickets_attachment",
        "tickets_message",
        "tickets_ticket",
    } <= set(found_before), "the search finds the data before erasure"
    assert WebhookDelivery.objects.exists()
    assert RawInbound.objects.filter(message__ticket__customer=history).exists(), "the raw mail (compressed) is kept"

    api = APIClient()
    api.force_authenticate(agent)
    denied = api.post(f"/api/v1/customers/{history.pk}/erase/")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"

    portal = Client()
    session = portal.session
    session[SESSION_KEY] = history.pk
    session.save()
    own_ticket = f"/portal/requests/{Ticket.objects.filter(customer=history).first().pk}/"
    assert portal.get(own_ticket).status_code == 200
    admin = AgentFactory(username="root", is_superuser=True)
    desk = Client()
    desk.force_login(admin)
    page = desk.get(f"/desk/customers/{history.pk}/", {"erase": "1"}).content.decode()
    assert "Erase for good" in page and "<script>" not in page and " onclick=" not in page
    desk.post(f"/desk/customers/{history.pk}/erase/", {"confirm": "wrong"})
    assert Customer.objects.get(pk=history.pk).erased_at is None, "no erasure without the confirmation"
    with django_capture_on_commit_callbacks(execute=True):
        desk.post(f"/desk/customers/{history.pk}/erase/", {"confirm": str(history.pk)})

    assert Customer.objects.get(pk=history.pk).erased_at is not None
    assert personal_data_left() == {}
    assert Message.objects.filter(body_text="shared ticket").exists(), "the colleague's own words stay"
    assert not RawInbound.objects.exists()
    assert portal.get(own_ticket).status_code == 302, "the portal session of an erased customer ends"
    assert not default_storage.exists(stored), "the attachment file is gone from storage"
    assert Ticket.objects.count() == tickets_before and Message.objects.count() == messages_before
    assert measures(start=start, end=end, by="channel") == before, "measures unchanged"
    assert SurveyResponse.objects.get().csat == 5
    assert TicketEvent.objects.filter(kind="status").exists()
    erased = AuditEntry.objects.get(action="customer.erased")
    assert erased.actor == admin and erased.data["counts"]["identities"] == 3

    api.force_authenticate(admin)
    again = api.post(f"/api/v1/customers/{history.pk}/erase/")
    assert again.status_code == 200 and again.json()["counts"]["identities"] == 0
    assert "Erased on" in desk.get(f"/desk/customers/{history.pk}/").content.decode()


def test_erasing_is_for_the_admin_role_not_only_superusers():
    from customers.gdpr import can_erase_customer

    assert can_erase_customer(AgentFactory(username="ada", role="admin"))
    assert not can_erase_customer(AgentFactory(username="sue", role="supervisor"))
    assert not can_erase_customer(AgentFactory(username="al", role="agent"))
