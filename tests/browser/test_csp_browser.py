"""The strict Content-Security-Policy holds in a real browser: every main page works with no
CSP violation, remote images in mail are not requested, moved inline handlers still work."""

import pytest

from channels_app.services import ingest
from kb.models import Article, Category
from kb.services import article_save
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def data(live_server_url):
    AgentFactory(username="root", first_name="Root", is_superuser=True)
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    html = (
        '<p>Hello, see below.</p><img src="https://tracker.example/open.gif" width="1" height="1">'
        '<details><summary>More</summary><img src="https://tracker.example/hidden.png"></details>'
    )
    ticket = ingest(
        email_inbound(mail, address="pixel@example.com", subject="With a pixel", text="Hello, see below.", html=html)
    ).ticket
    category = Category.objects.create(name="Shipping", slug="shipping")
    article_save(
        article=Article(
            title="Parcels", slug="parcels", category=category, body_markdown="Track it.", status="published"
        )
    )
    return ticket


def test_pages_have_no_csp_violations_and_pixels_do_not_load(live_server_url, data, browser):
    base, ticket = live_server_url, data
    page = sign_in(browser, base, "root")
    violations: list[str] = []
    remote: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("request", lambda r: remote.append(r.url) if "//tracker.example" in r.url.split("?")[0] else None)
    paths = [
        "/desk/",
        f"/desk/tickets/{ticket.pk}/",
        f"/desk/customers/{ticket.customer_id}/",
        "/desk/reports/",
        "/kb/",
        "/kb/parcels/",
        "/admin/",
        "/admin/tickets/ticket/",
        "/api/v1/docs/",
        "/portal/",
    ]
    for path in paths:
        answer = page.goto(f"{base}{path}")
        assert answer.status == 200, path
        assert answer.headers.get("content-security-policy"), path
        page.wait_for_load_state("networkidle")
        if path == "/api/v1/docs/":
            page.wait_for_selector(".swagger-ui .info", timeout=10_000)  # the UI really rendered
        if path.startswith("/desk/tickets/"):
            assert page.locator("[data-load-images]").count() == 1
            page.click("[data-load-images]")  # loads through the desk's image proxy, never directly
            src = page.locator(".email-html img").first.get_attribute("src")
            assert src.startswith(f"/desk/tickets/{ticket.pk}/messages/") and "u=https%3A%2F%2Ftracker" in src
        assert not violations, (path, violations)
    assert remote == []

    # the status select submits on change (was an inline onchange handler)
    page.goto(f"{base}/desk/")
    with page.expect_navigation():
        page.select_option("#status-form select[name=status]", "away")
    assert page.locator("#status-form select[name=status]").input_value() == "away"
    assert not violations, violations
