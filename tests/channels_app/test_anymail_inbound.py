import base64
import json

import pytest

from channels_app.models import RawInbound
from tickets.models import Message

pytestmark = pytest.mark.django_db

AUTH = "HTTP_AUTHORIZATION"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "esp:hook-secret"}


def basic(cred: str) -> str:
    return "Basic " + base64.b64encode(cred.encode()).decode()


POSTMARK = {
    "FromName": "Postmarkapp Support",
    "From": "support@postmarkapp.com",
    "FromFull": {"Email": "customer@example.org", "Name": "Cust Omer", "MailboxHash": ""},
    "To": "Support <support+abc@example.com>",
    "ToFull": [{"Email": "support+abc@example.com", "Name": "Support", "MailboxHash": "abc"}],
    "OriginalRecipient": "support+abc@example.com",
    "Subject": "Zamówienie nie dotarło",
    "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
    "Date": "Tue, 24 Nov 2026 10:00:00 +0100",
    "TextBody": "Gdzie jest moja paczka?",
    "HtmlBody": "<p>Gdzie jest <b>moja</b> paczka?</p>",
    "Headers": [{"Name": "Message-ID", "Value": "<pm-1@mail.example.org>"}],
    "Attachments": [
        {
            "Name": "paragon.txt",
            "Content": base64.b64encode(b"receipt").decode(),
            "ContentType": "text/plain",
            "ContentLength": 7,
        }
    ],
}


def test_postmark_inbound_becomes_a_ticket_once(client, email_inbox):
    for _ in range(2):
        response = client.post(
            "/hooks/anymail/postmark/inbound/",
            data=json.dumps(POSTMARK),
            content_type="application/json",
            **{AUTH: basic("esp:hook-secret")},
        )
        assert response.status_code == 200
    message = Message.objects.get()
    assert message.identity.address == "customer@example.org"
    assert message.subject == "Zamówienie nie dotarło"
    assert "Gdzie jest moja paczka?" in message.body_text
    assert [a.filename for a in message.attachments.all()] == ["paragon.txt"]
    assert RawInbound.objects.filter(source="anymail:postmark").count() == 2


def test_wrong_secret_is_rejected(client, email_inbox):
    response = client.post(
        "/hooks/anymail/postmark/inbound/",
        data=json.dumps(POSTMARK),
        content_type="application/json",
        **{AUTH: basic("esp:guess")},
    )
    assert response.status_code in (400, 401, 403)
    assert Message.objects.count() == 0


def test_mail_for_an_unknown_address_is_a_visible_dead_letter(client, email_inbox):
    payload = {
        **POSTMARK,
        "ToFull": [{"Email": "sales@elsewhere.example", "Name": ""}],
        "To": "sales@elsewhere.example",
        "OriginalRecipient": "sales@elsewhere.example",
    }
    response = client.post(
        "/hooks/anymail/postmark/inbound/",
        data=json.dumps(payload),
        content_type="application/json",
        **{AUTH: basic("esp:hook-secret")},
    )
    assert response.status_code == 200
    dead = RawInbound.objects.get()
    assert dead.status == "failed"
    assert "no email inbox" in dead.error
    assert Message.objects.count() == 0


MIME = (
    "From: Ola <ola@example.org>\r\nTo: support@example.com\r\nSubject: =?utf-8?q?Faktura_=C5=BAle?=\r\n"
    "Message-ID: <esp-mime-1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nProszę o korektę.\r\n"
)


def test_mailgun_raw_mime_route_signed_with_the_signing_key(client, email_inbox, settings):
    import hashlib
    import hmac
    import time

    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": "mg-signing-key"}
    timestamp, token = str(int(time.time())), "a" * 50
    signature = hmac.new(b"mg-signing-key", f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    form = {
        "recipient": "support@example.com",
        "sender": "ola@example.org",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
        "body-mime": MIME,
    }
    response = client.post("/hooks/anymail/mailgun/inbound_mime/", data=form, **{AUTH: basic("esp:hook-secret")})
    assert response.status_code == 200
    message = Message.objects.get()
    assert (message.subject, message.body_text) == ("Faktura źle", "Proszę o korektę.")
    assert message.email_message_id == "<esp-mime-1@example.org>"
    bad = client.post(
        "/hooks/anymail/mailgun/inbound_mime/",
        data={**form, "signature": "0" * 64},
        **{AUTH: basic("esp:hook-secret")},
    )
    assert bad.status_code == 400
    assert Message.objects.count() == 1


def test_sendgrid_inbound_parse_with_raw_mime(client, email_inbox):
    form = {"email": MIME, "to": "support@example.com", "from": "ola@example.org", "charsets": '{"email": "utf-8"}'}
    response = client.post("/hooks/anymail/sendgrid/inbound/", data=form, **{AUTH: basic("esp:hook-secret")})
    assert response.status_code == 200
    assert Message.objects.get().body_text == "Proszę o korektę."
    assert RawInbound.objects.get().source == "anymail:sendgrid"
