import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from channels_app.services import ingest
from channels_app.types import InboundAttachment
from portal.views import SESSION_KEY
from tests.channels_app.factories import email_inbound
from tests.tickets.clamd import FOUND_NAME, MARKER, STREAM_MAX
from tickets.models import Attachment, Message, TicketEvent
from tickets.scanning import ClamdScanner, Clean, Infected, ScanError, scan
from tickets.services import reply

INFECTED = b"%PDF-1.4 harmless test file " + MARKER + b" end\n"


def test_clamd_backend_over_unix_socket_and_tcp(clamd, tmp_path):
    unix = ClamdScanner(unix_socket=clamd.socket)
    tcp = ClamdScanner(host=clamd.host, port=clamd.port)
    assert unix.ping() and tcp.ping()
    assert unix.scan(b"just an invoice") == Clean()
    assert unix.scan(INFECTED) == Infected(FOUND_NAME)
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 200_000 + INFECTED)  # the marker past the first chunks
    assert tcp.scan(path) == Infected(FOUND_NAME)
    assert tcp.scan(io.BytesIO(b"clean bytes")) == Clean()
    too_big = unix.scan(b"a" * (STREAM_MAX + 10))
    assert isinstance(too_big, ScanError), "over clamd's StreamMaxLength is an error, never clean"
    down = ClamdScanner(host="127.0.0.1", port=1, timeout=2).scan(b"x")
    assert isinstance(down, ScanError)


def test_scan_uses_the_configured_backend(clamd, settings):
    settings.CXDESK_SCANNER = ""
    assert isinstance(scan(INFECTED), ScanError), "no scanner: no verdict"
    settings.CXDESK_SCANNER, settings.CLAMD_SOCKET = "clamd", ""
    settings.CLAMD_HOST, settings.CLAMD_PORT = clamd.host, clamd.port
    assert scan(INFECTED) == Infected(FOUND_NAME)


@pytest.mark.django_db
def test_infected_attachments_are_quarantined_everywhere(
    clamd_settings, email_inbox, agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(
            email_inbound(
                email_inbox,
                address="ola@example.com",
                attachments=[
                    InboundAttachment(filename="invoice.pdf", content_type="application/pdf", content=INFECTED),
                    InboundAttachment(filename="photo.txt", content_type="text/plain", content=b"a clean file"),
                ],
            )
        )
    ticket = result.ticket
    bad = Attachment.objects.get(filename="invoice.pdf")
    good = Attachment.objects.get(filename="photo.txt")
    assert (bad.scan_status, bad.scan_detail) == ("infected", FOUND_NAME)
    assert good.scan_status == "clean"

    event = TicketEvent.objects.get(ticket=ticket, kind=TicketEvent.Kind.ATTACHMENT_QUARANTINED)
    assert event.data == {
        "attachment_id": bad.pk,
        "message_id": bad.message_id,
        "filename": "invoice.pdf",
        "signature": FOUND_NAME,
    }

    api = APIClient()
    api.force_authenticate(agent)
    refused = api.get(f"/api/v1/attachments/{bad.pk}/")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "attachment_quarantined"
    assert FOUND_NAME in refused.json()["error"]["message"]
    assert api.get(f"/api/v1/attachments/{good.pk}/").status_code == 200
    listed = api.get(f"/api/v1/tickets/{ticket.pk}/messages/").json()
    statuses = {a["filename"]: a["scan_status"] for m in listed["results"] for a in m["attachments"]}
    assert statuses == {"invoice.pdf": "infected", "photo.txt": "clean"}

    desk = Client()
    desk.force_login(agent)
    page = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert f'id="attachment-{bad.pk}"' in page and "Quarantined" in page
    assert f"/api/v1/attachments/{bad.pk}/" not in page, "no download link"
    assert f"/api/v1/attachments/{good.pk}/" in page
    assert "Attachment quarantined" in page and FOUND_NAME in page

    portal = Client()
    session = portal.session
    session[SESSION_KEY] = ticket.customer_id
    session.save()
    held = portal.get(f"/portal/attachments/{bad.pk}/")
    assert held.status_code == 403 and "virus scanner" in held.content.decode()
    assert portal.get(f"/portal/attachments/{good.pk}/").status_code == 200
    assert "virus" in portal.get(f"/portal/requests/{ticket.pk}/").content.decode()

    # An agent's reply carrying the same bytes is held back too, and its send fails visibly.
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=ticket, author=agent, body="Here it is back", attachments=[("again.pdf", INFECTED, "")])
    out.refresh_from_db()
    assert out.attachments.get().scan_status == "infected"
    assert out.status == Message.Status.FAILED and "quarantined" in out.error


@pytest.mark.django_db
def test_scanner_down_holds_files_back(settings, email_inbox, agent, django_capture_on_commit_callbacks):
    settings.CXDESK_SCANNER, settings.CLAMD_SOCKET, settings.CLAMD_HOST, settings.CLAMD_PORT = (
        "clamd",
        "",
        "127.0.0.1",
        1,
    )
    settings.CLAMD_TIMEOUT = 1
    with django_capture_on_commit_callbacks(execute=True):
        ingest(
            email_inbound(
                email_inbox, attachments=[InboundAttachment(filename="a.txt", content_type="text/plain", content=b"hi")]
            )
        )
    att = Attachment.objects.get()
    assert att.scan_status == "error", "after the retries: held back, never assumed clean"
    api = APIClient()
    api.force_authenticate(agent)
    assert api.get(f"/api/v1/attachments/{att.pk}/").json()["error"]["code"] == "attachment_scan_failed"


@pytest.mark.django_db
def test_without_a_scanner_attachments_stay_downloadable_until_scanned_later(
    email_inbox, agent, django_capture_on_commit_callbacks, clamd, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        ingest(email_inbound(email_inbox, attachments=[InboundAttachment(filename="a.txt", content=INFECTED)]))
    att = Attachment.objects.get()
    assert att.scan_status == "unscanned"
    api = APIClient()
    api.force_authenticate(agent)
    assert api.get(f"/api/v1/attachments/{att.pk}/").status_code == 200
    with pytest.raises(CommandError, match="no scanner"):
        call_command("scan_attachments")
    settings.CXDESK_SCANNER, settings.CLAMD_SOCKET = "clamd", clamd.socket
    out = io.StringIO()
    call_command("scan_attachments", stdout=out)
    assert "queued 1" in out.getvalue()
    assert Attachment.objects.get().scan_status == "infected"
    assert api.get(f"/api/v1/attachments/{att.pk}/").status_code == 403
