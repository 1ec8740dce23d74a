import pytest
from twilio.request_validator import RequestValidator

from channels_app.models import Inbox
from channels_app.services import ingest
from customers.models import Identity
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory

from .conftest import SCREENSHOTS, sign_in, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def desk_data(live_server_url):
    """Created before the browser starts (Playwright's loop would make the ORM refuse)."""
    AgentFactory(username="ana", first_name="Ana")
    AgentFactory(username="ben", first_name="Ben")
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    sms = InboxFactory(kind="twilio", name="SMS", transport=Inbox.Transport.FILE, secrets={"auth_token": "tok"},
                       config={"phone_number": "+15005550006", "public_url": live_server_url})  # fmt: skip
    ticket = ingest(
        email_inbound(
            mail,
            address="zofia@example.com",
            display_name="Zofia Nowak",
            subject="Parcel never arrived",
            text="Order 1042 is late.",
        )
    ).ticket
    Identity.objects.create(customer=ticket.customer, kind="phone", address="+48600100200")
    for i in range(4):
        ingest(email_inbound(mail, address=f"other{i}@example.com", subject=f"Other question {i}"))
    return ticket, sms


def test_two_agents_work_a_ticket_live(live_server_url, desk_data, browser):
    import requests

    base = live_server_url
    ticket, sms = desk_data
    ana = sign_in(browser, base, "ana")
    # filter the inbox
    ana.locator("input[name=q]").press_sequentially("parcel")
    wait_js(ana, "document.querySelectorAll('#inbox-rows .row').length === 1")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ana.goto(f"{base}/desk/")
    ana.screenshot(path=str(SCREENSHOTS / "inbox.png"), full_page=True)
    # keyboard: ? shows the shortcuts, j selects the first row
    ana.keyboard.press("?")
    ana.wait_for_selector("#help[open]")
    ana.keyboard.press("Escape")
    ana.keyboard.press("j")
    ana.wait_for_selector("#inbox-rows .row.selected")
    ana.click(f"text={ticket.subject}")
    ana.wait_for_selector("#live-status.on")

    ben = sign_in(browser, base, "ben")
    # Ben's inbox follows live: a new ticket appears on top, the counts change
    ben.wait_for_selector("#live-status.on")
    assert ben.locator("#view-counts [data-view=open] .count").inner_text() == "5"
    ingest_new = requests.post(
        f"{base}/hooks/twilio/{sms.pk}/",
        data=(first := {"MessageSid": "SMnew1", "From": "+48600999888", "To": "+15005550006", "Body": "New by SMS",
                        "NumMedia": "0"}),
        headers={"X-Twilio-Signature": RequestValidator("tok").compute_signature(f"{base}/hooks/twilio/{sms.pk}/",
                                                                                  first)},
        timeout=10,
    )  # fmt: skip
    assert ingest_new.status_code == 200
    wait_js(ben, "document.querySelector('#inbox-rows .row .excerpt').textContent.includes('New by SMS')", timeout=5)
    wait_js(ben, "document.querySelector('#view-counts [data-view=open] .count').textContent === '6'")
    ben.goto(f"{base}/desk/tickets/{ticket.pk}/")
    ben.wait_for_selector("#live-status.on")
    # presence: Ana sees Ben viewing, then replying
    wait_js(ana, "document.getElementById('presence').textContent.includes('Ben is viewing')")
    ben.fill("#reply-body", "Checking with the courier")
    wait_js(ana, "document.getElementById('presence').textContent.includes('Ben is replying')")
    # Ana replies; it is in her timeline and appears live in Ben's
    ana.fill("#reply-body", "We are on it, Zofia.")
    ana.click("#reply-form button[type=submit]")
    ana.wait_for_selector("text=We are on it, Zofia.")
    ben.wait_for_selector("#timeline-items >> text=We are on it, Zofia.", timeout=5000)
    # Ben was typing when Ana's reply went out: he is warned
    ben.wait_for_selector("#notices >> text=Ana replied while you were typing", timeout=5000)
    assert (
        ana.locator("#timeline-items li[id^=message-]").count()
        == ben.locator("#timeline-items li[id^=message-]").count()
    )
    # a Twilio-signed SMS from the customer shows up live in Ana's open ticket
    params = {
        "MessageSid": "SMlive1",
        "From": "+48600100200",
        "To": "+15005550006",
        "Body": "Any news? (sent by SMS)",
        "NumMedia": "0",
    }
    url = f"{base}/hooks/twilio/{sms.pk}/"
    signature = RequestValidator("tok").compute_signature(url, params)
    response = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200
    ana.wait_for_selector("#timeline-items >> text=Any news? (sent by SMS)", timeout=5000)
    ana.screenshot(path=str(SCREENSHOTS / "ticket.png"), full_page=True)
    ana.goto(f"{base}/desk/customers/{ticket.customer_id}/")
    ana.wait_for_selector("text=Everything they wrote")
    ana.screenshot(path=str(SCREENSHOTS / "customer-360.png"), full_page=True)

    # phone width: the inbox and the ticket fit without sideways scrolling
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=ana.context.storage_state())
    small = phone.new_page()
    for path in ("/desk/", f"/desk/tickets/{ticket.pk}/"):
        small.goto(f"{base}{path}")
        assert small.evaluate("document.documentElement.scrollWidth") <= 390, path
    small.goto(f"{base}/desk/")
    small.screenshot(path=str(SCREENSHOTS / "inbox-phone.png"), full_page=True)
