"""The dead-letter list in the desk: staff only, reasons shown, raw mail as a download
(never rendered), Retry through the same service as the admin action."""

import pytest

from channels_app.models import RawInbound
from channels_app.services import raw_inbound_failed, raw_inbound_store
from tests.channels_app.factories import InboxFactory
from tests.tickets.factories import AgentFactory
from tickets.models import Message

pytestmark = pytest.mark.django_db

MAIL = (
    b"From: Dora <dora@customer.example>\r\nTo: sales@example.com\r\nSubject: <b>hi</b>\r\n"
    b"Message-ID: <dl-1@customer.example>\r\n\r\n<script>alert(1)</script> where is my order?\r\n"
)


def dead(raw: bytes = MAIL, *, inbox=None, error: str = "no email inbox for recipients ['sales@example.com']"):
    record = raw_inbound_store(raw=raw, source="anymail:postmark", inbox=inbox)
    raw_inbound_failed(raw=record, error=error)
    return RawInbound.objects.get(pk=record.pk)


@pytest.fixture
def staff_client(client, agent):
    client.force_login(agent)
    return client


def test_list_shows_reasons_and_is_linked_from_the_desk(staff_client, django_assert_max_num_queries):
    for i in range(20):
        dead(MAIL.replace(b"dl-1", f"dl-{i}".encode()), error=f"reason number {i}")
    with django_assert_max_num_queries(9):  # the viewer's role (the top bar's admin links), asked once
        page = staff_client.get("/desk/dead-letters/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "reason number 19" in html and "reason number 0" in html
    assert "<script>alert(1)</script>" not in html
    assert 'href="/desk/dead-letters/"' in staff_client.get("/desk/").content.decode()


def test_ignored_reports_are_listed_apart(staff_client):
    dead()
    record = raw_inbound_store(raw=b"x", source="imap", inbox=None)
    RawInbound.objects.filter(pk=record.pk).update(status=RawInbound.Status.IGNORED, error="bounce: 5.1.1 unknown user")
    failed = staff_client.get("/desk/dead-letters/").content.decode()
    ignored = staff_client.get("/desk/dead-letters/?status=ignored").content.decode()
    assert "5.1.1 unknown user" in ignored and "5.1.1 unknown user" not in failed
    assert "no email inbox" in failed and "no email inbox" not in ignored


def test_not_for_customers_or_strangers(client, db):
    record = dead()
    for url in ("/desk/dead-letters/", f"/desk/dead-letters/{record.pk}/raw/"):
        assert client.get(url).status_code == 302
    client.force_login(AgentFactory(username="cust", is_staff=False))
    assert client.get(f"/desk/dead-letters/{record.pk}/raw/").status_code == 302
    assert client.post(f"/desk/dead-letters/{record.pk}/retry/").status_code == 302
    assert RawInbound.objects.get(pk=record.pk).status == "failed"


def test_raw_mail_is_a_download_never_html(staff_client):
    record = dead()
    response = staff_client.get(f"/desk/dead-letters/{record.pk}/raw/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="inbound-{record.pk}.eml"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == MAIL
    assert staff_client.get("/desk/dead-letters/999999/raw/").status_code == 404


def test_retry_takes_the_mail_once_its_inbox_exists(staff_client):
    record = dead()
    response = staff_client.post(f"/desk/dead-letters/{record.pk}/retry/", follow=True)
    assert "not taken" in response.content.decode()
    assert RawInbound.objects.get(pk=record.pk).status == "failed"

    InboxFactory(kind="email", name="Sales", config={"address": "sales@example.com"})
    response = staff_client.post(f"/desk/dead-letters/{record.pk}/retry/", follow=True)
    assert response.status_code == 200
    record.refresh_from_db()
    assert record.status == "processed" and record.message_id
    message = Message.objects.get()
    assert message.identity.address == "dora@customer.example"
    assert f"ticket {message.ticket.reference}" in response.content.decode()
    assert staff_client.get("/desk/dead-letters/?status=failed").content.decode().count("dead-letter-") == 0
    assert staff_client.post("/desk/dead-letters/1/retry/").status_code in (302, 404)
    assert staff_client.get(f"/desk/dead-letters/{record.pk}/retry/").status_code == 405
