"""Outgoing webhooks against a real HTTP server on loopback."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from channels_app.services import ingest
from integrations.models import WebhookDelivery, WebhookSubscription
from integrations.services import MAX_CONSECUTIVE_FAILURES, sign, webhook_subscribe
from tests.channels_app.factories import email_inbound

pytestmark = pytest.mark.django_db


class Receiver:
    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(settings):
    settings.CXDESK_ALLOW_PRIVATE_TARGETS = True  # the receiver is on loopback (an on-premise setup)
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def verify(secret: str, headers: dict, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["X-CXDesk-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(parts["v1"], expected)


def test_signed_deliveries_for_ticket_and_message_events(receiver, email_inbox, django_capture_on_commit_callbacks):
    sub, secret = webhook_subscribe(url=receiver.url, events=["ticket.created", "message.created"])
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(email_inbound(email_inbox, address="hook@example.com", subject="Hooked"))
    events = {h["X-CXDesk-Event"]: json.loads(b) for h, b in receiver.requests}
    assert set(events) == {"ticket.created", "message.created"}
    assert events["ticket.created"]["data"]["reference"] == result.ticket.reference
    for headers, body in receiver.requests:
        assert verify(secret, headers, body)
        assert not verify("wrong", headers, body)
    # ticket.created, the customer's message, and the auto-acknowledgement (an outbound message)
    log = list(WebhookDelivery.objects.values_list("status", "response_code", "attempts"))
    assert log == [("delivered", 200, 1)] * 3
    assert all(d.latency_ms is not None for d in WebhookDelivery.objects.all())
    assert sign(secret, b"{}", 1) == "t=1,v1=" + hmac.new(secret.encode(), b"1.{}", hashlib.sha256).hexdigest()


def test_notes_are_not_sent_and_unsubscribed_events_are_not_sent(
    receiver, email_inbox, agent, django_capture_on_commit_callbacks
):
    from tickets.services import note_add

    webhook_subscribe(url=receiver.url, events=["message.created"])
    ticket = ingest(email_inbound(email_inbox)).ticket
    receiver.requests.clear()
    WebhookDelivery.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        note_add(ticket=ticket, author=agent, body="secret note")
    assert receiver.requests == []


def test_failures_retry_then_the_subscription_is_disabled(
    receiver, email_inbox, settings, django_capture_on_commit_callbacks
):
    settings.CXDESK_WEBHOOK_RETRY_BASE = 0
    receiver.status = 500
    sub, _ = webhook_subscribe(url=receiver.url, events=["ticket.created"])
    for i in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            ingest(email_inbound(email_inbox, address=f"f{i}@example.com"))
    first, second = WebhookDelivery.objects.order_by("pk")
    assert (first.status, first.response_code, first.attempts) == ("failed", 500, 8)
    assert second.status == "failed"
    assert first.attempts + second.attempts == MAX_CONSECUTIVE_FAILURES, (
        "the subscription stops at the 10th failure in a row"
    )
    sub.refresh_from_db()
    assert not sub.is_active
    assert "failed deliveries in a row" in sub.disabled_reason
    # a disabled subscription gets nothing more
    count = len(receiver.requests)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(email_inbound(email_inbox, address="f3@example.com"))
    assert len(receiver.requests) == count


def test_a_recovering_endpoint_gets_the_event_once(receiver, email_inbox, settings, django_capture_on_commit_callbacks):
    settings.CXDESK_WEBHOOK_RETRY_BASE = 0
    calls = {"n": 0}
    original = receiver.server.RequestHandlerClass.do_POST

    def flaky(handler):
        calls["n"] += 1
        receiver.status = 503 if calls["n"] < 3 else 200
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = flaky
    webhook_subscribe(url=receiver.url, events=["ticket.created"])
    with django_capture_on_commit_callbacks(execute=True):
        ingest(email_inbound(email_inbox, address="r@example.com"))
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 3, 200)
    assert WebhookSubscription.objects.get().consecutive_failures == 0


def test_api_manages_subscriptions_and_shows_the_log(email_inbox, receiver, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    from integrations.services import api_key_create
    from tests.tickets.factories import AgentFactory

    _, key = api_key_create(user=AgentFactory(username="hooker"), name="k")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    bad = api.post("/api/v1/webhooks/", {"url": receiver.url, "events": ["ticket.exploded"]}, format="json")
    assert bad.status_code == 400
    made = api.post("/api/v1/webhooks/", {"url": receiver.url, "events": ["ticket.created"]}, format="json")
    assert made.status_code == 201
    assert made.json()["secret"]
    assert "secret" not in api.get(f"/api/v1/webhooks/{made.json()['id']}/").json()
    with django_capture_on_commit_callbacks(execute=True):
        ingest(email_inbound(email_inbox))
    log = api.get(f"/api/v1/webhooks/{made.json()['id']}/deliveries/").json()["results"]
    assert [(d["event"], d["status"], d["response_code"]) for d in log] == [("ticket.created", "delivered", 200)]


# --- SSRF: private targets refused at creation and at delivery ------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::1]:9000/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://2130706433/",
        "file:///etc/passwd",
    ],
)
def test_private_or_odd_urls_are_refused_by_the_api(url):
    from rest_framework.test import APIClient

    from integrations.services import api_key_create
    from tests.tickets.factories import AgentFactory

    _, key = api_key_create(user=AgentFactory(username="ssrf"), name="k")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    answer = api.post("/api/v1/webhooks/", {"url": url, "events": ["ticket.created"]}, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["fields"]["url"]
    assert WebhookSubscription.objects.count() == 0


def test_delivery_to_a_private_address_is_refused_and_the_log_is_short(
    receiver, email_inbox, settings, django_capture_on_commit_callbacks
):
    sub, _ = webhook_subscribe(url=receiver.url, events=["ticket.created"])  # allowed while on-premise mode is on
    settings.CXDESK_ALLOW_PRIVATE_TARGETS = False
    settings.CXDESK_WEBHOOK_RETRY_BASE = 0
    with django_capture_on_commit_callbacks(execute=True):
        ingest(email_inbound(email_inbox, address="p@example.com"))
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status in ("retrying", "failed")
    assert "non-public address" in delivery.error


def test_the_delivery_log_keeps_a_short_sanitised_excerpt(receiver, email_inbox, django_capture_on_commit_callbacks):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Chatty(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"\x1b[31mSECRET-START" + b"x" * 5000 + b"\x00\r\nSECRET-END")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Chatty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        webhook_subscribe(url=f"http://127.0.0.1:{server.server_address[1]}/", events=["ticket.created"])
        with django_capture_on_commit_callbacks(execute=True):
            ingest(email_inbound(email_inbox, address="c@example.com"))
    finally:
        server.shutdown()
        server.server_close()
    delivery = WebhookDelivery.objects.get()
    assert delivery.response_code == 500
    assert len(delivery.error) < 260
    assert "SECRET-END" not in delivery.error
    assert "\x1b" not in delivery.error and "\x00" not in delivery.error
