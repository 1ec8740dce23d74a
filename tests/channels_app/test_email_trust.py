"""Email holes an attacker (or a broken mailer) finds: spoofed senders, foreign threads,
mail loops, header injection in replies, oversized mail, NUL bytes, unauthenticated
ESP webhooks."""

import base64
import email
import email.policy
import json
from email.utils import parseaddr

import pytest
from django.core import mail
from django.core.mail.message import sanitize_address
from rest_framework.test import APIClient

from channels_app.esp_webhooks import check_webhook_secret
from channels_app.models import RawInbound
from channels_app.services import ingest_raw_email
from customers.models import Organization
from cxdesk.errors import ApplicationError
from integrations.services import api_key_create
from tickets.models import Message, Ticket, TicketEvent
from tickets.services import reply, ticket_set_status

pytestmark = pytest.mark.django_db


def eml(sender: str, *, subject="Order 4711", mid="<a1@customer.example>", extra="", body="Where is it?") -> bytes:
    return (
        f"From: {sender}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n{extra}\r\n{body}\r\n"
    ).encode()


def take(raw: bytes, inbox, capture):
    with capture(execute=True):
        return ingest_raw_email(raw=raw, inbox=inbox, source="test")


# --- (a) spoofed senders and foreign threads -------------------------------------


def test_the_sender_is_the_angle_address_never_the_display_name(email_inbox, django_capture_on_commit_callbacks):
    take(eml("Alice <alice@customer.example>"), email_inbox, django_capture_on_commit_callbacks)
    spoof = take(
        eml("alice@customer.example <attacker@evil.example>", mid="<s1@evil.example>"),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    assert spoof.message.identity.address == "attacker@evil.example"
    assert spoof.ticket.customer.identities.get().address == "attacker@evil.example"
    assert Ticket.objects.filter(customer__identities__address="alice@customer.example").count() == 1


def test_a_strangers_reply_headers_open_a_new_linked_ticket(
    client, agent, email_inbox, django_capture_on_commit_callbacks
):
    alice = take(eml("Alice <alice@customer.example>"), email_inbox, django_capture_on_commit_callbacks)
    stranger = take(
        eml(
            "Mallory <mallory@evil.example>",
            subject="Re: Order 4711",
            mid="<m1@evil.example>",
            extra="In-Reply-To: <a1@customer.example>\r\nReferences: <a1@customer.example>\r\n",
        ),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    assert stranger.created_ticket and stranger.ticket.pk != alice.ticket.pk
    assert stranger.message.thread_reason == Message.ThreadReason.HEADER_REFUSED
    assert (
        Message.objects.filter(ticket=alice.ticket).count()
        == 1 + alice.ticket.messages.filter(direction="outbound").count()
    )
    mine = TicketEvent.objects.get(ticket=alice.ticket, kind="thread_refused")
    theirs = TicketEvent.objects.get(ticket=stranger.ticket, kind="thread_refused")
    assert mine.data["other"] == stranger.ticket.pk and theirs.data["other"] == alice.ticket.pk
    assert mine.data["sender"] == "mallory@evil.example"
    client.force_login(agent)
    page = client.get(f"/desk/tickets/{alice.ticket.pk}/").content.decode()
    assert "Reply headers named another customer" in page and stranger.ticket.reference in page


def test_colleagues_in_cc_and_the_same_organisation_still_thread(email_inbox, django_capture_on_commit_callbacks):
    Organization.objects.create(name="Customer Ltd", domains=["customer.example"])
    first = take(
        eml("Alice <alice@customer.example>", extra="Cc: Bob <bob@partner.example>\r\n"),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    headers = "In-Reply-To: <a1@customer.example>\r\nReferences: <a1@customer.example>\r\n"
    bob = take(
        eml("Bob <bob@partner.example>", subject="Re: Order 4711", mid="<b1@partner.example>", extra=headers),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    carol = take(
        eml("Carol <carol@customer.example>", subject="Re: Order 4711", mid="<c1@customer.example>", extra=headers),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    assert bob.ticket.pk == first.ticket.pk and bob.message.thread_reason == "header"
    assert carol.ticket.pk == first.ticket.pk and carol.message.thread_reason == "header"


# --- (b) mail loops ------------------------------------------------------------------


def test_null_return_path_alone_means_automatic(email_inbox, django_capture_on_commit_callbacks):
    result = take(
        eml("Robot <robot@customer.example>", extra="Return-Path: <>\r\n"),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    assert result.created_ticket
    assert result.message.metadata["auto_submitted"] is True
    assert mail.outbox == []


def test_an_auto_reply_does_not_reopen_a_solved_ticket(email_inbox, django_capture_on_commit_callbacks):
    first = take(eml("Alice <alice@customer.example>"), email_inbox, django_capture_on_commit_callbacks)
    ticket_set_status(ticket=first.ticket, status=Ticket.Status.SOLVED)
    ooo = take(
        eml(
            "Alice <alice@customer.example>",
            subject="Out of office: Re: Order 4711",
            mid="<ooo@customer.example>",
            extra="Auto-Submitted: auto-replied\r\nIn-Reply-To: <a1@customer.example>\r\n",
        ),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    assert ooo.ticket.pk == first.ticket.pk
    assert Ticket.objects.get(pk=first.ticket.pk).status == Ticket.Status.SOLVED
    person = take(
        eml("Alice <alice@customer.example>", subject="Re: Order 4711", mid="<a2@customer.example>",
            extra="In-Reply-To: <a1@customer.example>\r\n"),
        email_inbox,
        django_capture_on_commit_callbacks,
    )  # fmt: skip
    assert Ticket.objects.get(pk=person.ticket.pk).status == Ticket.Status.OPEN


def test_mail_from_the_inboxs_own_address_opens_nothing(email_inbox, django_capture_on_commit_callbacks):
    for sender in ("Support <support@example.com>", "SUPPORT+abc@Example.com"):
        with pytest.raises(ApplicationError) as exc:
            take(eml(sender, mid=f"<own-{sender[:3]}@example.com>"), email_inbox, django_capture_on_commit_callbacks)
        assert exc.value.code == "own_address"
    assert not Ticket.objects.exists() and mail.outbox == []
    assert set(RawInbound.objects.values_list("status", flat=True)) == {"ignored"}
    assert "loop" in RawInbound.objects.first().error


# --- (c) header injection in replies ----------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Support <x@evil.example>", "Eve\r\nBcc: victim@evil.example", 'Zoë, "the" <boss>', "=?utf-8?q?x?=\nTo: a@b.c"],
)
def test_replies_go_out_whatever_the_name_and_subject(email_inbox, agent, name, django_capture_on_commit_callbacks):
    first = take(eml("Cust <cust@customer.example>"), email_inbox, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    customer = first.ticket.customer
    customer.name = name
    customer.save()
    Ticket.objects.filter(pk=first.ticket.pk).update(subject="Order\r\nBcc: victim@evil.example")
    ticket = Ticket.objects.get(pk=first.ticket.pk)
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=ticket, author=agent, body="On its way.")
    out.refresh_from_db()
    assert out.status == "sent", out.error
    [sent] = mail.outbox
    message = sent.message()
    assert message.get_all("Bcc") is None
    assert "\n" not in message["Subject"].replace("\n ", "")  # folded, never a new header
    # The SMTP envelope (what smtplib sends RCPT TO for) and the To header name one mailbox.
    assert [parseaddr(sanitize_address(a, "utf-8"))[1] for a in sent.recipients()] == ["cust@customer.example"]
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["cust@customer.example"]


# --- (d) oversized mail and NUL bytes -------------------------------------------------


def test_a_huge_mail_creates_its_ticket_trimmed_and_tells_the_agent(
    email_inbox, agent, settings, django_capture_on_commit_callbacks
):
    big = base64.encodebytes(b"\x00" * (26 * 1024 * 1024)).decode()
    body = "x" * 1_500_000
    raw = (
        "From: Big <big@customer.example>\r\nTo: support@example.com\r\nSubject: Logs\r\nMessage-ID: <big@c>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=small.txt\r\n\r\nsmall\r\n"
        f'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="dump.bin"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{big}\r\n--b--\r\n"
    ).encode()
    assert len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # bigger than any form: mail has its own cap
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=agent, name='t')[1]}")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/inbound/email/", data=raw, content_type="message/rfc822")
    assert response.status_code == 201, response.content[:500]
    message = Message.objects.get(pk=response.json()["message"])
    result = type("R", (), {"ticket": message.ticket, "created_ticket": response.json()["created_ticket"]})
    assert result.created_ticket
    assert len(message.body_text) < settings.CXDESK_MAX_BODY_CHARS + 200
    assert message.body_text.startswith("xxx") and "Message truncated" in message.body_text
    assert [a.filename for a in message.attachments.all()] == ["small.txt"]
    event = TicketEvent.objects.get(ticket=result.ticket, kind="mail_trimmed")
    assert "dump.bin" in event.data["new"] and "truncated" in event.data["new"]
    assert message.metadata["trimmed"]
    settings.CXDESK_MAX_MAIL_BYTES = 1000
    over = client.post("/api/v1/inbound/email/", data=raw[:2000], content_type="message/rfc822")
    assert over.status_code == 413 and over.json()["error"]["code"] == "too_large"


def test_nul_bytes_never_give_a_500(email_inbox, agent):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=agent, name='t')[1]}")
    raw = (
        b"From: Nul\x00 Name <nul@customer.example>\r\nTo: support@example.com\r\nSubject: a\x00b\r\n"
        b"Message-ID: <nul@c>\r\nX-Weird: \x00\r\nContent-Type: text/plain\r\n\r\nbody\x00text\r\n"
    )
    response = client.post("/api/v1/inbound/email/", data=raw, content_type="message/rfc822")
    assert response.status_code == 201, response.content
    message = Message.objects.get()
    assert message.subject == "ab" and message.body_text == "bodytext"
    assert message.identity.display_name == "Nul Name"


# --- (e) ESP webhooks -------------------------------------------------------------------

POSTMARK = {
    "FromFull": {"Email": "customer@example.org", "Name": "Cust"},
    "ToFull": [{"Email": "support@example.com", "Name": ""}],
    "Subject": "hello",
    "TextBody": "hi",
    "Headers": [{"Name": "Message-ID", "Value": "<pm-x@example.org>"}],
}


def _post(client):
    return client.post("/hooks/anymail/postmark/inbound/", data=json.dumps(POSTMARK), content_type="application/json")


def test_esp_webhooks_are_refused_without_a_secret(client, email_inbox, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ""}
    settings.CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED = False
    response = _post(client)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "webhook_not_configured"
    assert not Message.objects.exists() and not RawInbound.objects.exists()
    assert [m.id for m in check_webhook_secret(None)] == ["cxdesk.I102"]

    settings.CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED = True
    assert _post(client).status_code == 200
    assert Message.objects.count() == 1
    assert [m.id for m in check_webhook_secret(None)] == ["cxdesk.W101"]

    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "esp:s3cret"}
    assert _post(client).status_code in (400, 401, 403)  # anymail's own basic-auth check
    assert check_webhook_secret(None) == []


def test_esp_mail_bigger_than_a_form_is_taken_under_the_mail_cap(client, email_inbox, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "esp:s3cret"}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    payload = {**POSTMARK, "TextBody": "long " * 2000}
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"esp:s3cret").decode()}
    url = "/hooks/anymail/postmark/inbound/"
    response = client.post(url, data=json.dumps(payload), content_type="application/json", **auth)
    assert response.status_code == 200
    assert Message.objects.get().body_text.startswith("long long")
    settings.CXDESK_MAX_MAIL_BYTES = 1000
    response = client.post(url, data=json.dumps(payload), content_type="application/json", **auth)
    assert response.status_code == 413
