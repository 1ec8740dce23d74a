import json
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from channels_app.models import Inbox
from channels_app.services import ingest
from channels_app.types import InboundAttachment
from customers.models import Identity, PortalToken
from tests.channels_app.factories import email_inbound, inbound
from tickets.models import Message, Ticket
from tickets.services import note_add, reply, ticket_set_status

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()


def sign_in_by_link(client, address, capture) -> None:
    with capture(execute=True):
        client.post("/portal/sign-in/", {"address": address})
    link = re.search(r"http://testserver(/portal/sign-in/[^/\s]+/)", mail.outbox[-1].body).group(1)
    assert client.get(link).status_code == 302


@pytest.fixture
def two_customers(email_inbox, sms_inbox, agent, django_capture_on_commit_callbacks):
    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    # an SMS-origin ticket, then (same person, linked email) an email-origin one
    sms_ticket = ingest(inbound(sms_inbox, address="+48600100200", text="and the SMS one")).ticket
    Identity.objects.create(customer=sms_ticket.customer, kind="email", address="ola@example.com")
    msg = email_inbound(email_inbox, address="ola@example.com", subject="Broken mug")
    msg.attachments = [InboundAttachment(filename="photo.jpg", content_type="image/jpeg", content=b"JPG")]
    mine = ingest(msg).ticket
    assert mine.pk != sms_ticket.pk
    note_add(ticket=mine, author=agent, body="INTERNAL: customer is grumpy")
    theirs = ingest(email_inbound(email_inbox, address="eve@example.com", subject="Eve's secret")).ticket
    return mine, theirs


def test_unknown_and_known_addresses_get_the_same_answer(client, two_customers, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        known = client.post("/portal/sign-in/", {"address": "ola@example.com"}, follow=True)
        unknown = client.post("/portal/sign-in/", {"address": "nobody@example.com"}, follow=True)
    assert known.status_code == unknown.status_code == 200
    strip = lambda html: re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html.decode())  # noqa: E731
    assert strip(known.content) == strip(unknown.content)
    assert len(mail.outbox) == 1


def test_magic_link_is_single_use_hashed_and_expires(client, two_customers, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/portal/sign-in/", {"address": "OLA@example.com"})
    link = re.search(r"http://testserver(/portal/sign-in/([^/\s]+)/)", mail.outbox[-1].body)
    token = link.group(2)
    assert not PortalToken.objects.filter(token_hash=token).exists(), "stored hashed"
    other = Client()
    assert client.get(link.group(1)).status_code == 302
    assert b"Broken mug" in client.get("/portal/").content
    assert other.get(link.group(1)).status_code == 302
    assert b"Broken mug" not in other.get("/portal/").content, "a used link does not sign in again"
    with django_capture_on_commit_callbacks(execute=True):
        other.post("/portal/sign-in/", {"address": "ola@example.com"})
    late = re.search(r"http://testserver(/portal/sign-in/[^/\s]+/)", mail.outbox[-1].body).group(1)
    PortalToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    other.get(late)
    assert b"Broken mug" not in other.get("/portal/").content


def test_sms_code_sign_in_and_brute_force_burns_the_code(
    client, two_customers, settings, django_capture_on_commit_callbacks
):
    Inbox.objects.filter(kind="twilio").update(transport="file")
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post("/portal/sign-in/", {"address": "600 100 200"})
    assert b"Enter your code" in page.content
    [sent] = list((settings.CXDESK_OUTBOX_DIR / "twilio").glob("*.json"))
    code = re.search(r"(\d{6})", json.loads(sent.read_text())["text"]).group(1)
    assert (
        client.post(
            "/portal/sign-in/code/", {"address": "600 100 200", "code": "000000" if code != "000000" else "111111"}
        ).status_code
        == 400
    )
    assert client.post("/portal/sign-in/code/", {"address": "+48 600 100 200", "code": code}).status_code == 302
    listing = client.get("/portal/").content
    assert b"Broken mug" in listing
    assert b"and the SMS one" in listing, "the SMS-origin ticket is in the same list"
    # five wrong tries burn a code
    other = Client()
    with django_capture_on_commit_callbacks(execute=True):
        other.post("/portal/sign-in/", {"address": "600100200"})
    newest = sorted((settings.CXDESK_OUTBOX_DIR / "twilio").glob("*.json"))[-1]
    code2 = re.search(r"(\d{6})", json.loads(newest.read_text())["text"]).group(1)
    wrong = "999999" if code2 != "999999" else "888888"
    for _ in range(5):
        other.post("/portal/sign-in/code/", {"address": "600100200", "code": wrong})
    assert other.post("/portal/sign-in/code/", {"address": "600100200", "code": code2}).status_code == 400


def test_requests_are_rate_limited(client, two_customers, django_capture_on_commit_callbacks):
    codes = [client.post("/portal/sign-in/", {"address": "ola@example.com"}).status_code for _ in range(7)]
    assert 429 in codes


def test_my_requests_show_every_channel_and_never_notes(client, two_customers, django_capture_on_commit_callbacks):
    mine, theirs = two_customers
    sign_in_by_link(client, "ola@example.com", django_capture_on_commit_callbacks)
    page = client.get("/portal/").content.decode()
    assert "Broken mug" in page
    assert "Eve&#x27;s secret" not in page and "Eve's secret" not in page
    assert "and the SMS one" in page, "SMS-origin and email-origin tickets in one list"
    detail = client.get(f"/portal/requests/{mine.pk}/").content.decode()
    assert "Broken mug" in detail
    assert "INTERNAL" not in detail


def test_customer_reply_reopens_and_reaches_the_desk_live(
    client, two_customers, agent, django_capture_on_commit_callbacks
):
    from tests.sockets import sent_events

    mine, _ = two_customers
    ticket_set_status(ticket=mine, status="solved", actor=agent)
    sign_in_by_link(client, "ola@example.com", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/portal/requests/{mine.pk}/", {"body": "Still broken, sorry"})
    msg = Message.objects.get(body_text="Still broken, sorry")
    assert (msg.channel, msg.direction, msg.ticket_id) == ("portal", "inbound", mine.pk)
    assert Ticket.objects.get(pk=mine.pk).status == "open"
    assert any(e["event"] == "message.created" and e["group"] == f"ticket.{mine.pk}" for e in sent_events())
    client.post(f"/portal/requests/{mine.pk}/status/", {"status": "solved"})
    assert Ticket.objects.get(pk=mine.pk).status == "solved"
    client.post(f"/portal/requests/{mine.pk}/status/", {"status": "open"})
    assert Ticket.objects.get(pk=mine.pk).status == "open"


def test_new_request_from_the_portal(client, two_customers, django_capture_on_commit_callbacks):
    sign_in_by_link(client, "ola@example.com", django_capture_on_commit_callbacks)
    response = client.post("/portal/requests/new/", {"subject": "Invoice please", "body": "For order 1042"})
    ticket = Ticket.objects.get(subject="Invoice please")
    assert response.url == f"/portal/requests/{ticket.pk}/"
    assert ticket.channel == "portal"
    assert client.post("/portal/requests/new/", {"subject": "", "body": ""}).status_code == 400


def test_every_portal_url_refuses_another_customers_ids(client, two_customers, django_capture_on_commit_callbacks):
    mine, theirs = two_customers
    theirs_msg = email_inbound(Inbox.objects.get(kind="email"), address="eve@example.com", subject="Re: x")
    theirs_msg.attachments = [InboundAttachment(filename="eve.pdf", content_type="application/pdf", content=b"%PDF")]
    eve_att = ingest(theirs_msg).message.attachments.get()
    my_att = mine.messages.filter(direction="inbound").first().attachments.get()
    sign_in_by_link(client, "ola@example.com", django_capture_on_commit_callbacks)
    assert client.get(f"/portal/attachments/{my_att.pk}/")["Content-Disposition"].startswith("attachment")
    for method, url, data in [
        ("get", f"/portal/requests/{theirs.pk}/", None),
        ("post", f"/portal/requests/{theirs.pk}/", {"body": "hijack"}),
        ("post", f"/portal/requests/{theirs.pk}/status/", {"status": "solved"}),
        ("get", f"/portal/attachments/{eve_att.pk}/", None),
    ]:
        response = getattr(client, method)(url, data) if data else getattr(client, method)(url)
        assert response.status_code == 404, url
    assert not Message.objects.filter(body_text="hijack").exists()
    assert Ticket.objects.get(pk=theirs.pk).status != "solved"
    anonymous = Client()
    assert anonymous.get(f"/portal/requests/{mine.pk}/").status_code == 302


def test_persian_is_right_to_left(client):
    page = client.get("/portal/", HTTP_ACCEPT_LANGUAGE="fa")
    assert b'dir="rtl"' in page.content
    assert b'lang="fa"' in page.content
    assert b'dir="ltr"' in client.get("/portal/", HTTP_ACCEPT_LANGUAGE="en").content


def test_desk_reply_is_visible_in_the_portal(client, two_customers, agent, django_capture_on_commit_callbacks):
    mine, _ = two_customers
    with django_capture_on_commit_callbacks(execute=True):
        reply(ticket=mine, author=agent, body="A new mug is on its way")
    sign_in_by_link(client, "ola@example.com", django_capture_on_commit_callbacks)
    assert b"A new mug is on its way" in client.get(f"/portal/requests/{mine.pk}/").content


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("pl", "Zobacz swoje zgłoszenia"),
        ("it", "Consulti le sue richieste"),  # formal "Lei", as every Italian message
        ("fa", "درخواست‌هایتان را ببینید"),
        ("ru", "Ваши запросы"),
        ("en", "See your requests"),
    ],
)
def test_portal_speaks_the_browsers_language(client, language, text):
    assert text in client.get("/portal/", HTTP_ACCEPT_LANGUAGE=language).content.decode()


def test_the_customers_language_wins(client, two_customers, django_capture_on_commit_callbacks):
    mine, _ = two_customers
    mine.customer.language = "it"
    mine.customer.save()
    sign_in_by_link(client, "ola@example.com", django_capture_on_commit_callbacks)
    assert "Le mie richieste" in client.get("/portal/", HTTP_ACCEPT_LANGUAGE="pl").content.decode()
