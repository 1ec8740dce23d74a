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


def report(original_headers: str = "", action: str = "failed", extra: str = "", status: str = "5.2.2") -> bytes:
    return (
        "From: postmaster@mx.example.net\r\nTo: support@example.com\r\nSubject: Delivery Status Notification\r\n"
        f"Message-ID: <dsn-{action}@mx>\r\n{extra}MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RB"\r\n\r\n'
        "--RB\r\nContent-Type: text/plain\r\n\r\nDelivery report.\r\n"
        "--RB\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; full@example.com\r\nAction: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n"
        + (f"--RB\r\nContent-Type: message/rfc822\r\n\r\n{original_headers}\r\nbody\r\n" if original_headers else "")
        + "--RB--\r\n"
    ).encode()


@pytest.fixture
def sent_reply(email_inbox, agent, django_capture_on_commit_callbacks):
    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    result = take(raw(sender="full@example.com", mid="<cust1@client>"), email_inbox, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=result.ticket, author=agent, body="Answer")
    out.refresh_from_db()
    assert out.status == "sent"
    return out


def test_bounce_finds_the_original_by_its_message_id_not_its_threading_headers(
    email_inbox, sent_reply, django_capture_on_commit_callbacks
):
    # The returned message's In-Reply-To names the customer's mail; only Message-ID is ours.
    returned = (
        f"From: support@example.com\r\nTo: full@example.com\r\nIn-Reply-To: <cust1@client>\r\n"
        f"References: <cust1@client>\r\nMessage-ID: {sent_reply.email_message_id}\r\nSubject: Re: x\r\n"
    )
    result = take(report(returned), email_inbox, django_capture_on_commit_callbacks)
    assert result.bounce and result.message == sent_reply
    sent_reply.refresh_from_db()
    assert sent_reply.status == "failed" and "Mailbox full" in sent_reply.error


def test_bounce_matched_through_its_references_only(email_inbox, sent_reply, django_capture_on_commit_callbacks):
    extra = f"In-Reply-To: {sent_reply.email_message_id}\r\nReferences: {sent_reply.email_message_id}\r\n"
    take(report(extra=extra), email_inbox, django_capture_on_commit_callbacks)
    sent_reply.refresh_from_db()
    assert sent_reply.status == "failed"


def test_a_delay_report_fails_nothing_and_opens_no_ticket(email_inbox, sent_reply, django_capture_on_commit_callbacks):
    returned = f"From: support@example.com\r\nMessage-ID: {sent_reply.email_message_id}\r\n"
    result = take(report(returned, action="delayed", status="4.4.7"), email_inbox, django_capture_on_commit_callbacks)
    assert result.message == sent_reply
    sent_reply.refresh_from_db()
    assert sent_reply.status == "sent"
    assert Ticket.objects.count() == 1 and Message.objects.filter(direction="inbound").count() == 1
    assert "not a failure" in RawInbound.objects.get(message=sent_reply).error


def test_backscatter_for_mail_we_never_sent_is_ignored_not_a_dead_letter(email_inbox):
    data = report("From: someone@example.com\r\nMessage-ID: <never-ours@spam>\r\n")
    with pytest.raises(ApplicationError) as err:
        ingest_raw_email(raw=data, inbox=email_inbox, source="test")
    assert err.value.code == "bounce_unmatched"
    kept = RawInbound.objects.get()
    assert kept.status == "ignored" and "Mailbox full" in kept.error
    assert not Ticket.objects.exists()


@pytest.mark.parametrize("order", [("g", "c", "r"), ("g", "r", "c"), ("c", "g", "r"), ("r", "g", "c")])
def test_a_thread_arriving_in_any_order_lands_in_one_ticket(email_inbox, order):
    mails = {
        "r": raw(mid="<r@client>"),
        "c": raw(
            subject="Re: Broken kettle", mid="<c@client>", extra="In-Reply-To: <r@client>\r\nReferences: <r@client>\r\n"
        ),
        "g": raw(
            subject="Re: Broken kettle",
            mid="<g@client>",
            extra="In-Reply-To: <c@client>\r\nReferences: <r@client> <c@client>\r\n",
        ),
    }
    tickets = {ingest_raw_email(raw=mails[k], inbox=email_inbox, source="test").ticket.pk for k in order}
    assert len(tickets) == 1
    assert Message.objects.filter(ticket_id=tickets.pop()).count() == 3


@pytest.mark.django_db(transaction=True)
def test_ingest_mail_with_parallel_jobs_threads_every_reply(email_inbox, tmp_path):
    import json
    import random
    from io import StringIO

    from django.core.management import call_command

    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    folder = tmp_path / "mail"
    folder.mkdir()
    rnd = random.Random(7)
    root_of: dict[str, str] = {}
    items = []
    for i in range(12):
        root = f"<root{i}@client>"
        root_of[root] = root
        items.append(raw(sender=f"p{i}@example.com", subject=f"Question {i}", mid=root))
        parent = root
        for j in range(3):
            mid = f"<r{i}-{j}@client>"
            root_of[mid] = root
            refs = " ".join(m for m in root_of if root_of[m] == root and m != mid)
            items.append(
                raw(sender=f"p{i}@example.com", subject=f"Re: Question {i}", mid=mid,
                    extra=f"In-Reply-To: {parent}\r\nReferences: {refs}\r\n")
            )  # fmt: skip
            parent = mid
    items.append(b"Subject: no sender\r\n\r\nbroken\r\n")
    rnd.shuffle(items)
    for n, data in enumerate(items):
        (folder / f"{n:03d}.eml").write_bytes(data)
    out = StringIO()
    call_command("ingest_mail", str(folder), "--jobs", "3", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == len(items)
    bad = items.index(b"Subject: no sender\r\n\r\nbroken\r\n")
    assert [n for n, line in enumerate(lines) if "error" in line] == [bad]  # output in input order
    assert lines[bad]["path"].endswith(f"{bad:03d}.eml")
    ticket_of = dict(Message.objects.values_list("email_message_id", "ticket_id"))
    assert all(ticket_of[mid] == ticket_of[root] for mid, root in root_of.items())
    assert Ticket.objects.count() == 12
    assert RawInbound.objects.filter(status="failed").count() == 1
