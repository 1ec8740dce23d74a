"""Backup and restore (deploy/backup.sh, deploy/restore.sh): the database with pg_dump and
the attachments store (MEDIA_ROOT on the filesystem), restored into a fresh database and
folder; a ticket and its attachment's bytes are back."""

import os
import shutil
import subprocess

import psycopg
import pytest
from django.db import connection

from channels_app.services import ingest
from tests.channels_app.factories import inbound
from tickets.models import Attachment

from .conftest import ROOT, _missing, _test_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def test_a_backup_restores_the_database_and_the_attachments(sms_inbox, settings, tmp_path):
    from channels_app.types import InboundAttachment

    if not shutil.which("pg_dump") or not shutil.which("pg_restore"):
        _missing("pg_dump / pg_restore are not installed (apt-get install -y postgresql-client)")
    source_url = _test_database_url()
    message = inbound(sms_inbox, text="Invoice attached")
    message.attachments = [InboundAttachment(filename="invoice.pdf", content_type="application/pdf", content=PDF)]
    ticket = ingest(message).ticket
    attachment = Attachment.objects.get(message__ticket=ticket)
    assert attachment.file.read() == PDF

    restored_db = f"{connection.settings_dict['NAME']}_restore"
    admin_url = source_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{restored_db}"')
        admin.execute(f'CREATE DATABASE "{restored_db}"')
    restored_url = source_url.rsplit("/", 1)[0] + f"/{restored_db}"
    backup_dir, restored_media = tmp_path / "backup", tmp_path / "restored-media"
    env = {**os.environ, "DATABASE_URL": source_url, "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    try:
        subprocess.run([str(ROOT / "deploy/backup.sh"), str(backup_dir)], env=env, check=True, capture_output=True)
        assert "media_files=1" in (backup_dir / "MANIFEST").read_text()
        env.update(DATABASE_URL=restored_url, MEDIA_ROOT=str(restored_media))
        done = subprocess.run([str(ROOT / "deploy/restore.sh"), str(backup_dir)], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()

        with psycopg.connect(restored_url) as restored:
            row = restored.execute(
                "SELECT t.subject, a.filename, a.file, a.sha256 FROM tickets_ticket t "
                "JOIN tickets_message m ON m.ticket_id = t.id JOIN tickets_attachment a ON a.message_id = m.id "
                "WHERE t.id = %s",
                [ticket.pk],
            ).fetchone()
            migrations = restored.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
        assert row is not None, "the ticket is not in the restored database"
        assert row[:2] == (ticket.subject, "invoice.pdf")
        assert (restored_media / row[2]).read_bytes() == PDF
        assert row[3] == attachment.sha256
        assert migrations > 10

        # A damaged backup is refused before anything is restored.
        (backup_dir / "media.tar.gz").write_bytes(b"garbage")
        bad = subprocess.run([str(ROOT / "deploy/restore.sh"), str(backup_dir)], env=env, capture_output=True)
        assert bad.returncode != 0
        assert b"checksum" in bad.stderr
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)')
