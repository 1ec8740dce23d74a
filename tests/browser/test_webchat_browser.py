"""Web chat end to end: a host page on ANOTHER origin (a tiny http.server serving
tests/data/webchat_host.html) embeds the widget; the visitor identifies with a one-time
code, chats with an agent in the desk, both see it live, a reload keeps the conversation,
and a tracked email link identifies a new visitor and triggers the invitation."""

import functools
import http.server
import re
import socketserver
import threading
from pathlib import Path

import pytest

from channels_app.models import ChatInvitation
from channels_app.services import ingest
from customers.models import PageView
from customers.tracking import tracked_link_url
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory
from tickets import services
from tickets.models import Message

from .conftest import _free_port, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HOST_PAGE = Path(__file__).resolve().parents[1] / "data" / "webchat_host.html"


@pytest.fixture
def shop(live_server_url, tmp_path):
    """The foreign site: another port is another origin."""
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    agent = AgentFactory(username="ana", first_name="Ana")
    inbox = InboxFactory(
        kind="webchat",
        name="Chat",
        config={
            "allowed_origins": origin,
            "prechat": "optional",
            "invitations": '[{"rule": "email_link", "message": "Welcome back from our email! Questions?"}]',
        },
    )
    mail = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    ticket = ingest(email_inbound(mail, address="zofia@example.com", display_name="Zofia", subject="Order 1042")).ticket
    services.ticket_set_status(ticket=ticket, status="solved")
    email = Message.objects.create(
        ticket=ticket, direction="outbound", channel="email", inbox=mail, body_text="See the offer", status="sent"
    )
    site = tmp_path / "site"
    site.mkdir()
    html = HOST_PAGE.read_text().replace("__SERVER__", live_server_url).replace("__INBOX__", str(inbox.pk))
    (site / "help.html").write_text(html)
    # The same page with websockets switched off: the widget's HTTP fallback (POST + poll).
    (site / "help-http.html").write_text(html.replace(" async>", " data-http async>"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"origin": origin, "agent": agent, "customer": ticket.customer, "email": email, "inbox": inbox}
    server.shutdown()
    server.server_close()


def _code(mail_dir: Path) -> str:
    for path in sorted(mail_dir.glob("*")):
        found = re.search(r"continue the chat: (\d{6})", path.read_text())
        if found:
            return found.group(1)
    raise AssertionError("no code mail")


def test_visitor_and_agent_chat_live_across_origins_and_a_tracked_link_invites(
    live_server_url, shop, browser, tmp_path
):
    base = live_server_url
    visitor = browser.new_context(viewport={"width": 390, "height": 800}).new_page()  # phone-sized
    visitor.set_default_timeout(10_000)
    visitor.goto(f"{shop['origin']}/help.html")
    launcher = visitor.locator("#cxdesk-chat .launcher")
    launcher.click()
    # The host's "button { display: none }" does not reach into the shadow root.
    visitor.locator("#cxdesk-chat #cx-name").fill("Zofia")
    visitor.locator("#cxdesk-chat #cx-address").fill("zofia@example.com")
    visitor.locator("#cxdesk-chat .prechat button[type=submit]").click()
    visitor.locator("#cxdesk-chat #cx-code").wait_for()
    visitor.wait_for_timeout(300)
    visitor.locator("#cxdesk-chat #cx-code").fill(_code(tmp_path / "mail"))
    visitor.locator("#cxdesk-chat .code button[type=submit]").click()
    visitor.locator("#cxdesk-chat .status", has_text="identified").wait_for()
    visitor.locator("#cxdesk-chat #cx-text").fill("Hello, my parcel is still missing")
    visitor.keyboard.press("Enter")
    visitor.locator("#cxdesk-chat .log li.visitor", has_text="parcel is still missing").wait_for()

    message = Message.objects.filter(channel="chat").get()
    ticket = message.ticket
    assert ticket.customer_id == shop["customer"].pk  # verified by the code: the known customer
    agent = sign_in(browser, base, "ana")
    agent.goto(f"{base}/desk/tickets/{ticket.pk}/")
    agent.wait_for_selector("#live-status.on")
    agent.locator("#timeline", has_text="parcel is still missing").wait_for()
    agent.fill("#reply-body", "We are on it, Zofia")
    agent.locator("#reply-channel").select_option("chat")
    agent.click("#reply-form button[type=submit]")
    # The visitor sees it live, and the agent sees the visitor's next message live.
    visitor.locator("#cxdesk-chat .log li.agent", has_text="We are on it").wait_for()
    visitor.locator("#cxdesk-chat #cx-text").fill("Thank you!")
    visitor.keyboard.press("Enter")
    agent.locator("#timeline", has_text="Thank you!").wait_for()
    # Reload: the same conversation, from the token in localStorage.
    visitor.reload()
    visitor.locator("#cxdesk-chat .launcher").click()
    visitor.locator("#cxdesk-chat .log li.agent", has_text="We are on it").wait_for()
    visitor.locator("#cxdesk-chat .log li.visitor", has_text="Thank you!").wait_for()
    assert Message.objects.filter(channel="chat").count() == 3
    assert PageView.objects.filter(customer=shop["customer"]).exists()

    # A tracked link from an email: a new browser (over the HTTP fallback) is identified and
    # invited, and sees the agent's next answer by polling.
    url = tracked_link_url(
        f"{shop['origin']}/help-http.html", customer_id=shop["customer"].pk, message_id=shop["email"].pk
    )
    page = browser.new_context().new_page()
    page.set_default_timeout(10_000)
    page.goto(url)
    invite = page.locator("#cxdesk-chat .invite")
    invite.locator("p", has_text="Welcome back from our email").wait_for()
    invite.locator("button.primary").click()
    page.locator("#cxdesk-chat #cx-text").fill("I came from your email")
    page.keyboard.press("Enter")
    page.locator("#cxdesk-chat .log li.visitor", has_text="came from your email").wait_for()
    view = PageView.objects.get(email_message_id=shop["email"].pk)
    assert view.customer_id == shop["customer"].pk
    assert ChatInvitation.objects.get().outcome == ChatInvitation.Outcome.ACCEPTED
    agent.reload()
    agent.fill("#reply-body", "Glad the email helped")
    agent.locator("#reply-channel").select_option("chat")
    agent.click("#reply-form button[type=submit]")
    page.locator("#cxdesk-chat .log li.agent", has_text="Glad the email helped").wait_for()
    message = Message.objects.filter(channel="chat", direction="inbound").latest("id")
    assert message.body_text == "I came from your email"
    assert message.ticket.customer_id == shop["customer"].pk
    assert message.metadata["came_from_message"] == shop["email"].pk
