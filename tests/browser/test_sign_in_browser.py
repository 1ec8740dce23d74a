"""The desk's sign-in page in Chromium: the agent signs in on it (not the admin's page),
finds "Forgot password?", and a phone-width screen has no horizontal scroll."""

import pytest

from tests.browser.conftest import SCREENSHOTS

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_in_page_in_a_real_browser(live_server_url, browser):
    from tests.tickets.factories import AgentFactory

    AgentFactory(username="ana", first_name="Ana", password="pw")
    base = live_server_url
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/portal/"), "not signed in: the portal"
    page.goto(f"{base}/desk/")
    assert page.url.startswith(f"{base}/desk/sign-in/")
    assert "Django administration" not in page.content()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sign-in-phone.png"))
    page.click("text=Forgot password?")
    page.wait_for_url(f"{base}/desk/sign-in/reset/")
    page.go_back()
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".auth-error").is_visible()
    assert page.evaluate("getComputedStyle(document.querySelector('.auth-card')).borderRadius") != "0px", "styled"
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/desk/")
    assert not [u for u in missing if "favicon" not in u], missing
