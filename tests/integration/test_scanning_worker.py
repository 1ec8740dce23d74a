import pytest

from channels_app.services import ingest
from channels_app.types import InboundAttachment
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.clamd import FOUND_NAME, MARKER, clamd  # noqa: F401 - the real clamd fixture
from tickets.models import Attachment, TicketEvent

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_scans_with_a_real_clamd(celery_worker_process, clamd, settings):  # noqa: F811
    settings.CXDESK_SCANNER, settings.CLAMD_SOCKET = "clamd", clamd.socket
    celery_worker_process(extra_env={"CXDESK_SCANNER": "clamd", "CLAMD_SOCKET": clamd.socket})
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com"})
    ticket = ingest(
        email_inbound(
            inbox,
            address="v@example.com",
            attachments=[
                InboundAttachment(filename="bad.doc", content=b"x" + MARKER),
                InboundAttachment(filename="fine.txt", content=b"fine"),
            ],
        )
    ).ticket
    wait_for(
        lambda: (
            set(Attachment.objects.values_list("filename", "scan_status"))
            == {
                ("bad.doc", "infected"),
                ("fine.txt", "clean"),
            }
        ),
        message="the worker to scan both attachments",
    )
    event = TicketEvent.objects.get(ticket=ticket, kind="attachment_quarantined")
    assert event.data["signature"] == FOUND_NAME
