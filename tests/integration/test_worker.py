import pytest

from channels_app.services import ingest
from tests.channels_app.factories import InboxFactory, email_inbound
from tickets.models import Message
from tickets.services import reply

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_reply_is_sent_by_a_real_celery_worker(celery_worker_process, agent, tmp_path):
    start = celery_worker_process
    start(
        extra_env={
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        }
    )
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com"})
    ticket = ingest(email_inbound(inbox, address="w@example.com")).ticket
    message = reply(ticket=ticket, author=agent, body="sent by the worker")
    wait_for(lambda: Message.objects.get(pk=message.pk).status == "sent", message="the worker to send the reply")
    wait_for(lambda: len(list((tmp_path / "mail").glob("*.log"))) == 2, message="the acknowledgement and the reply")
    bodies = [f.read_text() for f in (tmp_path / "mail").glob("*.log")]
    replies = [b for b in bodies if "sent by the worker" in b]
    assert len(replies) == 1
    assert "w@example.com" in replies[0]
    assert sum("Auto-Submitted: auto-replied" in b for b in bodies) == 1
