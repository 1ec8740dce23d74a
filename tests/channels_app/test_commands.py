import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from channels_app.models import Inbox, RawInbound
from tests import DATA
from tickets.models import Message

pytestmark = pytest.mark.django_db


def run(*args) -> list[dict]:
    out = StringIO()
    call_command(*args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_create_inbox_prints_and_hides_secrets():
    [made] = run("create_inbox", "email", "Help", "--set", "address=help@example.com", "--set", "imap_password=s3cret")
    assert set(made) == {"id", "name", "kind", "webhook_url"}
    assert "s3cret" not in json.dumps(made)
    inbox = Inbox.objects.get(pk=made["id"])
    assert inbox.secrets == {"imap_password": "s3cret"} and inbox.config == {"address": "help@example.com"}
    [again] = run("create_inbox", "email", "Help", "--set", "from_name=Help desk")
    assert again["id"] == made["id"] and Inbox.objects.get().config["from_name"] == "Help desk"


def test_create_inbox_rejects_unknown_kind_and_keys():
    with pytest.raises(CommandError, match="no channel adapter"):
        call_command("create_inbox", "pigeon", "X", stdout=StringIO())
    with pytest.raises(CommandError, match="unknown setting"):
        call_command("create_inbox", "email", "X", "--set", "address=a@b.cd", "--set", "colour=blue", stdout=StringIO())
    assert not Inbox.objects.exists()


def test_ingest_mail_takes_a_folder_and_reports_duplicates(email_inbox, tmp_path):
    import shutil

    folder = tmp_path / "mail"
    folder.mkdir()
    for path in (DATA / "email" / "django-helpdesk").glob("*.eml"):
        shutil.copy(path, folder)
    lines = run("ingest_mail", str(folder))
    assert len(lines) == 6
    assert all(set(line) == {"ticket", "message", "created_ticket", "duplicate"} for line in lines)
    again = run("ingest_mail", str(folder / "pgp.eml"), str(tmp_path / "missing.eml"))
    assert again[0]["duplicate"] is True
    assert again[1] == {"error": "no such file or directory", "path": str(tmp_path / "missing.eml")}
    assert Message.objects.count() == 6


def test_ingest_mail_reads_mbox_and_maildir_and_keeps_dead_letters(email_inbox, tmp_path):
    import mailbox

    mbox = mailbox.mbox(str(tmp_path / "box.mbox"))
    for i in range(3):
        mbox.add(f"From: c{i}@example.com\nSubject: mbox {i}\nMessage-ID: <mb{i}@x>\n\nbody {i}\n".encode())
    mbox.add(b"Subject: no sender at all\n\nbody\n")
    mbox.flush()
    md = mailbox.Maildir(str(tmp_path / "md"))
    md.add(b"From: d@example.com\nSubject: maildir\nMessage-ID: <md1@x>\n\nhello\n")
    lines = run("ingest_mail", str(tmp_path / "box.mbox"), str(tmp_path / "md"))
    assert [("error" in line) for line in lines] == [False, False, False, True, False]
    failed = RawInbound.objects.get(status=RawInbound.Status.FAILED)
    assert "no sender" in failed.error and b"no sender at all" in failed.raw


def test_ingest_mail_takes_the_sender_from_the_mbox_envelope(email_inbox, tmp_path):
    import mailbox

    box = mailbox.mbox(str(tmp_path / "env.mbox"))
    msg = mailbox.mboxMessage(b"From: Printer Room\nSubject: toner\nMessage-ID: <env1@x>\n\nout of toner\n")
    msg.set_from("printer@office.example", time_=(2026, 11, 24, 9, 0, 0, 1, 328, 0))
    box.add(msg)
    box.flush()
    [line] = run("ingest_mail", str(tmp_path / "env.mbox"))
    message = Message.objects.get(pk=line["message"])
    assert message.identity.address == "printer@office.example"
    assert message.metadata["sender_header"] == "envelope"
    assert message.identity.display_name == "Printer Room"


def test_ingest_mail_routes_each_chunk_itself(email_inbox, tmp_path, monkeypatch):
    """A chunk routes its tickets inside its own transaction, before it commits (as the
    webhook drainer's batch does): no routing row written, run after the commit or handed
    to Celery; the tickets get the default team all the same."""
    import shutil

    from outbox.models import OutboxTask
    from tickets.models import Team, Ticket

    team = Team.objects.create(name="Support", is_default=True)
    sent = []
    monkeypatch.setattr("outbox.services.dispatch", lambda tasks, **kw: sent.extend(t.kind for t in tasks))
    folder = tmp_path / "mail"
    folder.mkdir()
    for path in (DATA / "email" / "django-helpdesk").glob("*.eml"):
        shutil.copy(path, folder)
    lines = run("ingest_mail", str(folder))
    assert len(lines) == 6 and "route" not in sent
    assert Ticket.objects.exists() and set(Ticket.objects.values_list("team_id", flat=True)) == {team.pk}
    assert not OutboxTask.objects.filter(kind="route").exists(), "routed before the commit: no row"


def _mail(n: int, sender: str = "", reply_to: str = "") -> bytes:
    head = f"From: {sender or f'c{n}@example.com'}\r\nSubject: chunk {n}\r\nMessage-ID: <chunk{n}@x>\r\n"
    if reply_to:
        head += f"In-Reply-To: <{reply_to}>\r\nReferences: <{reply_to}>\r\n"
    return f"{head}\r\nbody {n}\r\n".encode()


def test_a_chunk_of_mail_is_stored_in_one_transaction_without_a_savepoint_each(email_inbox):
    """`ingest_raw_emails`: the raw mails in one INSERT, the plain ones ingested together —
    a reply arriving in the same chunk as its parent still joins its ticket."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.services import IngestResult, ingest_raw_emails

    raws = [_mail(1), _mail(2, reply_to="chunk1@x", sender="c1@example.com"), _mail(3)]
    with CaptureQueriesContext(connection) as ctx:
        results = ingest_raw_emails(raws=raws, inbox=email_inbox, source="test")
    assert all(isinstance(r, IngestResult) and not r.duplicate for r in results)
    assert results[1].ticket == results[0].ticket and results[2].ticket != results[0].ticket
    sql = [q["sql"] for q in ctx.captured_queries]
    assert len([q for q in sql if q.startswith('INSERT INTO "channels_app_rawinbound"')]) == 1
    # The test runs inside a transaction of its own, so the chunk's transaction and its
    # routing's show as the only two savepoints: none per mail.
    assert len([q for q in sql if q.startswith("SAVEPOINT")]) == 2
    assert set(RawInbound.objects.values_list("status", flat=True)) == {RawInbound.Status.PROCESSED}


def test_a_chunk_with_a_repeat_a_loop_and_a_mail_without_sender_takes_those_alone(email_inbox):
    """A repeat rolls the chunk's transaction back and every mail is taken alone (the
    repeat reported as one); our own mail and one without a sender never enter the
    chunk's transaction, and end as the single path ends them."""
    from channels_app.services import IngestResult, ingest_raw_emails
    from cxdesk.errors import ApplicationError

    first = ingest_raw_emails(raws=[_mail(1)], inbox=email_inbox, source="test")[0]
    raws = [_mail(2), _mail(1), _mail(3, sender="support@example.com"), b"Subject: who?\r\n\r\nbody\r\n", _mail(4)]
    results = ingest_raw_emails(raws=raws, inbox=email_inbox, source="test")
    assert isinstance(results[0], IngestResult) and isinstance(results[4], IngestResult)
    assert results[1].duplicate and results[1].message == first.message
    assert isinstance(results[2], ApplicationError) and results[2].code == "own_address"
    assert isinstance(results[3], ApplicationError)
    assert Message.objects.count() == 3
    statuses = list(RawInbound.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["processed", "processed", "ignored", "ignored", "failed", "processed"]


def test_a_chunk_looks_up_its_new_senders_organisations_in_one_statement(email_inbox):
    """New customers of a chunk join the organisation that owns their domain (as alone),
    the organisations read once for the chunk's new senders, not once per new customer."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.services import ingest_raw_emails
    from customers.models import Customer, Organization

    acme = Organization.objects.create(name="Acme", domains=["acme.example"])
    Organization.objects.create(name="Other", domains=["other.example", "ACME.example.net"])
    raws = [_mail(1, sender="a@acme.example"), _mail(2, sender="b@Acme.Example"), _mail(3, sender="c@nowhere.example")]
    with CaptureQueriesContext(connection) as ctx:
        ingest_raw_emails(raws=raws, inbox=email_inbox, source="test")
    looked = [q["sql"] for q in ctx.captured_queries if 'FROM "customers_organization"' in q["sql"]]
    assert len(looked) == 1, looked
    orgs = dict(Customer.objects.values_list("identities__address", "organization_id"))
    assert orgs == {"a@acme.example": acme.pk, "b@acme.example": acme.pk, "c@nowhere.example": None}


def _eml(mid: str, sender: str, *, parent: str = "", refs: str = "", to: str = "support@example.com") -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {'Re: ' if parent else ''}thread\r\nMessage-ID: <{mid}>\r\n"
    if parent:
        head += f"In-Reply-To: <{parent}>\r\nReferences: {refs or f'<{parent}>'}\r\n"
    return f"{head}\r\nbody of {mid}\r\n".encode()


def test_a_chunk_threads_with_one_lookup_for_all_its_headers_in_any_order(email_inbox):
    """Threading asks once per chunk for the messages its headers name, the replies that came
    before their parents and the tickets of both (locked) — and decides as one mail at a
    time would: a reply before its parent in the same chunk, a parent after its reply, a
    reply to a mail of an earlier chunk, a third level whose parent is in the chunk, and a
    colleague in the parent's To joining from another address."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app.services import ingest_raw_emails
    from tickets.models import Ticket

    old = ingest_raw_emails(raws=[_eml("old@x", "ola@example.com")], inbox=email_inbox, source="test")[0]
    Ticket.objects.filter(pk=old.ticket.pk).update(status=Ticket.Status.SOLVED)
    later = ingest_raw_emails(raws=[_eml("r2@x", "jan@example.com", parent="p@x")], inbox=email_inbox, source="test")
    raws = [
        _eml("r1@x", "jan@example.com", parent="p@x"),  # before its parent, in the chunk
        _eml("p@x", "jan@example.com", to="support@example.com, eva@example.com"),  # its replies came first
        _eml("r3@x", "jan@example.com", parent="r1@x", refs="<p@x> <r1@x>"),  # third level
        _eml("old-re@x", "ola@example.com", parent="old@x"),  # an earlier chunk's mail: reopens it
        _eml("eva@x", "eva@example.com", parent="p@x"),  # in the parent's To
        _eml("new@x", "nobody@example.com"),
    ]
    with CaptureQueriesContext(connection) as ctx:
        results = ingest_raw_emails(raws=raws, inbox=email_inbox, source="test")
    r1, parent, r3, old_re, eva, new = results
    assert r1.ticket == parent.ticket == r3.ticket == eva.ticket == later[0].ticket
    assert old_re.ticket == old.ticket and Ticket.objects.get(pk=old.ticket.pk).status == Ticket.Status.OPEN
    assert new.created_ticket and new.ticket not in {old.ticket, parent.ticket}
    sql = [q["sql"] for q in ctx.captured_queries]
    headers = [q for q in sql if q.startswith('SELECT "tickets_message"."id" AS "id", "tickets_message"."ticket_id"')]
    assert len(headers) == 2, "the chunk's header lookup and its replies-first lookup, once each"
    locks = [q for q in sql if q.startswith('SELECT "tickets_ticket"') and "FOR NO KEY UPDATE" in q]
    assert not [q for q in locks if 'WHERE "tickets_ticket"."id" = ' in q], "no ticket locked alone"
    chunk = [q for q in locks if '"tickets_ticket"."customer_id" IN' in q]
    assert len(chunk) == 1, "its senders' open tickets, in one statement"
    by_pk = [q for q in locks if 'WHERE "tickets_ticket"."id" IN' in q]
    assert len(by_pk) == 2, "the tickets its headers name besides, in one statement; routing's, after the commit"


def test_a_chunk_that_meets_a_ticket_of_another_customer_asks_as_alone(email_inbox):
    """A mail stored in a colleague's ticket (a recipient of it) is not in the chunk's rows:
    a later reply to it in the same chunk asks the database, and threads the same."""
    from channels_app.services import ingest_raw_emails

    first = ingest_raw_emails(
        raws=[_eml("p@x", "jan@example.com", to="support@example.com, eva@example.com")],
        inbox=email_inbox,
        source="test",
    )[0]
    raws = [
        _eml("eva@x", "eva@example.com", parent="p@x"),  # joins jan's ticket (eva was in To)
        _eml("jan-re@x", "jan@example.com", parent="eva@x", refs="<p@x> <eva@x>"),
    ]
    results = ingest_raw_emails(raws=raws, inbox=email_inbox, source="test")
    assert results[0].ticket == results[1].ticket == first.ticket


def test_a_chunk_writes_its_senders_last_sightings_in_one_statement(email_inbox):
    """Known senders not seen for a while: each identity's `last_seen_at` is its own mail's
    time, written for the chunk in one UPDATE as it ends, not one UPDATE per mail."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from channels_app.services import ingest_raw_emails
    from customers.models import Identity

    ingest_raw_emails(raws=[_mail(1), _mail(2), _mail(3)], inbox=email_inbox, source="test")
    long_ago = timezone.now() - timedelta(days=3)
    Identity.objects.update(last_seen_at=long_ago)
    before = timezone.now()
    with CaptureQueriesContext(connection) as ctx:
        ingest_raw_emails(raws=[_mail(4, sender="c1@example.com"), _mail(5, sender="c2@example.com"),
                                _mail(6, sender="c2@example.com")], inbox=email_inbox, source="test")  # fmt: skip
    updates = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('UPDATE "customers_identity"')]
    assert len(updates) == 1, updates
    seen = dict(Identity.objects.values_list("address", "last_seen_at"))
    assert seen["c3@example.com"] == long_ago
    assert before <= seen["c1@example.com"] <= timezone.now() and before <= seen["c2@example.com"] <= timezone.now()
