"""One input-cleaning layer: NUL bytes and invalid UTF-8 are a 400, never a 500."""

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from integrations.services import api_key_create
from tests.tickets.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    _, key = api_key_create(user=AgentFactory(username="nul-api"), name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def desk():
    client = Client()
    client.force_login(AgentFactory(username="nul-desk", is_staff=True))
    return client


API_URLS = [
    "/api/v1/tickets/?status=a%00b",
    "/api/v1/tickets/?channel=%00",
    "/api/v1/tickets/?customer=1%00",
    "/api/v1/tickets/?updated_since=2020%00",
    "/api/v1/customers/?email=a%00@example.com",
    "/api/v1/customers/?phone=%2B48%00",
    "/api/v1/customers/?q=%00",
    "/api/v1/tickets/?status=%ff%fe",
    "/api/v1/tickets/?status=%ED%A0%80",  # an encoded surrogate
    "/api/v1/tickets/?sta%00tus=open",
]


def test_api_query_parameters(api):
    for url in API_URLS:
        answer = api.get(url)
        assert answer.status_code == 400, (url, answer.content[:300])
        error = answer.json()["error"]
        assert error["code"] == "malformed_input", url
        assert error["fields"], url


PAGE_URLS = [
    "/desk/?status=a%00b",
    "/desk/?q=%00",
    "/desk/?view=%00",
    "/kb/api/search/?q=a%00",
    "/desk/customers/1/?tab=%00",
    "/kb/?q=a%00b",
    "/kb/suggest/?q=%00",
    "/portal/?step=%00",
    "/desk/?q=%ff",
]


def test_page_query_parameters(desk):
    for url in PAGE_URLS:
        answer = desk.get(url)
        assert answer.status_code == 400, (url, answer.status_code)
        assert b"Bad request" in answer.content, url


def test_json_and_form_bodies(api, desk):
    answer = api.post(
        "/api/v1/tickets/",
        data=json.dumps({"subject": "a\u0000b", "body": "x", "customer": {"email": "n@example.com"}}),
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"] == {"subject": ["contains a NUL byte"]}
    lone = b'{"subject": "\\ud800", "body": "x", "customer": {"email": "n@example.com"}}'
    assert api.post("/api/v1/tickets/", data=lone, content_type="application/json").status_code == 400
    assert desk.post("/desk/tickets/1/reply/", {"body": "hi\x00"}).status_code == 400
    assert (
        api.post("/api/v1/tickets/", data=b"subject=a%00", content_type="application/x-www-form-urlencoded").status_code
        == 400
    )


def test_clean_input_still_passes(api):
    assert api.get("/api/v1/tickets/?status=open").status_code == 200
    ok = api.post(
        "/api/v1/tickets/",
        data={"subject": "Zażółć 😀", "body": "x", "customer": {"email": "ok@example.com"}},
        format="json",
    )
    assert ok.status_code == 201, ok.content


def test_telegram_update_with_unexpected_types_is_never_a_500(settings):
    from tests.channels_app.factories import InboxFactory

    inbox = InboxFactory(kind="telegram", name="TG", secrets={"bot_token": "1:x", "secret_token": "s3cret"})
    client = Client(raise_request_exception=False)
    bodies = [
        {
            "update_id": 1,
            "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "from": {"id": 5}, "text": 5},
        },
        {"update_id": 2, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "from": "x", "text": "hi"}},
        {"update_id": 3, "message": []},
        {"update_id": 4, "message": {"chat": "x", "from": {"id": 5}, "text": "hi"}},
        {"update_id": 5, "message": {"chat": {"id": 5}, "from": {"id": [1]}, "text": "hi"}},
        {"update_id": 6, "message": {"chat": {"id": 5}, "from": {"id": 5}, "photo": "x"}},
        {"update_id": 7, "message": {"chat": {"id": 5}, "from": {"id": 5}, "document": []}},
        {"update_id": 8, "message": {"chat": {"id": 5}, "from": {"id": 5}, "text": "hi", "date": "yesterday"}},
        {"update_id": 9, "message": {"chat": {"id": 5}, "from": {"id": 5}, "text": "a\u0000b"}},
        {"update_id": {"x": 1}, "message": {"chat": {"id": 5}, "from": {"id": 5}, "text": "hi"}},
    ]
    for body in bodies:
        answer = client.post(
            f"/hooks/telegram/{inbox.pk}/",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="s3cret",
        )
        assert answer.status_code in (200, 400), (body, answer.status_code, answer.content[:200])


def test_an_inbound_mail_with_nul_bytes_is_kept_without_them(api, email_inbox):
    """Raw mail is content, not form input: ingest strips NUL bytes (for every channel)."""
    from tickets.models import Message

    raw = (
        b"From: a@example.com\r\nTo: support@example.com\r\nSubject: nul\x00x\r\nMessage-ID: <n1@x>\r\n\r\n"
        b"body \x00 here\r\n"
    )
    answer = api.post(f"/api/v1/inbound/email/?inbox={email_inbox.name}", data=raw, content_type="message/rfc822")
    assert answer.status_code in (200, 201), answer.content[:300]
    message = Message.objects.get(direction="inbound")
    assert "\x00" not in message.body_text and "body" in message.body_text and "here" in message.body_text
    assert "\x00" not in message.ticket.subject
