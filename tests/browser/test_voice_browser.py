"""Journey 1 in a real browser: a customer browsed the shop, then calls. A signed Twilio Voice
webhook reaches the live server and the agent who owns their ticket sees the screen-pop —
the caller, the open ticket and the last web page — on the open desk page within seconds."""

import pytest
import requests
from twilio.request_validator import RequestValidator

from channels_app.models import AgentPhone, Inbox
from channels_app.services import ingest
from customers.services import page_view_record
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory
from tickets.models import Ticket

from .conftest import SCREENSHOTS, sign_in, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def call_data(live_server_url):
    """Created before the browser starts (Playwright's loop would make the ORM refuse)."""
    ana = AgentFactory(username="ana", first_name="Ana")
    AgentPhone.objects.create(user=ana, number="+48500000001")
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    phone = InboxFactory(kind="twilio_voice", name="Phone", transport=Inbox.Transport.LIVE, secrets={"auth_token": "tok"},
                         config={"account_sid": "AC1", "phone_number": "+15005550006"})  # fmt: skip
    ticket = ingest(
        email_inbound(mail, address="zofia@example.com", display_name="Zofia Nowak", subject="Parcel never arrived")
    ).ticket
    ticket.customer.identities.create(kind="phone", address="+48600100200")
    Ticket.objects.filter(pk=ticket.pk).update(assignee=ana)
    page_view_record(customer=ticket.customer, url="https://shop.example.com/help/returns", title="Returns policy")
    page_view_record(customer=ticket.customer, url="https://shop.example.com/orders/1042", title="Order 1042 tracking")
    return ticket, phone


def test_a_call_pops_the_callers_web_trail_on_the_agents_desk(live_server_url, call_data, browser):
    base = live_server_url
    ticket, phone = call_data
    ana = sign_in(browser, base, "ana")
    ana.wait_for_selector("#live-status.on")

    url = f"{base}/hooks/twilio-voice/{phone.pk}/"
    params = {"CallSid": "CAbrowser1", "AccountSid": "AC1", "From": "+48600100200", "To": "+15005550006",
              "CallStatus": "ringing", "Direction": "inbound"}  # fmt: skip
    signature = RequestValidator("tok").compute_signature(url, params)
    answer = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert answer.status_code == 200 and "<Number" in answer.text and "+48500000001" in answer.text

    pop = ana.locator(".screen-pop")
    pop.wait_for(timeout=5000)
    text = pop.inner_text()
    assert "+48600100200" in text and "Zofia Nowak" in text
    assert f"{ticket.reference} Parcel never arrived" in text
    first_page = pop.locator(".pop-pages li").first
    assert "Order 1042 tracking" in first_page.inner_text()
    assert first_page.locator("a").get_attribute("href") == "https://shop.example.com/orders/1042"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ana.screenshot(path=str(SCREENSHOTS / "screen-pop.png"))
    assert pop.locator(f"a[href='/desk/tickets/{ticket.pk}/']").count() == 1
    # it stays until dismissed
    pop.locator("[data-dismiss]").click()
    wait_js(ana, "document.querySelectorAll('.screen-pop').length === 0")
    ana.goto(f"{base}/desk/tickets/{ticket.pk}/")
    assert "Incoming call from +48600100200" in ana.locator("#timeline-items").inner_text()
