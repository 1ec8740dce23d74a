import re

import pytest

from channels_app.services import ingest
from customers.models import Identity
from tests.channels_app.factories import InboxFactory, email_inbound, inbound
from tests.tickets.factories import AgentFactory

from .conftest import SCREENSHOTS, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def portal_data(live_server_url):
    AgentFactory(username="ana", first_name="Ana")
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    sms = InboxFactory(kind="twilio", name="SMS", config={"phone_number": "+15005550006"})
    by_sms = ingest(inbound(sms, address="+48600100200", text="My parcel is late (SMS)")).ticket
    Identity.objects.create(customer=by_sms.customer, kind="email", address="ola@example.com")
    by_email = ingest(email_inbound(mail, address="ola@example.com", subject="Invoice for order 1042")).ticket
    return by_sms, by_email


def test_customer_signs_in_by_link_sees_all_channels_and_reply_reaches_the_desk_live(
    live_server_url, portal_data, browser, tmp_path
):
    base = live_server_url
    by_sms, by_email = portal_data
    agent = sign_in(browser, base, "ana")
    agent.goto(f"{base}/desk/tickets/{by_email.pk}/")
    agent.wait_for_selector("#live-status.on")

    customer = browser.new_context(viewport={"width": 390, "height": 844}).new_page()  # a phone
    customer.set_default_timeout(10_000)
    customer.goto(f"{base}/portal/")
    customer.fill("input[name=address]", "ola@example.com")
    customer.click("button[type=submit]")
    customer.wait_for_selector(".flash")
    mails = sorted((tmp_path / "mail").glob("*.log"))
    link = re.search(r"(/portal/sign-in/[^/\s]+/)", mails[-1].read_text()).group(1)
    customer.goto(f"{base}{link}")
    customer.wait_for_selector("text=My requests")
    assert customer.locator("text=My parcel is late (SMS)").count() == 1
    assert customer.locator("text=Invoice for order 1042").count() == 1
    customer.click("text=Invoice for order 1042")
    customer.fill("textarea[name=body]", "Here is our VAT number: PL123")
    customer.click("form.card button[type=submit]")
    customer.wait_for_selector("text=Here is our VAT number: PL123")
    customer.screenshot(path=str(SCREENSHOTS / "portal.png"), full_page=True)
    agent.wait_for_selector("text=Here is our VAT number: PL123", timeout=5000)
