"""Faults, with real services the test stops and starts itself: a private Redis broker
(down, back, flushed), a real Celery worker (killed mid-send), a scripted SMTP server
(greylisting, hanging). Each asserts: nothing lost, nothing doubled, statuses only
forward, and the backlog drained without a person (the outbox sweeper)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import signal
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from rest_framework.test import APIClient

from channels_app.services import ingest
from integrations.services import api_key_create
from outbox.models import OutboxTask
from tests.channels_app.factories import InboxFactory, email_inbound
from tickets.models import Message

from .conftest import free_port, signal_group, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Short sweeper interval and lease so that recovery happens within seconds.
FAST = {
    "CXDESK_OUTBOX_SWEEP_SECONDS": "1",
    "CXDESK_OUTBOX_REDISPATCH_SECONDS": "2",
    "CXDESK_OUTBOX_LEASE": "4",
    "CELERY_TASK_TIME_LIMIT": "3",
    "CELERY_TASK_SOFT_TIME_LIMIT": "2",
    "CXDESK_SEND_RETRY_BASE": "0.5",
    "CXDESK_OUTBOX_RETRY_BASE": "0.5",
    "EMAIL_TIMEOUT": "2",
}


def _stop_now(proc) -> None:
    """End a worker at once, its embedded beat too (the test has asserted what it needed; a
    warm shutdown costs seconds)."""
    signal_group(proc, signal.SIGKILL)
    proc.wait(10)


class Scripted:
    """An SMTP handler that can greylist a recipient once (451 at RCPT) or hang in DATA."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.greylist: set[str] = set()
        self.greylisted: list[str] = []
        self.hang_data = 0
        self.hanging = True
        self.in_data = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook
        if address in self.greylist and address not in self.greylisted:
            self.greylisted.append(address)
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.hang_data > 0:
            self.hang_data -= 1
            self.in_data.set()
            deadline = time.monotonic() + 30
            while self.hanging and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return "451 too late"  # never reaches a client that gave up or died
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def count(self, message_id: str) -> int:
        return sum(m["Message-ID"] == message_id for m in self.messages)


@pytest.fixture
def smtp():
    handler = Scripted()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    handler.hanging = False
    controller.stop()


@pytest.fixture
def api(agent):
    _, key = api_key_create(user=agent, name="faults")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _use_broker(url: str) -> None:
    """Point this (test) process's Celery producer at `url`."""
    from cxdesk.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


def _status(pk: int) -> str:
    return Message.objects.get(pk=pk).status


def _post_reply(api, ticket, body: str) -> int:
    started = time.monotonic()
    response = api.post(f"/api/v1/tickets/{ticket.pk}/messages/", {"body": body}, format="json")
    assert response.status_code == 201, response.content
    assert time.monotonic() - started < 10, "the API must not hang on a broken broker"
    message = Message.objects.get(pk=response.json()["id"])
    assert message.status == "queued"
    assert OutboxTask.objects.filter(kind="send_message", object_id=message.pk).count() == 1
    return message.pk


def _drained() -> bool:
    return not OutboxTask.objects.exclude(status="done").exists()


def test_broker_down_then_back_and_flushed_replies_are_sent_once(
    celery_worker_process, private_redis, smtp, api, agent
):
    env = {**FAST, "CELERY_BROKER_URL": private_redis.url, "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}"}
    worker = celery_worker_process(beat=True, extra_env=env)
    _use_broker(private_redis.url)
    received = smtp.handler
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    ticket = ingest(email_inbound(inbox, address="down@example.com")).ticket

    # 1. the broker is down: the API answers 201 for what it committed; the reply waits
    private_redis.stop()
    first = _post_reply(api, ticket, "Written while the broker was down.")
    time.sleep(1)
    assert _status(first) == "queued"
    # ... and is sent once the broker is back, by the sweeper, without anyone asking
    private_redis.start()
    wait_for(lambda: _status(first) == "sent", timeout=40, message="the reply queued during the outage")

    # 2. the broker loses its data (FLUSHALL) while the worker is away
    _stop_now(worker)  # as if it crashed: its queue stays in the broker
    second = _post_reply(api, ticket, "Written before the flush.")
    private_redis.flushall()
    worker = celery_worker_process(beat=True, extra_env=env)
    wait_for(lambda: _status(second) == "sent", timeout=40, message="the reply whose Celery message was flushed")

    wait_for(_drained, timeout=10, message="the outbox backlog to drain")
    time.sleep(1)  # give a wrongly duplicated send time to show up
    _stop_now(worker)
    for pk in (first, second):
        message = Message.objects.get(pk=pk)
        assert received.count(message.email_message_id) == 1, "sent exactly once"
        assert message.status == "sent" and message.sent_at is not None
    assert len(received.messages) == 2


def test_killed_mid_send_greylisting_and_a_hung_server_each_end_sent_once(celery_worker_process, smtp, agent):
    from tickets.services import reply

    env = {**FAST, "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}"}
    received = smtp.handler
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})

    # 1. a worker killed inside the SMTP conversation: the claim outlives it; after the
    #    lease a new worker (with the sweeper) takes the send over, same Message-ID, once
    received.hang_data = 1  # the first DATA never answers: the worker is inside the send
    doomed = celery_worker_process(extra_env={**env, "EMAIL_TIMEOUT": "30"})
    ticket = ingest(email_inbound(inbox, address="kill@example.com")).ticket
    killed = reply(ticket=ticket, author=agent, body="Interrupted by a crash.")
    assert received.in_data.wait(20), "the worker reached DATA"
    assert _status(killed.pk) == "sending"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    received.hanging = False
    worker = celery_worker_process(beat=True, extra_env=env)
    wait_for(lambda: _status(killed.pk) == "sent", timeout=30, message="the taken-over send")
    killed.refresh_from_db()
    assert killed.attempts == 2

    # 2. 451 at RCPT (greylisting) is temporary: retried and delivered
    received.greylist = {"grey@example.com"}
    grey_ticket = ingest(email_inbound(inbox, address="grey@example.com")).ticket
    grey = reply(ticket=grey_ticket, author=agent, body="Greylisted once.")
    wait_for(lambda: _status(grey.pk) == "sent", timeout=30, message="the greylisted reply")
    grey.refresh_from_db()
    assert received.greylisted == ["grey@example.com"]
    assert grey.attempts == 2

    # 3. a server that accepts and never answers: EMAIL_TIMEOUT ends the attempt, the retry delivers
    received.in_data.clear()
    received.hanging = True
    received.hang_data = 1
    hung_ticket = ingest(email_inbound(inbox, address="hung@example.com")).ticket
    hung = reply(ticket=hung_ticket, author=agent, body="The server hung on me.")
    assert received.in_data.wait(20)
    wait_for(lambda: Message.objects.get(pk=hung.pk).error, timeout=15, message="the timed-out attempt recorded")
    wait_for(lambda: _status(hung.pk) == "sent", timeout=30, message="the reply after the hang")
    # the worker is not stuck: the next reply goes straight out
    after = reply(ticket=grey_ticket, author=agent, body="And the next one.")
    wait_for(lambda: _status(after.pk) == "sent", timeout=15, message="the next reply")
    wait_for(_drained, timeout=10, message="the outbox backlog to drain")
    time.sleep(1)  # give a wrongly duplicated send time to show up
    _stop_now(worker)
    hung.refresh_from_db()
    assert hung.attempts == 2
    for message in (killed, grey, hung, after):
        message.refresh_from_db()
        assert received.count(message.email_message_id) == 1, f"{message.body_text!r} sent exactly once"
    assert len(received.messages) == 4
