import pytest
from django.core import mail

from channels_app.models import RawInbound
from channels_app.services import ingest_raw_email, raw_inbound_process
from cxdesk.errors import ApplicationError
from tickets.models import Message, Ticket
from tickets.services import reply

pytestmark = pytest.mark.django_db


def raw(sender="jan@example.com", subject="Broken kettle", mid="<k1@client>", extra="", body="It does not heat."):
    return f"From: Jan <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n{extra}\r\n{body}\r\n".encode()


def take(data: bytes, inbox, capture):
    with capture(execute=True):
        return ingest_raw_email(raw=data, inbox=inbox, source="test")


def test_new_email_ticket_gets_one_auto_acknowledgement(email_inbox, django_capture_on_commit_callbacks):
    result = take(raw(), email_inbox, django_capture_on_commit_callbacks)
    [ack] = mail.outbox
    ticket = Ticket.objects.get(pk=result.ticket.pk)
    assert ack.extra_headers["Auto-Submitted"] == "auto-replied"
    assert ticket.reference in ack.subject
    assert ticket.reference in ack.body
    assert "/portal/" in ack.body
    assert ack.extra_headers["In-Reply-To"] == "<k1@client>"
    assert ticket.first_response_at is None, "an automatic mail is not a first response"
    stored = Message.objects.get(direction="outbound")
    assert stored.metadata["auto_ack"] is True
    assert stored.status == "sent"
    # a reply into the same ticket gets no second acknowledgement
    take(
        raw(subject="Re: Broken kettle", mid="<k2@client>", extra="In-Reply-To: <k1@client>\r\n"),
        email_inbox,
        django_capture_on_commit_callbacks,
    )
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("sender", "extra"),
    [
        ("jan@example.com", "Auto-Submitted: auto-replied\r\n"),
        ("jan@example.com", "Precedence: bulk\r\n"),
        ("jan@example.com", "List-Id: <news.example.com>\r\n"),
        ("jan@example.com", "X-Autoreply: yes\r\n"),
        ("noreply@example.com", ""),
        ("MAILER-DAEMON@example.com", ""),
    ],
)
def test_machines_get_no_automatic_answer(email_inbox, django_capture_on_commit_callbacks, sender, extra):
    result = take(raw(sender=sender, extra=extra), email_inbox, django_capture_on_commit_callbacks)
    assert result.created_ticket
    assert mail.outbox == []


def test_auto_submitted_no_is_a_person(email_inbox, django_capture_on_commit_callbacks):
    take(raw(extra="Auto-Submitted: no\r\n"), email_inbox, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1


def test_acknowledgements_are_rate_limited_per_address(email_inbox, settings, django_capture_on_commit_callbacks):
    settings.CXDESK_AUTO_REPLY_PER_HOUR = 2
    for i in range(4):
        take(raw(subject=f"Issue {i}", mid=f"<n{i}@client>"), email_inbox, django_capture_on_commit_callbacks)
    assert Ticket.objects.count() == 4
    assert len(mail.outbox) == 2


def test_auto_ack_can_be_switched_off_and_templated(email_inbox, django_capture_on_commit_callbacks):
    email_inbox.config["auto_ack_template"] = "Hi {name}, ticket {reference} about '{subject}' is in."
    email_inbox.save()
    take(raw(), email_inbox, django_capture_on_commit_callbacks)
    assert mail.outbox[0].body.startswith("Hi Jan, ticket CX-")
    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    take(raw(subject="Other", mid="<o@x>"), email_inbox, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1


def bounce_for(original_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce1@mx>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RB"\r\n\r\n'
        "--RB\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--RB\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown\r\n"
        f"--RB\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\nTo: gone@example.com\r\nMessage-ID: {original_id}\r\nSubject: Re: x\r\n"
        "--RB--\r\n"
    ).encode()


def test_a_bounce_fails_the_original_reply_and_opens_no_ticket(email_inbox, agent, django_capture_on_commit_callbacks):
    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    result = take(raw(sender="gone@example.com"), email_inbox, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=result.ticket, author=agent, body="Here you go")
    out.refresh_from_db()
    assert out.status == "sent"
    bounced = take(bounce_for(out.email_message_id), email_inbox, django_capture_on_commit_callbacks)
    assert bounced.bounce is True
    assert bounced.as_dict()["bounce"] is True
    out.refresh_from_db()
    assert out.status == "failed"
    assert "5.1.1" in out.error
    assert "User unknown" in out.error
    assert Ticket.objects.count() == 1
    assert Message.objects.filter(direction="inbound").count() == 1
    assert RawInbound.objects.get(message=out).status == "ignored"


def test_dead_letter_is_kept_and_retry_processes_it(email_inbox, django_capture_on_commit_callbacks):
    data = b"Subject: no sender\r\n\r\nbody\r\n"
    with pytest.raises(ApplicationError):
        ingest_raw_email(raw=data, inbox=email_inbox, source="test")
    dead = RawInbound.objects.get()
    assert dead.status == "failed"
    assert "no sender" in dead.error
    assert dead.raw == data
    # Fix the underlying cause (here: the stored bytes) and retry, as an operator would after a code fix.
    import zlib

    RawInbound.objects.filter(pk=dead.pk).update(payload=zlib.compress(b"From: fixed@example.com\r\n" + data))
    dead.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        result = raw_inbound_process(record=dead)
    dead.refresh_from_db()
    assert dead.status == "processed"
    assert dead.message_id == result.message.pk
