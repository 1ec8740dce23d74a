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


def test_a_worker_in_a_session_of_its_own_yields_the_cpu_to_the_web(celery_worker_process):
    """CXDESK_WORKER_NICE lowers the worker's priority and, as it leads its own session (as
    deploy/serve.py starts it), its session's scheduling group: with Linux's autogroups a nice
    value alone weighs only against the processes of the same session, not the web's."""
    import os
    from pathlib import Path

    worker = celery_worker_process(extra_env={"CXDESK_WORKER_NICE": "7"})
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == 7
    autogroup = Path(f"/proc/{worker.pid}/autogroup")
    autogroups = Path("/proc/self/autogroup").exists()
    assert autogroups or os.environ.get("CI") != "true", "CI's kernel has autogroups: this test checks them"
    if autogroups:
        assert autogroup.read_text().split()[-1] == "7", autogroup.read_text()
        mine = Path("/proc/self/autogroup").read_text()
        assert mine != autogroup.read_text(), "the test's own session is another group, untouched"
