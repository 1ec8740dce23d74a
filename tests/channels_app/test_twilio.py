import json
import threading
from datetime import UTC
from urllib.parse import parse_qs

import pytest
import responses
from django.db import connection, connections
from django.test import Client

from channels_app.models import Inbox
from channels_app.services import ingest
from customers.models import Identity
from cxdesk.errors import ApplicationError
from tests import DATA
from tests.channels_app.factories import InboxFactory, email_inbound
from tickets.models import Attachment, Message, Ticket
from tickets.services import reply

pytestmark = pytest.mark.django_db

SID = "AC0123456789abcdef0123456789abcdef"


@pytest.fixture
def vectors():
    return {v["name"]: v for v in json.loads((DATA / "webhooks/twilio/vectors.json").read_text())["vectors"]}


def post(client, path, params, signature, **headers):
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature, **headers)


def test_every_sdk_signature_vector_passes_our_verify_and_a_tampered_one_fails(rf):
    from urllib.parse import urlencode, urlsplit

    from channels_app.adapters import get_adapter
    from channels_app.types import WebhookError

    adapter = get_adapter("twilio")
    checked = 0
    for v in json.loads((DATA / "webhooks/twilio/sdk_vectors.json").read_text())["vectors"]:
        if "body_file" in v:
            body_path = DATA / "webhooks/twilio" / v["body_file"]
            if not body_path.exists():
                continue  # the vector names a body file we do not ship
            body, ctype = body_path.read_bytes(), "application/x-www-form-urlencoded"
        elif "raw_body" in v:
            body, ctype = v["raw_body"].encode(), "application/json"
        else:
            body = (v.get("raw_form_body") or urlencode(v["params"])).encode()
            ctype = "application/x-www-form-urlencoded"
        parts = urlsplit(v["url"])
        inbox = Inbox(
            kind="twilio",
            config={"public_url": f"{parts.scheme}://{parts.netloc}"},
            secrets={"auth_token": v["auth_token"]},
        )
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        good = rf.post(path, data=body, content_type=ctype, HTTP_X_TWILIO_SIGNATURE=v["expected_signature"])
        adapter.verify(good, inbox)
        bad = rf.post(path, data=body + b"x", content_type=ctype, HTTP_X_TWILIO_SIGNATURE=v["expected_signature"])
        with pytest.raises(WebhookError):
            adapter.verify(bad, inbox)
        checked += 1
    assert checked >= 6


def test_a_signature_over_the_url_with_or_without_its_port_passes(rf):
    """Twilio signs the URL with its default port or without it, inconsistently: either form
    passes, whichever the request carries; any other port does not."""
    from twilio.request_validator import RequestValidator

    from channels_app.adapters import get_adapter
    from channels_app.types import WebhookError

    adapter = get_adapter("twilio")
    params = {"From": "+48600100200", "Body": "hello", "MessageSid": "SM1"}
    for public, signed in [
        ("https://desk.example.com", "https://desk.example.com:443/hooks/twilio/3/"),
        ("https://desk.example.com", "https://desk.example.com/hooks/twilio/3/"),
        ("https://desk.example.com:443", "https://desk.example.com/hooks/twilio/3/"),
    ]:
        inbox = Inbox(kind="twilio", config={"public_url": public}, secrets={"auth_token": "tok"})
        signature = RequestValidator("tok").compute_signature(signed, params)
        adapter.verify(rf.post("/hooks/twilio/3/", params, HTTP_X_TWILIO_SIGNATURE=signature), inbox)
    inbox = Inbox(kind="twilio", config={"public_url": "https://desk.example.com"}, secrets={"auth_token": "tok"})
    signature = RequestValidator("tok").compute_signature("https://desk.example.com:8443/hooks/twilio/3/", params)
    with pytest.raises(WebhookError):
        adapter.verify(rf.post("/hooks/twilio/3/", params, HTTP_X_TWILIO_SIGNATURE=signature), inbox)


def test_the_url_as_configured_is_signed_first_and_alone_when_it_matches(rf, monkeypatch):
    """A public URL with a port of its own (a proxy on :8443) is checked as configured, with
    one signature computed; the other form only when that one does not match."""
    from twilio.request_validator import RequestValidator

    from channels_app.adapters import get_adapter
    from channels_app.types import WebhookError

    adapter = get_adapter("twilio")
    params = {"From": "+48600100200", "Body": "hello", "MessageSid": "SM1"}
    inbox = Inbox(kind="twilio", config={"public_url": "https://desk.example.com:8443"}, secrets={"auth_token": "tok"})
    signature = RequestValidator("tok").compute_signature("https://desk.example.com:8443/hooks/twilio/3/", params)
    computed = []
    real = RequestValidator.compute_signature
    monkeypatch.setattr(
        RequestValidator,
        "compute_signature",
        lambda self, uri, *a, **k: computed.append(uri) or real(self, uri, *a, **k),
    )
    adapter.verify(rf.post("/hooks/twilio/3/", params, HTTP_X_TWILIO_SIGNATURE=signature), inbox)
    assert computed == ["https://desk.example.com:8443/hooks/twilio/3/"]
    computed.clear()
    with pytest.raises(WebhookError):
        adapter.verify(rf.post("/hooks/twilio/3/", params, HTTP_X_TWILIO_SIGNATURE="forged"), inbox)
    assert len(computed) == 2, "then the other form (as the SDK's `validate`), then refused"


def test_webhooks_are_served_without_the_desks_middleware(rf, twilio_inbox, vectors):
    """Through the real WSGI application: a signed webhook is answered and stored by the
    webhooks' handler (no sessions, sign-in or language: LocaleMiddleware would have said
    Content-Language), with the request id and security headers every answer has; a desk page
    still goes through the whole stack."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from cxdesk.wsgi import application

    def serve(request):
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

        # The real handler closes "old" connections as a request starts and ends: the test's
        # transaction is one (Django's test client does the same).
        for signal in (request_started, request_finished):
            signal.disconnect(close_old_connections)
        try:
            iterable = application(request.environ, start_response)
            body = b"".join(iterable)
            iterable.close()
        finally:
            for signal in (request_started, request_finished):
                signal.connect(close_old_connections)
        return answer["status"], answer["headers"], body

    v = vectors["inbound SMS"]
    status, headers, body = serve(rf.post("/hooks/twilio/3/", v["params"], HTTP_X_TWILIO_SIGNATURE=v["signature"]))
    assert status == 200, body
    assert Message.objects.get().body_text == v["params"]["Body"]
    assert "Content-Language" not in headers and "Set-Cookie" not in headers
    assert headers.get("X-Request-ID") and headers.get("X-Content-Type-Options") == "nosniff"
    status, headers, _ = serve(rf.get("/desk/"))
    assert status == 302 and "Content-Language" in headers and headers.get("X-Request-ID")


def test_inbound_sms_with_the_real_signature_lands_once(client, twilio_inbox, vectors):
    v = vectors["inbound SMS"]
    for _ in range(5):
        response = post(client, "/hooks/twilio/3/", v["params"], v["signature"])
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/xml")
        assert b"<Response/>" in response.content
    message = Message.objects.get()
    assert message.body_text == v["params"]["Body"]
    assert message.channel == "sms"
    assert message.identity.address == "+48600100200"
    assert message.provider_message_id == v["params"]["MessageSid"]


def test_forged_or_missing_signature_is_403_and_stores_nothing(client, twilio_inbox, vectors):
    v = vectors["inbound SMS"]
    forged = dict(v["params"], Body="changed")
    assert post(client, "/hooks/twilio/3/", forged, v["signature"]).status_code == 403
    assert client.post("/hooks/twilio/3/", v["params"]).status_code == 403
    assert Message.objects.count() == 0
    assert Identity.objects.count() == 0


def test_public_url_behind_a_proxy(client, twilio_inbox, vectors, settings):
    settings.PUBLIC_URL = "http://internal:8000"
    v = vectors["inbound SMS"]
    assert post(client, "/hooks/twilio/3/", v["params"], v["signature"]).status_code == 403
    twilio_inbox.config["public_url"] = "https://example.com"
    twilio_inbox.save()
    assert post(client, "/hooks/twilio/3/", v["params"], v["signature"]).status_code == 200


@responses.activate
def test_mms_media_is_fetched_by_the_task(client, twilio_inbox, vectors, django_capture_on_commit_callbacks):
    v = vectors["inbound MMS with one image"]
    url = v["params"]["MediaUrl0"]
    responses.get(url, body=b"\xff\xd8jpegbytes", content_type="image/jpeg")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, "/hooks/twilio/3/", v["params"], v["signature"]).status_code == 200
    att = Attachment.objects.get()
    assert att.size == len(b"\xff\xd8jpegbytes")
    assert att.content_type == "image/jpeg"
    assert att.sha256 and att.file.read() == b"\xff\xd8jpegbytes"
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_status_callbacks_never_move_backwards(client, twilio_inbox, vectors):
    v = vectors["status callback"]
    ticket = ingest(email_inbound(InboxFactory(kind="email", name="Mail", config={"address": "s@example.com"}))).ticket
    msg = Message.objects.create(
        ticket=ticket, direction="outbound", channel="sms", inbox=twilio_inbox, status="sent",
        provider_message_id=v["params"]["MessageSid"],
    )  # fmt: skip
    assert post(client, "/hooks/twilio/3/status/", v["params"], v["signature"]).status_code == 200
    msg.refresh_from_db()
    assert msg.status == "delivered"
    # a late "sent" callback, correctly signed, does not undo "delivered"
    from twilio.request_validator import RequestValidator

    late = dict(v["params"], MessageStatus="sent", SmsStatus="sent")
    sig = RequestValidator("12345").compute_signature("https://example.com/hooks/twilio/3/status/", late)
    assert post(client, "/hooks/twilio/3/status/", late, sig).status_code == 200
    msg.refresh_from_db()
    assert msg.status == "delivered"


def _signed(params, path="/hooks/twilio/3/"):
    from twilio.request_validator import RequestValidator

    return RequestValidator("12345").compute_signature(f"https://example.com{path}", params)


def _sms(body, sid, sender="+48600100200"):
    return {"MessageSid": sid, "From": sender, "To": "+15005550006", "Body": body, "NumMedia": "0", "AccountSid": SID}


@responses.activate
def test_stop_opts_out_and_reply_is_refused_until_start(
    client, twilio_inbox, agent, django_capture_on_commit_callbacks
):
    p = _sms("hello", "SM1")
    post(client, "/hooks/twilio/3/", p, _signed(p))
    p = _sms("STOP", "SM2")
    post(client, "/hooks/twilio/3/", p, _signed(p))
    identity = Identity.objects.get(address="+48600100200")
    assert identity.opted_out_at is not None
    ticket = Ticket.objects.get()
    with pytest.raises(ApplicationError) as exc:
        reply(ticket=ticket, author=agent, body="hi?")
    assert exc.value.code == "opted_out"
    assert "opted out" in exc.value.message
    p = _sms("START", "SM3")
    post(client, "/hooks/twilio/3/", p, _signed(p))
    responses.post(
        f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json", json={"sid": "SMout1"}, status=201
    )
    with django_capture_on_commit_callbacks(execute=True):
        message = reply(ticket=ticket, author=agent, body="Welcome back")
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.provider_message_id == "SMout1"


@responses.activate
def test_outbound_sms_request_is_exactly_what_twilio_expects(twilio_inbox, agent, django_capture_on_commit_callbacks):
    client = Client()
    p = _sms("where is my parcel", "SM10")
    client.post("/hooks/twilio/3/", p, HTTP_X_TWILIO_SIGNATURE=_signed(p))
    responses.post(f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json", json={"sid": "SMabc"}, status=201)
    with django_capture_on_commit_callbacks(execute=True):
        reply(ticket=Ticket.objects.get(), author=agent, body="On its way!")
    [call] = responses.calls
    form = {k: v[0] for k, v in parse_qs(call.request.body).items()}
    assert form == {
        "To": "+48600100200",
        "From": "+15005550006",
        "Body": "On its way!",
        "StatusCallback": "https://example.com/hooks/twilio/3/status/",
    }
    import base64

    assert call.request.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:12345".encode()).decode()


@responses.activate
def test_permanent_twilio_error_marks_failed_with_the_reason(twilio_inbox, agent, django_capture_on_commit_callbacks):
    p = _sms("hi", "SM20")
    Client().post("/hooks/twilio/3/", p, HTTP_X_TWILIO_SIGNATURE=_signed(p))
    responses.post(
        f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json",
        json={"code": 21610, "message": "Attempt to send to unsubscribed recipient"},
        status=400,
    )
    with django_capture_on_commit_callbacks(execute=True):
        message = reply(ticket=Ticket.objects.get(), author=agent, body="hello")
    message.refresh_from_db()
    assert message.status == "failed"
    assert "21610" in message.error
    assert len(responses.calls) == 1


def test_whatsapp_through_twilio_shares_the_phone_identity(client, twilio_inbox):
    p = _sms("hi by sms", "SM30")
    post(client, "/hooks/twilio/3/", p, _signed(p))
    p = _sms("hi by whatsapp", "SM31", sender="whatsapp:+48600100200")
    post(client, "/hooks/twilio/3/", p, _signed(p))
    assert Identity.objects.count() == 1
    assert list(Message.objects.values_list("channel", flat=True)) == ["sms", "whatsapp"]
    assert Ticket.objects.count() == 1


def test_malformed_body_is_400(client, twilio_inbox):
    p = {"Body": "no sid", "From": "+48600100200"}
    response = post(client, "/hooks/twilio/3/", p, _signed(p))
    assert response.status_code == 400
    assert "MessageSid" in response.json()["error"]["message"]
    p = _sms("bad number", "SM40", sender="not-a-number")
    response = post(client, "/hooks/twilio/3/", p, _signed(p))
    assert response.status_code == 400
    assert Message.objects.count() == 0


def test_unknown_inbox_is_404(client, twilio_inbox):
    assert client.post("/hooks/twilio/999/", {}).status_code == 404
    assert client.post("/hooks/telegram/3/", {}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_webhooks_store_one_message(twilio_inbox):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    p = _sms("race", "SMrace")
    sig = _signed(p)
    barrier = threading.Barrier(5)
    codes = []

    def hit():
        try:
            barrier.wait()
            codes.append(Client().post("/hooks/twilio/3/", p, HTTP_X_TWILIO_SIGNATURE=sig).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=hit) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 5
    assert Message.objects.filter(provider_message_id="SMrace").count() == 1


@responses.activate
def test_reconcile_ingests_what_the_webhook_missed_once(twilio_inbox):
    from channels_app.reconcile import reconcile_twilio

    p = _sms("seen by webhook", "SMseen")
    Client().post("/hooks/twilio/3/", p, HTTP_X_TWILIO_SIGNATURE=_signed(p))
    listing = {
        "messages": [
            {"sid": "SMseen", "direction": "inbound", "from": "+48600100200", "to": "+15005550006", "body": "seen by webhook", "date_sent": "Tue, 24 Nov 2026 10:00:00 +0000"},
            {"sid": "SMmissed", "direction": "inbound", "from": "+48600100200", "to": "+15005550006", "body": "sent while down", "date_sent": "Tue, 24 Nov 2026 10:05:00 +0000"},
            {"sid": "SMout", "direction": "outbound-api", "from": "+15005550006", "to": "+48600100200", "body": "ours", "date_sent": "Tue, 24 Nov 2026 10:06:00 +0000"},
        ],
        "next_page_uri": None,
    }  # fmt: skip
    responses.get(f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json", json=listing)
    from datetime import datetime

    since = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert reconcile_twilio(since=since) == {"Twilio": 1}
    assert reconcile_twilio(since=since) == {"Twilio": 0}
    assert sorted(Message.objects.values_list("provider_message_id", flat=True)) == ["SMmissed", "SMseen"]


@responses.activate
def test_a_media_url_off_twilio_is_never_fetched_with_the_credentials(
    client, twilio_inbox, django_capture_on_commit_callbacks
):
    """A signed webhook whose MediaUrl0 points elsewhere (an attacker who knows the token, or
    a replayed body) must not make us send Basic auth — nor call the host at all."""
    responses.get("https://evil.example/grab", body=b"x")
    params = {
        "MessageSid": "MMssrf1", "From": "+48600100200", "To": "+15005550006", "Body": "pic",
        "NumMedia": "1", "MediaUrl0": "https://evil.example/grab", "MediaContentType0": "image/jpeg",
    }  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/hooks/twilio/3/", params, HTTP_X_TWILIO_SIGNATURE=_signed(params)).status_code == 200
    assert len(responses.calls) == 0
    assert not Attachment.objects.get().sha256
