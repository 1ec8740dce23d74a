import pytest

from channels_app.models import RawInbound
from channels_app.services import raw_inbound_failed, raw_inbound_store
from tests.channels_app.factories import InboxFactory
from tests.tickets.factories import AgentFactory

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MAIL = (
    b"From: Dora <dora@customer.example>\r\nTo: sales@example.com\r\nSubject: Quote please\r\n"
    b"Message-ID: <dlb-1@customer.example>\r\n\r\nA quote for 40 chairs, please.\r\n"
)


@pytest.fixture
def dead_letter(live_server_url):
    AgentFactory(username="ana", first_name="Ana")
    record = raw_inbound_store(raw=MAIL, source="anymail:postmark", inbox=None)
    raw_inbound_failed(raw=record, error="no email inbox for recipients ['sales@example.com']")
    InboxFactory(kind="email", name="Sales", config={"address": "sales@example.com", "auto_ack": "false"})
    return record


def test_an_agent_finds_a_dead_letter_and_retries_it(live_server_url, dead_letter, browser):
    page = sign_in(browser, live_server_url, "ana")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.click("header nav >> text=Dead letters")
    page.wait_for_url(f"{live_server_url}/desk/dead-letters/")
    row = page.locator(f"#dead-letter-{dead_letter.pk}")
    assert "no email inbox" in row.inner_text()
    link = row.locator("a[download]")
    assert link.get_attribute("href") == f"/desk/dead-letters/{dead_letter.pk}/raw/"
    with page.expect_download() as download:
        link.click()
    assert open(download.value.path(), "rb").read() == MAIL
    row.locator("button", has_text="Retry").click()
    page.wait_for_selector(".flash li")
    assert "taken" in page.inner_text(".flash")
    assert page.locator(f"#dead-letter-{dead_letter.pk}").count() == 0
    assert RawInbound.objects.get(pk=dead_letter.pk).status == "processed"
    assert errors == []
