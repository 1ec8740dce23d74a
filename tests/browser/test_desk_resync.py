"""The websocket server restarts while an agent has a ticket open: the desk reconnects by
itself (jittered backoff) and shows what arrived while it was away, without a reload."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from channels_app.services import ingest
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory

from .conftest import ROOT, _free_port, _missing, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class Daphne:
    """An ASGI server on the test database that can be stopped and started on the same port."""

    def __init__(self, settings, tmp_path):
        db = settings.DATABASES["default"]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "SECRET_KEY": settings.SECRET_KEY,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_URL": self.url,
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "CXDESK_VAR_DIR": str(tmp_path / "server-var"),
            "MEDIA_ROOT": str(tmp_path / "media"),
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PYTHONPATH": str(ROOT),
        }

    def start(self) -> None:
        log = (self.tmp_path / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "cxdesk.asgi:application"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        raise RuntimeError("daphne did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def daphne(transactional_db, settings, tmp_path):
    from django.db import connection

    if connection.vendor != "postgresql":
        _missing("browser tests run against PostgreSQL (set DATABASE_URL)")
    if not os.environ.get("REDIS_URL"):
        _missing("the live desk needs the Redis channel layer (REDIS_URL)")
    server = Daphne(settings, tmp_path)
    server.start()
    yield server
    server.stop()


def test_the_desk_catches_up_after_the_websocket_server_restarts(daphne, browser):
    AgentFactory(username="ana", first_name="Ana")
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    first = ingest(email_inbound(inbox, address="r@example.com", subject="Restart me", text="Before the restart."))
    page = sign_in(browser, daphne.url, "ana")
    page.goto(f"{daphne.url}/desk/tickets/{first.ticket.pk}/")
    page.wait_for_selector("#live-status.on")
    page.evaluate("window.__notReloaded = true")

    daphne.stop()
    page.wait_for_selector("#live-status:not(.on)")
    # arrives while nobody can be told: the event is lost with the old server
    later = ingest(
        email_inbound(
            inbox, address="r@example.com", subject="Re: Restart me", text="Written during the outage.",
            in_reply_to=first.message.email_message_id,
        )
    )  # fmt: skip
    assert later.ticket.pk == first.ticket.pk
    daphne.start()
    page.wait_for_selector("#live-status.on", timeout=20_000)
    page.wait_for_selector("#timeline >> text=Written during the outage.", timeout=10_000)
    assert page.evaluate("window.__notReloaded === true"), "caught up without a page reload"
