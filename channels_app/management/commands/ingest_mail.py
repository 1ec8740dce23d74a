"""ingest_mail PATH… [--inbox NAME]: .eml files, directories of them, mbox or Maildir.
One JSON object per message on stdout; a message that cannot be taken is reported
as {"error": …, "path": …} and the command goes on."""

import json
import mailbox
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from channels_app.models import Inbox
from channels_app.services import ingest_raw_email
from cxdesk.errors import ApplicationError

MAIL_SUFFIXES = {".eml", ".mbox", ".msg", ".txt", ""}


def iter_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) for every message under `path`."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            box = mailbox.Maildir(str(path), factory=None, create=False)
            for key in sorted(box.keys()):
                yield f"{path}#{key}", box.get_bytes(key)
            return
        for child in sorted(path.iterdir()):
            if not child.name.startswith(".") and (child.is_dir() or child.suffix.lower() in MAIL_SUFFIXES):
                yield from iter_messages(child)
        return
    with path.open("rb") as fh:
        head = fh.read(5)
    if head == b"From ":
        box = mailbox.mbox(str(path), create=False)
        for key in box.keys():
            yield f"{path}#{key}", box.get_bytes(key)
        return
    yield str(path), path.read_bytes()


class Command(BaseCommand):
    help = "Ingest .eml files, directories, mbox or Maildir into an email inbox."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--inbox", help="Email inbox name (default: the first email inbox).")

    def handle(self, *args, paths, inbox=None, **options):
        qs = Inbox.objects.filter(kind="email", is_active=True)
        box = qs.filter(name=inbox).first() if inbox else qs.order_by("pk").first()
        if box is None:
            raise CommandError(
                f"no email inbox {inbox!r}"
                if inbox
                else "no email inbox: create one with `create_inbox email NAME --set address=…`"
            )
        for raw_path in paths:
            path = Path(raw_path)
            if not path.exists():
                self.stdout.write(json.dumps({"error": "no such file or directory", "path": raw_path}))
                continue
            try:
                for label, raw in iter_messages(path):
                    self._one(box, label, raw)
            except OSError as exc:
                self.stdout.write(json.dumps({"error": f"cannot read: {exc}", "path": raw_path}))

    def _one(self, box: Inbox, label: str, raw: bytes) -> None:
        try:
            result = ingest_raw_email(raw=raw, inbox=box, source="ingest_mail")
        except ApplicationError as exc:
            self.stdout.write(json.dumps({"error": exc.message, "path": label}))
            return
        except Exception as exc:  # noqa: BLE001 - report and go on; the raw mail is kept as a dead letter
            self.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}", "path": label}))
            return
        self.stdout.write(json.dumps(result.as_dict()))
