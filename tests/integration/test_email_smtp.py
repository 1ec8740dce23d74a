"""Email end to end: a real SMTP server on loopback (aiosmtpd) and a real Celery worker."""

import email
import email.policy
import socket
import time

import pytest
from aiosmtpd.controller import Controller

from channels_app.services import ingest_raw_email
from tests.channels_app.factories import InboxFactory
from tickets.models import Message, Ticket
from tickets.services import reply

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Collect:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """A loopback SMTP server that can go down and come back on the same port."""

    def __init__(self):
        self.port = free_port()
        self.handler = Collect()
        self.controller = None

    def start(self):
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def raw_mail(sender, subject, mid, extra=""):
    return f"From: Ola <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n{extra}\r\nHello, my order is late.\r\n".encode()


def test_ack_reply_threading_and_retry_through_real_smtp(celery_worker_process, smtp, agent):
    received = smtp.handler.messages
    celery_worker_process(extra_env={"EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}", "CXDESK_SEND_RETRY_BASE": "0.5"})
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com"})

    # 1. new mail → ticket → auto-acknowledgement received by the SMTP server
    first = ingest_raw_email(raw=raw_mail("ola@example.com", "Order 77", "<o1@client>"), inbox=inbox, source="test")
    ack = wait_for(lambda: received[0] if received else None, message="the acknowledgement")
    ticket = Ticket.objects.get(pk=first.ticket.pk)
    assert ack["Auto-Submitted"] == "auto-replied"
    assert f"[{ticket.reference}]" in ack["Subject"]
    assert ack["In-Reply-To"] == "<o1@client>"

    # 2. agent reply with threading headers; the customer's answer to it threads back
    out = reply(ticket=ticket, author=agent, body="It ships tomorrow.")
    wait_for(lambda: len(received) >= 2, message="the agent reply")
    agent_mail = received[1]
    assert agent_mail["Message-ID"] == Message.objects.get(pk=out.pk).email_message_id
    assert agent_mail["In-Reply-To"] == "<o1@client>"
    assert "<o1@client>" in agent_mail["References"]
    assert agent_mail["Subject"] == f"Re: Order 77 [{ticket.reference}]"
    assert agent_mail["Reply-To"] == f"support+{ticket.reply_token}@example.com"
    answer = raw_mail(
        "ola@example.com",
        "Re: " + agent_mail["Subject"],
        "<o2@client>",
        extra=f"In-Reply-To: {agent_mail['Message-ID']}\r\nReferences: {agent_mail['References']} {agent_mail['Message-ID']}\r\n",
    )
    back = ingest_raw_email(raw=answer, inbox=inbox, source="test")
    assert back.ticket.pk == ticket.pk
    assert back.message.thread_reason == "header"

    # 3. SMTP server down → the reply is retried and arrives exactly once when it is back
    smtp.stop()
    late = reply(ticket=ticket, author=agent, body="Sorry for the wait.")
    wait_for(
        lambda: Message.objects.get(pk=late.pk).attempts >= 1 and Message.objects.get(pk=late.pk).error,
        message="a failed attempt",
    )
    assert Message.objects.get(pk=late.pk).status in ("queued", "sending")
    smtp.start()
    wait_for(lambda: Message.objects.get(pk=late.pk).status == "sent", timeout=60, message="the retried reply")
    time.sleep(2)  # give a wrongly duplicated send time to show up
    assert [m["Message-ID"] for m in received].count(Message.objects.get(pk=late.pk).email_message_id) == 1

    # 4. an auto-reply from the customer's side does not trigger another auto-reply
    auto = ingest_raw_email(
        raw=raw_mail("ola@example.com", "Out of office", "<ooo@client>", extra="Auto-Submitted: auto-replied\r\n"),
        inbox=inbox,
        source="test",
    )
    assert auto.created_ticket
    fresh = ingest_raw_email(
        raw=raw_mail("other@example.com", "New question", "<q@client>"), inbox=inbox, source="test"
    )
    wait_for(
        lambda: Message.objects.filter(ticket=fresh.ticket, direction="outbound", status="sent").exists(),
        message="the control ack",
    )
    assert not Message.objects.filter(ticket=auto.ticket, direction="outbound").exists()
