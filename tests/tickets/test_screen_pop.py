"""The call screen-pop over the desk websocket: a signed Twilio Voice webhook reaches the
socket of the agent being rung (not another agent's) with the caller, the open ticket, the
last message on every channel and the last web pages; then its status follows the call."""

import asyncio

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from channels_app.models import AgentPhone, Inbox
from channels_app.services import ingest
from customers.services import page_view_record
from tests.channels_app.factories import InboxFactory, email_inbound, inbound
from tests.sockets import db
from tests.sockets import desk_socket as communicator
from tests.sockets import frame_until as until
from tests.tickets.factories import AgentFactory
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)
BASE = "https://desk.example.com"


@pytest.fixture(autouse=True)
def _layers(in_memory_layers, settings):
    settings.PUBLIC_URL = BASE
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _setup():
    ana = AgentFactory(username="ana", first_name="Ana")
    ben = AgentFactory(username="ben", first_name="Ben")
    AgentPhone.objects.create(user=ana, number="+48500000001")
    AgentPhone.objects.create(user=ben, number="+48500000002")
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    sms = InboxFactory(kind="twilio", name="SMS", config={"default_region": "PL"}, transport="file")
    phone = InboxFactory(kind="twilio_voice", name="Phone", secrets={"auth_token": "tok"}, transport=Inbox.Transport.LIVE,
                         config={"account_sid": "AC1", "phone_number": "+15005550006"})  # fmt: skip
    ticket = ingest(
        email_inbound(mail, address="zofia@example.com", display_name="Zofia Nowak", subject="Parcel never arrived")
    ).ticket
    ticket.customer.identities.create(kind="phone", address="+48600100200")
    ingest(inbound(sms, address="+48600100200", text="Any news about my parcel?"))
    Ticket.objects.filter(pk=ticket.pk).update(assignee=ana)
    page_view_record(
        customer=ticket.customer, url="https://shop.example.com/orders/1042", title="Order 1042 — tracking"
    )
    page_view_record(customer=ticket.customer, url="javascript:alert(1)", title="Sneaky")
    return ana, ben, phone, ticket


def _ring(phone):
    path = f"/hooks/twilio-voice/{phone.pk}/"
    params = {"CallSid": "CA1", "From": "+48600100200", "To": "+15005550006", "CallStatus": "ringing"}
    signature = RequestValidator("tok").compute_signature(BASE + path, params)
    response = Client().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200 and b"<Number" in response.content
    return response


def _answer(phone, agent_id):
    path = f"/hooks/twilio-voice/{phone.pk}/?event=leg&agent={agent_id}"
    params = {"CallSid": "CAleg", "ParentCallSid": "CA1", "CallStatus": "in-progress"}
    signature = RequestValidator("tok").compute_signature(BASE + path, params)
    assert Client().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200


def test_the_screen_pop_reaches_the_rung_agent_with_the_callers_web_pages():
    ana, ben, phone, ticket = _setup()
    asyncio.run(_scenario(ana, ben, phone, ticket))


async def _scenario(ana, ben, phone, ticket):
    a, b = communicator(ana), communicator(ben)
    assert (await a.connect())[0] and (await b.connect())[0]
    try:
        await db(lambda: _ring(phone))
        frame = await until(a, lambda f: f["event"] == "call.ringing")
        html = frame["html"]
        assert frame["ticket_id"] == ticket.pk
        assert 'hx-swap-oob="beforeend:#notices"' in html and 'class="screen-pop"' in html
        assert "Zofia Nowak" in html and "+48600100200" in html
        assert f"/desk/tickets/{ticket.pk}/" in html and "Parcel never arrived" in html
        # the last message on every channel
        assert "Any news about my parcel?" in html and 'title="Email"' in html and 'title="SMS"' in html
        # the last web pages: linked when http(s), never a javascript: link
        assert 'href="https://shop.example.com/orders/1042"' in html and "Order 1042 — tracking" in html
        assert "Sneaky" in html and "javascript:" not in html
        assert "Your phone is ringing" in html and "<script" not in html and "icons.svg#phone-incoming" in html

        await db(lambda: _answer(phone, ana.pk))
        frame = await until(a, lambda f: f["event"] == "call.answered")
        assert 'hx-swap-oob="true"' in frame["html"] and "Answered by Ana" in frame["html"]
    finally:
        await a.disconnect()
    # Ben is not rung and not on the ticket's team: no call frames for him (his socket got
    # the desk's own events; a read that times out ends the test communicator, so this is last)
    with pytest.raises(AssertionError, match="no matching frame"):
        await until(b, lambda f: f["event"].startswith("call."), timeout=0.5)
