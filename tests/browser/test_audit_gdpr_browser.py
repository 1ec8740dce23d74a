import json
import zipfile

import pytest

from channels_app.services import ingest
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def customer(live_server_url):
    AgentFactory(username="root", is_superuser=True)
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    return ingest(
        email_inbound(mail, address="marta@example.com", display_name="Marta Lis", text="Please forget me")
    ).ticket.customer


def test_admin_exports_erases_and_reads_the_audit_log(live_server_url, customer, browser, tmp_path):
    base = live_server_url
    page = sign_in(browser, base, "root")
    page.goto(f"{base}/desk/customers/{customer.pk}/")
    with page.expect_download() as download:
        page.click("text=Export all their data (zip)")
    path = tmp_path / "export.zip"
    download.value.save_as(path)
    data = json.loads(zipfile.ZipFile(path).read("customer.json"))
    assert data["tickets"][0]["messages"][0]["body_text"] == "Please forget me"

    page.click("text=Erase this customer…")
    page.fill("input[name=confirm]", str(customer.pk))
    page.click("button:has-text('Erase for good')")
    page.wait_for_selector("text=Erased on")
    assert "Marta" not in page.content()

    page.click("text=Audit log")
    page.select_option("select[name=action]", "customer.erased")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**/desk/audit/?**action=customer.erased**")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() == 1 and "Customer erased (GDPR)" in rows.inner_text()
    page.goto(f"{base}/desk/audit/?action=auth.sign_in")
    assert "root" in page.locator("table.audit tbody").inner_text()
