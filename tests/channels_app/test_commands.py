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
    """A chunk's routing rows are claimed together and run by the command after the chunk,
    not handed to Celery one by one; the tickets get the default team all the same."""
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
    assert set(Ticket.objects.values_list("team_id", flat=True)) == {team.pk}
    routes = OutboxTask.objects.filter(kind="route")
    assert routes.count() == Ticket.objects.count() and set(routes.values_list("status", flat=True)) == {"done"}
