"""Web chat services through the frame protocol (the transport-independent part):
identification by one-time code, tracked links, the trail, invitations, HTTP fallback."""

import json
import re

import pytest
from django.core import mail

from channels_app.models import ChatInvitation, ChatVisitor
from channels_app.webchat import Session, dispatch, visitor_token
from customers.models import Identity, PageView
from customers.services import merge_customers, unmerge_customers
from customers.tracking import tracked_link_url
from tests.channels_app.factories import InboxFactory
from tickets.models import Message

SHOP = "https://shop.example.com"


@pytest.fixture
def chat_inbox(db):
    return InboxFactory(
        kind="webchat",
        name="Chat",
        config={
            "allowed_origins": SHOP,
            "invitations": json.dumps([{"rule": "email_link"}, {"rule": "returning", "url": "/pricing*", "visits": 2}]),
        },
    )


def started(inbox, **extra):
    session = Session(inbox=inbox)
    [frame] = dispatch(session, {"type": "start", **extra})
    assert frame["type"] == "session"
    return session, frame


def test_known_address_needs_the_code_before_anything_is_linked(
    chat_inbox, email_inbox, django_capture_on_commit_callbacks
):
    known = Identity.objects.create(
        customer=__import__("customers.models").models.Customer.objects.create(name="Zofia"),
        kind="email",
        address="zofia@example.com",
    )
    session, _ = started(chat_inbox)
    dispatch(session, {"type": "message", "text": "hi", "client_id": "1"})
    with django_capture_on_commit_callbacks(execute=True):
        [frame] = dispatch(session, {"type": "identify", "name": "Zofia", "address": "Zofia@Example.com"})
    assert frame == {"type": "identify", "status": "code_sent"}
    visitor_customer = session.visitor.identity.customer
    assert visitor_customer.pk != known.customer_id  # not linked by trust
    code = re.search(r"(\d{6})", mail.outbox[-1].body).group(1)
    [wrong] = dispatch(session, {"type": "verify", "code": "000000" if code != "000000" else "111111"})
    assert wrong["code"] == "wrong_code"
    frames = dispatch(session, {"type": "verify", "code": code})
    assert frames[0] == {"type": "identify", "status": "verified"}
    assert frames[1]["identified"] is True
    webchat = Identity.objects.get(kind="webchat")
    assert webchat.customer_id == known.customer_id
    assert Message.objects.get().ticket.customer_id == known.customer_id


def test_a_known_phone_gets_its_code_by_sms(chat_inbox, settings, django_capture_on_commit_callbacks):
    """The code goes out through the first active SMS inbox (channels_app.outbound.system_sms_send,
    which the portal's sign-in uses too), in the widget's words; no message is stored for it."""
    from customers.models import Customer

    InboxFactory(kind="twilio", name="SMS", config={"phone_number": "+48500000000"}, transport="file")
    Identity.objects.create(customer=Customer.objects.create(name="Piotr"), kind="phone", address="+48600100777")
    session, _ = started(chat_inbox)
    with django_capture_on_commit_callbacks(execute=True):
        [frame] = dispatch(session, {"type": "identify", "name": "Piotr", "address": "+48 600 100 777"})
    assert frame == {"type": "identify", "status": "code_sent"}
    [sent] = list((settings.CXDESK_OUTBOX_DIR / "twilio").glob("*.json"))
    body = json.loads(sent.read_text())
    assert body["to"] == "+48600100777" and "Your code to continue the chat" in body["text"]
    assert not Message.objects.filter(direction="outbound").exists()


def test_unknown_address_is_added_without_a_code(chat_inbox):
    session, _ = started(chat_inbox)
    [frame] = dispatch(session, {"type": "identify", "name": "New", "address": "new@example.com"})
    assert frame["status"] == "linked"
    assert Identity.objects.get(kind="email").customer_id == session.visitor.identity.customer_id
    [bad] = dispatch(session, {"type": "identify", "address": "not an address"})
    assert bad["code"] == "invalid_address"


def test_tracked_link_identifies_records_email_and_trail_follows_merges(chat_inbox, email_inbox):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound

    ticket = ingest(email_inbound(email_inbox, address="zofia@example.com")).ticket
    customer = ticket.customer
    anon, first = started(chat_inbox)
    dispatch(anon, {"type": "page", "url": f"{SHOP}/pricing", "title": "Pricing"})
    [page] = dispatch(anon, {"type": "page", "url": f"{SHOP}/pricing", "title": "Pricing"})
    assert page["visits"] == 2
    assert PageView.objects.filter(customer=None).count() == 2  # anonymous until identified

    link = tracked_link_url(f"{SHOP}/offer", customer_id=customer.pk, message_id=ticket.messages.first().pk)
    token = re.search(r"cx_t=([^&]+)", link).group(1)
    from urllib.parse import unquote

    session, frame = started(chat_inbox, token=first["token"], link=unquote(token))
    assert frame["came_from_email"] is True
    assert PageView.objects.filter(customer=customer).count() == 2  # earlier pages linked
    [forged] = dispatch(Session(inbox=chat_inbox), {"type": "start", "link": unquote(token)[:-2] + "xx"})
    assert forged["came_from_email"] is False

    [inv] = dispatch(session, {"type": "invitation", "rule": 0, "url": link})
    dispatch(session, {"type": "invitation_outcome", "id": inv["id"], "accepted": True})
    assert ChatInvitation.objects.get().outcome == "accepted"
    [err] = dispatch(session, {"type": "invitation", "rule": 9})
    assert err["code"] == "invalid"

    from customers.models import Customer

    other = Customer.objects.create(name="Other")
    PageView.objects.create(customer=other, url=f"{SHOP}/x")
    merge = merge_customers(keep=customer, other=other)
    assert PageView.objects.filter(customer=customer).count() == 3
    unmerge_customers(merge=merge)
    assert PageView.objects.filter(customer=other).count() == 1


def test_http_fallback_checks_origin_and_speaks_the_same_frames(chat_inbox, client):
    url = f"/chat/{chat_inbox.pk}/frames/"
    refused = client.post(url, data="{}", content_type="text/plain", HTTP_ORIGIN="https://evil.example.net")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_refused"
    ok = client.post(url, data=json.dumps({"frames": [{"type": "start"}]}), content_type="text/plain", HTTP_ORIGIN=SHOP)
    assert ok["Access-Control-Allow-Origin"] == SHOP
    token = ok.json()["frames"][0]["token"]
    sent = client.post(
        url,
        data=json.dumps({"token": token, "frames": [{"type": "message", "text": "over http", "client_id": "h1"}]}),
        content_type="text/plain",
        HTTP_ORIGIN=SHOP,
    )
    assert [f["type"] for f in sent.json()["frames"]] == ["ack", "message"]
    polled = client.get(f"/chat/{chat_inbox.pk}/poll/", {"token": token, "after": 0}, HTTP_ORIGIN=SHOP)
    assert [f["text"] for f in polled.json()["frames"]] == ["over http"]
    bad = client.post(url, data="nope", content_type="text/plain", HTTP_ORIGIN=SHOP)
    assert bad.status_code == 400
    assert client.get(f"/chat/{chat_inbox.pk}/poll/", {"token": "forged"}, HTTP_ORIGIN=SHOP).status_code == 403
    config = client.get(f"/chat/{chat_inbox.pk}/config/", {"lang": "fa"}, HTTP_ORIGIN=SHOP).json()
    assert config["dir"] == "rtl"
    assert config["strings"]["send"] == "ارسال"
    assert ChatVisitor.objects.count() == 1


def test_upload_limits(chat_inbox, client, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    start = client.post(
        f"/chat/{chat_inbox.pk}/frames/",
        data=json.dumps({"frames": [{"type": "start"}]}),
        content_type="text/plain",
        HTTP_ORIGIN=SHOP,
    )
    token = start.json()["frames"][0]["token"]
    url = f"/chat/{chat_inbox.pk}/upload/"
    exe = SimpleUploadedFile("x.exe", b"MZ", content_type="application/x-msdownload")
    assert client.post(url, {"token": token, "file": exe}, HTTP_ORIGIN=SHOP).status_code == 415
    settings.CXDESK_WEBCHAT_MAX_ATTACHMENT_BYTES = 10
    big = SimpleUploadedFile("a.png", b"x" * 11, content_type="image/png")
    assert client.post(url, {"token": token, "file": big}, HTTP_ORIGIN=SHOP).status_code == 413
    settings.CXDESK_WEBCHAT_MAX_ATTACHMENT_BYTES = 1000
    png = SimpleUploadedFile("a.png", b"\x89PNG....", content_type="image/png")
    ok = client.post(url, {"token": token, "file": png, "client_id": "f1"}, HTTP_ORIGIN=SHOP)
    assert ok.status_code == 200, ok.content
    [attachment] = ok.json()["frames"][0]["attachments"]
    assert (attachment["name"], attachment["size"]) == ("a.png", 8)
    path = attachment["url"].split("://", 1)[1].split("/", 1)[1]
    got = client.get(f"/{path}")
    assert got.status_code == 200
    assert b"".join(got.streaming_content) == b"\x89PNG...."
    assert client.get(f"/{path[:-3]}xx/").status_code == 404  # a forged link


def test_create_inbox_prints_one_script_tag(db, settings):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command("create_inbox", "webchat", "Shop chat", "--set", f"allowed_origins={SHOP}", stdout=out)
    made = json.loads(out.getvalue())
    assert set(made) == {"id", "name", "kind", "embed"}
    assert made["embed"] == (
        f'<script src="{settings.PUBLIC_URL}/static/cxdesk/widget.js" data-inbox="{made["id"]}" '
        f'data-server="{settings.PUBLIC_URL}" async></script>'
    )
    for bad in ("allowed_origins=shop.example.com", "prechat=maybe", "invitations=[{}]"):
        with pytest.raises(CommandError):
            call_command("create_inbox", "webchat", "Bad", "--set", bad, stdout=StringIO())


def test_offline_visitor_continues_by_email_and_sees_it_when_back(chat_inbox, email_inbox, agent):
    from cxdesk.errors import ApplicationError
    from tickets import services

    session, _ = started(chat_inbox)
    dispatch(session, {"type": "message", "text": "Anyone there?", "client_id": "1"})
    # No agent in time: the widget asks for an email (a new address: added without a code).
    [linked] = dispatch(session, {"type": "identify", "address": "later@example.com"})
    assert linked["status"] == "linked"
    ticket = Message.objects.get().ticket
    # The visitor left (no socket, no poll): a chat reply is refused with the reason…
    with pytest.raises(ApplicationError, match="reply by email"):
        services.reply(ticket=ticket, author=agent, body="Sorry for the wait", channel="chat")
    # …and the agent answers by email in the same ticket.
    sent = services.reply(ticket=ticket, author=agent, body="Sorry for the wait", channel="email")
    assert sent.ticket_id == ticket.pk and sent.identity.address == "later@example.com"
    # Back on the site later: the widget shows the email answer too.
    _back, frame = started(chat_inbox, token=visitor_token(session.visitor))
    assert [m["text"] for m in frame["messages"]] == ["Anyone there?", "Sorry for the wait"]


def test_invitation_measures_on_the_reports_page(chat_inbox, agent):
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from channels_app.selectors import invitation_measures

    session, _ = started(chat_inbox)
    ids = [dispatch(session, {"type": "invitation", "rule": 1, "url": f"{SHOP}/pricing"})[0]["id"] for _ in range(3)]
    dispatch(session, {"type": "invitation_outcome", "id": ids[0], "accepted": True})
    dispatch(session, {"type": "invitation_outcome", "id": ids[1], "accepted": False})
    [again] = dispatch(session, {"type": "invitation_outcome", "id": ids[1], "accepted": True})
    assert again["code"] == "not_found"  # decided once
    now = timezone.now()
    [row] = invitation_measures(start=now - timedelta(days=1), end=now + timedelta(minutes=1))
    assert row == {"rule": "returning", "shown": 3, "accepted": 1, "ignored": 1, "open": 1, "acceptance_rate": 0.5}
    desk = Client()
    desk.force_login(agent)
    assert 'id="chat-invitations"' in desk.get("/desk/reports/").content.decode()
