import hashlib
import hmac
import json
from datetime import timedelta

import pytest
import responses
from django.utils import timezone

from channels_app.models import Inbox
from channels_app.services import ingest
from customers.models import Identity
from cxdesk.errors import ApplicationError
from tests import DATA
from tests.channels_app.factories import InboxFactory, email_inbound
from tickets.models import Attachment, Message, Ticket
from tickets.services import reply

pytestmark = pytest.mark.django_db

SECRET = "meta-app-secret-0123456789"
GRAPH = "https://graph.facebook.com/v21.0"


@pytest.fixture
def wa_inbox():
    return InboxFactory(
        kind="whatsapp", name="WhatsApp", transport=Inbox.Transport.LIVE,
        config={"phone_number_id": "106540352242922", "default_region": "PL"},
        secrets={"app_secret": SECRET, "verify_token": "let-me-in", "access_token": "EAAtoken"},
    )  # fmt: skip


@pytest.fixture
def fb_inbox():
    return InboxFactory(
        kind="messenger", name="Messenger", transport=Inbox.Transport.LIVE, config={"page_id": "113456789012345"},
        secrets={"app_secret": SECRET, "verify_token": "let-me-in", "access_token": "EAApage"},
    )  # fmt: skip


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, inbox, body: bytes, signature: str | None = None):
    return client.post(
        f"/hooks/meta/{inbox.pk}/", data=body, content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature if signature is not None else sign(body),
    )  # fmt: skip


def test_signature_vectors_verify_over_the_exact_bytes(client, wa_inbox, fb_inbox):
    vectors = json.loads((DATA / "webhooks/meta/vectors.json").read_text())["vectors"]
    for v in vectors:
        raw = (DATA / "webhooks/meta" / v["file"]).read_bytes()
        inbox = fb_inbox if v["file"].startswith("messenger") else wa_inbox
        assert post(client, inbox, raw, v["signature_header"]).status_code == 200, v["name"]
        # re-serialised JSON is different bytes: the same signature must fail
        reserialised = json.dumps(json.loads(raw)).encode()
        assert reserialised != raw
        assert post(client, inbox, reserialised, v["signature_header"]).status_code == 403
    texts = set(Message.objects.values_list("body_text", flat=True))
    assert "Dzień dobry, gdzie jest moja przesyłka 4711?" in texts
    assert "Hello, my order has not arrived yet" in texts


def test_verify_challenge(client, wa_inbox):
    ok = client.get(
        f"/hooks/meta/{wa_inbox.pk}/",
        {"hub.mode": "subscribe", "hub.verify_token": "let-me-in", "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200
    assert ok.content == b"1158201444"
    bad = client.get(
        f"/hooks/meta/{wa_inbox.pk}/", {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    )
    assert bad.status_code == 403


def test_whatsapp_text_five_times_is_one_message_with_the_customer_name(client, wa_inbox):
    raw = (DATA / "webhooks/meta/whatsapp_text.json").read_bytes()
    for _ in range(5):
        assert post(client, wa_inbox, raw).status_code == 200
    message = Message.objects.get()
    assert message.channel == "whatsapp"
    assert message.identity.address == "+48600100200"
    assert message.identity.customer.name == "Zofia Nowak"


def test_forged_signature_stores_nothing(client, wa_inbox):
    raw = (DATA / "webhooks/meta/whatsapp_text.json").read_bytes()
    assert post(client, wa_inbox, raw, sign(raw, "wrong-secret")).status_code == 403
    assert post(client, wa_inbox, raw, "").status_code == 403
    assert Message.objects.count() == 0


def test_malformed_body_is_400(client, wa_inbox):
    body = b"{not json"
    response = post(client, wa_inbox, body)
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]["message"]


def test_every_pywa_payload_is_accepted(client, wa_inbox):
    wa_inbox.config = {"default_region": "PL", "phone_number_id": "1122334455667"}
    wa_inbox.save()
    seen = 0
    for path in sorted((DATA / "webhooks/meta/pywa").glob("*.json")):
        for name, payload in json.loads(path.read_text()).items():
            raw = json.dumps(payload).encode()
            response = post(client, wa_inbox, raw)
            assert response.status_code == 200, (
                f"{path.name}:{name} → {response.status_code} {response.content[:200]!r}"
            )
            seen += 1
    assert seen >= 40
    kinds = set(Message.objects.values_list("metadata__type", flat=True))
    assert {"text", "interactive", "button"} <= kinds


def test_pywa_media_messages_parse_to_attachments(wa_inbox, rf):
    from channels_app.adapters import get_adapter

    payloads = json.loads((DATA / "webhooks/meta/pywa/pywa_message.json").read_text())
    for kind in ("image", "video", "document"):
        request = rf.post("/", data=json.dumps(payloads[kind]), content_type="application/json")
        wa_inbox.config = {"phone_number_id": "1122334455667"}
        [item] = get_adapter("whatsapp").parse(request, wa_inbox)
        assert item.attachments, kind
        assert item.attachments[0].url.startswith("wa-media:")


@responses.activate
def test_image_is_downloaded_through_the_graph_api(client, wa_inbox, django_capture_on_commit_callbacks):
    responses.get(
        f"{GRAPH}/1037543291543636", json={"url": "https://lookaside.fbsbx.com/x?mid=1", "mime_type": "image/jpeg"}
    )
    responses.get("https://lookaside.fbsbx.com/x?mid=1", body=b"JPEGDATA", content_type="image/jpeg")
    raw = (DATA / "webhooks/meta/whatsapp_image.json").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, wa_inbox, raw).status_code == 200
    att = Attachment.objects.get()
    assert att.file.read() == b"JPEGDATA"
    assert Message.objects.get().body_text == "Uszkodzone pudełko"
    assert all(c.request.headers["Authorization"] == "Bearer EAAtoken" for c in responses.calls)


def test_status_events_update_and_never_go_back(client, wa_inbox):
    ticket = ingest(email_inbound(InboxFactory(kind="email", name="Mail", config={"address": "s@example.com"}))).ticket
    msg = Message.objects.create(
        ticket=ticket, direction="outbound", channel="whatsapp", inbox=wa_inbox, status="read",
        provider_message_id="wamid.OWN-OUT-0003",
    )  # fmt: skip
    assert post(client, wa_inbox, (DATA / "webhooks/meta/whatsapp_status.json").read_bytes()).status_code == 200
    msg.refresh_from_db()
    assert msg.status == "read", "a late 'delivered' must not undo 'read'"
    msg.status = "sent"
    msg.save()
    assert post(client, wa_inbox, (DATA / "webhooks/meta/whatsapp_status.json").read_bytes()).status_code == 200
    msg.refresh_from_db()
    assert msg.status == "delivered"


@responses.activate
def test_email_ticket_answered_by_whatsapp_exact_graph_request(
    client, wa_inbox, agent, django_capture_on_commit_callbacks
):
    mail = InboxFactory(kind="email", name="Mail", config={"address": "s@example.com"})
    first = ingest(email_inbound(mail, address="zofia@example.com", subject="Order 1234"))
    Identity.objects.create(customer=first.ticket.customer, kind="phone", address="+48600100200")
    # the customer then writes on WhatsApp from the linked number: same ticket
    assert post(client, wa_inbox, (DATA / "webhooks/meta/whatsapp_text.json").read_bytes()).status_code == 200
    wa = Message.objects.get(channel="whatsapp")
    assert wa.ticket_id == first.ticket.pk
    assert wa.thread_reason == "open_ticket"
    responses.post(f"{GRAPH}/106540352242922/messages", json={"messages": [{"id": "wamid.OUT1"}]})
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=first.ticket, author=agent, body="Your parcel ships today", channel="whatsapp")
    [call] = responses.calls
    assert call.request.headers["Authorization"] == "Bearer EAAtoken"
    assert json.loads(call.request.body) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "48600100200",
        "type": "text",
        "text": {"preview_url": False, "body": "Your parcel ships today"},
    }
    out.refresh_from_db()
    assert out.status == "sent"
    assert out.provider_message_id == "wamid.OUT1"


@responses.activate
def test_24_hour_window_refuses_free_text_but_allows_a_template(
    client, wa_inbox, agent, django_capture_on_commit_callbacks
):
    assert post(client, wa_inbox, (DATA / "webhooks/meta/whatsapp_text.json").read_bytes()).status_code == 200
    Message.objects.update(created_at=timezone.now() - timedelta(hours=25))
    ticket = Ticket.objects.get()
    with pytest.raises(ApplicationError) as exc:
        reply(ticket=ticket, author=agent, body="hello?")
    assert exc.value.code == "channel_window_closed"
    assert "24-hour" in exc.value.message
    assert Message.objects.filter(direction="outbound").count() == 0
    responses.post(f"{GRAPH}/106540352242922/messages", json={"messages": [{"id": "wamid.T1"}]})
    template = {"name": "order_update", "language": {"code": "pl"}}
    with django_capture_on_commit_callbacks(execute=True):
        reply(ticket=ticket, author=agent, body="(template order_update)", template=template)
    assert json.loads(responses.calls[0].request.body) == {
        "messaging_product": "whatsapp", "to": "48600100200", "type": "template", "template": template,
    }  # fmt: skip


@responses.activate
def test_graph_error_is_permanent_failure_with_reason(client, wa_inbox, agent, django_capture_on_commit_callbacks):
    post(client, wa_inbox, (DATA / "webhooks/meta/whatsapp_text.json").read_bytes())
    responses.post(
        f"{GRAPH}/106540352242922/messages", status=400, json={"error": {"message": "Invalid parameter", "code": 100}}
    )
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=Ticket.objects.get(), author=agent, body="hi")
    out.refresh_from_db()
    assert out.status == "failed"
    assert "Invalid parameter" in out.error


@responses.activate
def test_messenger_inbound_and_reply(client, fb_inbox, agent, django_capture_on_commit_callbacks):
    raw = (DATA / "webhooks/meta/messenger_text.json").read_bytes()
    assert post(client, fb_inbox, raw).status_code == 200
    message = Message.objects.get()
    assert message.channel == "messenger"
    assert message.identity.kind == "messenger"
    assert message.identity.address == "6543210987654321"
    responses.post(
        f"{GRAPH}/113456789012345/messages", json={"recipient_id": "6543210987654321", "message_id": "m_OUT"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=message.ticket, author=agent, body="Checking now")
    assert json.loads(responses.calls[0].request.body) == {
        "recipient": {"id": "6543210987654321"}, "message": {"text": "Checking now"}, "messaging_type": "RESPONSE",
    }  # fmt: skip
    out.refresh_from_db()
    assert out.provider_message_id == "m_OUT"


@responses.activate
@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "https://evil.example/a.jpg"])
def test_messenger_attachment_urls_off_metas_cdn_are_not_fetched(
    client, fb_inbox, url, django_capture_on_commit_callbacks
):
    responses.get("https://evil.example/a.jpg", body=b"x")
    event = {
        "object": "page",
        "entry": [{"id": "113456789012345", "time": 1, "messaging": [{
            "sender": {"id": "6543210987654321"}, "recipient": {"id": "113456789012345"}, "timestamp": 1700000000000,
            "message": {"mid": "m_ssrf", "attachments": [{"type": "image", "payload": {"url": url}}]},
        }]}],
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, fb_inbox, json.dumps(event).encode()).status_code == 200
    assert len(responses.calls) == 0
    assert not Attachment.objects.get().sha256


@responses.activate
def test_messenger_attachment_from_the_cdn_is_fetched_without_the_page_token(
    client, fb_inbox, django_capture_on_commit_callbacks
):
    url = "https://scontent.xx.fbcdn.net/v/t1/p.jpg?oh=1"
    responses.get(url, body=b"JPEG", content_type="image/jpeg")
    event = {
        "object": "page",
        "entry": [{"id": "113456789012345", "time": 1, "messaging": [{
            "sender": {"id": "6543210987654321"}, "recipient": {"id": "113456789012345"}, "timestamp": 1700000000000,
            "message": {"mid": "m_cdn", "attachments": [{"type": "image", "payload": {"url": url}}]},
        }]}],
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, fb_inbox, json.dumps(event).encode()).status_code == 200
    assert Attachment.objects.get().file.read() == b"JPEG"
    assert "Authorization" not in responses.calls[0].request.headers


def test_queued_whatsapp_json_is_stored_then_ingested(client, wa_inbox, settings, django_capture_on_commit_callbacks):
    """CXDESK_WEBHOOKS=queued with a JSON provider: the exact bytes are kept and re-parsed."""
    from channels_app.models import RawInbound

    settings.CXDESK_WEBHOOKS = "queued"
    raw = (DATA / "webhooks/meta/whatsapp_text.json").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, wa_inbox, raw).status_code == 200
    record = RawInbound.objects.get()
    assert record.raw == raw and record.content_type == "application/json"
    message = Message.objects.get()
    assert record.message_id == message.pk and message.channel == "whatsapp"
