"""Languages in a real browser (Debian's Chromium): the desk in Polish and in Persian (right
to left), a Persian subject with digits and a question mark in the right visual order, the
portal in Russian through its switcher, and the widget's switcher sticking across pages."""

import functools
import http.server
import re
import socketserver
import threading
from pathlib import Path

import pytest

from accounts.models import StaffProfile
from channels_app.models import ChatVisitor
from channels_app.services import ingest
from customers.models import Customer, Identity
from tests.channels_app.factories import InboxFactory, email_inbound, inbound
from tests.tickets.factories import AgentFactory

from .conftest import SCREENSHOTS, _free_port, sign_in, wait_js

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PERSIAN_SUBJECT = "سفارش 4471 کجاست؟"  # "Where is order 4471?"
HOST_PAGE = Path(__file__).resolve().parents[1] / "data" / "webchat_host.html"

# Where the "؟" and the digits of the first match of `selector` are drawn: Range rectangles of
# the characters inside the element's text. In a right-to-left isolate the question mark
# ends the sentence on the LEFT of the digits; unisolated in a left-to-right page it would
# land on the right ("4471?"), the bug this guards against.
ORDER_JS = """(selector) => {
  const el = document.querySelector(selector);
  const node = [...el.childNodes].find((n) => n.nodeType === 3 && n.data.includes("؟"));
  const rect = (from, to) => { const r = document.createRange(); r.setStart(node, from); r.setEnd(node, to);
    return r.getBoundingClientRect(); };
  const q = node.data.indexOf("؟"), d = node.data.indexOf("4471");
  const mark = rect(q, q + 1), digits = rect(d, d + 4);
  return {tag: el.tagName.toLowerCase(), dir: el.getAttribute("dir"), computed: getComputedStyle(el).direction,
          unicodeBidi: getComputedStyle(el).unicodeBidi,
          markRight: mark.right, markLeft: mark.left, digitsLeft: digits.left, digitsRight: digits.right};
}"""


@pytest.fixture
def desk_data(live_server_url):
    agent = AgentFactory(username="ana", first_name="Ana")
    StaffProfile.objects.create(user=agent, language="pl")
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    sms = InboxFactory(kind="twilio", name="SMS", config={"phone_number": "+15005550006"})
    ingest(inbound(sms, address="+48600100200", text="Paczka nie dotarła", display_name="Ola Nowak"))
    persian = ingest(
        email_inbound(
            mail, address="sara@example.ir", display_name="سارا", subject=PERSIAN_SUBJECT, text="لطفاً کمک کنید"
        )
    ).ticket
    return agent, persian


def _assert_question_mark_left_of_digits(page, selector: str) -> None:
    found = page.evaluate(ORDER_JS, selector)
    assert found["tag"] == "bdi" or found["dir"] == "auto", found  # a bidi-isolated element
    assert found["unicodeBidi"] == "isolate" and found["computed"] == "rtl", found
    assert found["markRight"] <= found["digitsLeft"] + 0.5, found  # "؟" drawn left of "4471"


def test_desk_in_polish_then_persian_right_to_left(live_server_url, desk_data, browser):
    base = live_server_url
    agent, persian = desk_data
    page = sign_in(browser, base, "ana")
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["pl", "ltr"]
    assert page.locator("nav a[href='/desk/']").inner_text().strip() == "Skrzynka"
    page.wait_for_selector(f"#row-{persian.pk}")
    _assert_question_mark_left_of_digits(page, f"#row-{persian.pk} .c-subj bdi")  # isolated in an LTR page too
    page.wait_for_selector("#live-status.on")  # the server follows this inbox (inbox.following)
    page.screenshot(path=str(SCREENSHOTS / "desk-inbox-pl.png"))
    page.goto(f"{base}/desk/tickets/{persian.pk}/")
    page.wait_for_selector("#live-status.on")
    assert page.locator("#reply-form button.send").inner_text().strip() == "Wyślij"
    _assert_question_mark_left_of_digits(page, "#ticket-header h1 bdi")
    page.screenshot(path=str(SCREENSHOTS / "desk-ticket-pl.png"))

    # The agent switches the desk to Persian on their profile page: every page follows.
    page.goto(f"{base}/desk/security/")
    page.select_option("#id_language", "fa")
    page.click("#desk-language button")
    page.wait_for_url(f"{base}/desk/security/")
    assert StaffProfile.objects.get(user=agent).language == "fa"
    page.goto(f"{base}/desk/")
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["fa", "rtl"]
    assert page.locator("nav a[href='/desk/']").inner_text().strip() == "صندوق ورودی"
    # right to left for real: the navigation starts at the right edge
    nav = page.evaluate(
        "(() => { const r = document.querySelector('.brand').getBoundingClientRect(); return [r.left, r.right, innerWidth]; })()"
    )
    assert nav[1] > nav[2] / 2, nav
    _assert_question_mark_left_of_digits(page, f"#row-{persian.pk} .c-subj bdi")
    page.wait_for_selector("#live-status.on")
    page.screenshot(path=str(SCREENSHOTS / "desk-inbox-fa.png"))
    page.goto(f"{base}/desk/tickets/{persian.pk}/")
    page.wait_for_selector("#live-status.on")
    _assert_question_mark_left_of_digits(page, "#ticket-header h1 bdi")
    assert page.evaluate("getComputedStyle(document.querySelector('#timeline .msg .body')).direction") == "rtl"
    page.screenshot(path=str(SCREENSHOTS / "desk-ticket-fa.png"))
    page.context.close()


def test_portal_in_russian_through_the_switcher_sticks_across_pages(live_server_url, browser, tmp_path):
    base = live_server_url
    AgentFactory(username="ana")
    sms = InboxFactory(kind="twilio", name="SMS", config={"phone_number": "+15005550006"})
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    first = ingest(inbound(sms, address="+48600100300", text="Где моя посылка?")).ticket
    Identity.objects.create(customer=first.customer, kind="email", address="ivan@example.ru")
    ingest(email_inbound(mail, address="ivan@example.ru", subject="Счёт за заказ 1042"))

    page = browser.new_context(viewport={"width": 1024, "height": 760}, locale="en-US").new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{base}/portal/")
    assert page.evaluate("document.documentElement.lang") == "en"
    with page.expect_navigation():
        page.select_option("select[name=language]", "ru")  # applies on change (portal.js)
    assert page.evaluate("document.documentElement.lang") == "ru"
    page.goto(f"{base}/kb/")  # another page: the cookie keeps the choice
    assert page.evaluate("document.documentElement.lang") == "ru"
    page.goto(f"{base}/portal/")
    page.fill("input[name=address]", "ivan@example.ru")
    page.click("main button[type=submit]")
    page.wait_for_selector(".flash")
    link = re.search(r"(/portal/sign-in/[^/\s]+/)", sorted((tmp_path / "mail").glob("*.log"))[-1].read_text())
    page.goto(f"{base}{link.group(1)}")
    page.wait_for_selector("text=Мои запросы")
    assert page.locator("#request-count").inner_text() == "2 запроса"
    assert Customer.objects.get(pk=first.customer_id).language == "ru"  # the choice is the customer's now
    page.screenshot(path=str(SCREENSHOTS / "portal-ru.png"), full_page=True)
    page.context.close()


@pytest.fixture
def shop(live_server_url, tmp_path):
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    inbox = InboxFactory(kind="webchat", name="Chat", config={"allowed_origins": origin, "prechat": "optional"})
    site = tmp_path / "site"
    site.mkdir()
    html = HOST_PAGE.read_text().replace("__SERVER__", live_server_url).replace("__INBOX__", str(inbox.pk))
    (site / "help.html").write_text(html)
    (site / "other.html").write_text(html.replace("Order help", "Another page"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield origin
    server.shutdown()
    server.server_close()


def test_widget_switcher_sticks_across_pages(shop, browser):
    page = browser.new_context(viewport={"width": 1024, "height": 760}).new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{shop}/help.html")
    page.wait_for_selector("#cxdesk-chat >> h2#cx-title:has-text('Chat with us')", state="attached")
    page.click("#cxdesk-chat >> button.launcher")
    page.select_option("#cxdesk-chat >> select#cx-lang", "fa")
    page.wait_for_selector("#cxdesk-chat >> h2#cx-title:has-text('گفتگو')")
    assert page.locator("#cxdesk-chat >> section.panel").get_attribute("dir") == "rtl"
    for _ in range(50):  # the open conversation is told too: the visitor's language on the server
        if ChatVisitor.objects.filter(language="fa").exists():
            break
        page.wait_for_timeout(100)
    assert ChatVisitor.objects.filter(language="fa").count() == 1
    page.goto(f"{shop}/other.html")  # another page of the site: the widget keeps Persian
    page.wait_for_selector("#cxdesk-chat >> section.panel[lang=fa][dir=rtl]", state="attached")
    wait_js(page, "document.querySelector('#cxdesk-chat').shadowRoot.querySelector('#cx-lang').value === 'fa'")
    page.context.close()
