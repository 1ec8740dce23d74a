"""ingest_mail PATH… [--inbox NAME]: .eml files, directories of them, mbox or Maildir.
One JSON object per message on stdout; a message that cannot be taken is reported
as {"error": …, "path": …} and the command goes on.

Messages go in chunks of 50: each message is its own transaction, and a chunk shares the
answers to what every message asks (cxdesk.memo) and runs its routing at its end, in this
process. --jobs N ingests chunks with N worker processes (each its own database
connection). Output stays in input order; threading is order-independent (ingest locks per customer and a
reply that lands before its parent is joined when the parent arrives)."""

import json
import mailbox
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from channels_app.models import Inbox
from channels_app.services import ingest_raw_emails
from cxdesk.errors import ApplicationError
from cxdesk.memo import memo_scope
from outbox.services import run_here

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
            # With the envelope line: it names the sender when the headers do not.
            yield f"{path}#{key}", box.get_bytes(key, from_=True)
        return
    yield str(path), path.read_bytes()


CHUNK = 50  # messages that share one memo scope and run their routing together


def ingest_chunk(inbox: Inbox, items: list[tuple[str, bytes]]) -> list[dict]:
    """A chunk of messages ingested together (`ingest_raw_emails`: one transaction, each
    mail alone if that fails), what they all ask (SLA policies, routing rules…) asked once,
    and their routing run here after the commit instead of a Celery task each."""
    with memo_scope(), run_here():
        try:
            results = ingest_raw_emails(raws=[raw for _label, raw in items], inbox=inbox, source="ingest_mail")
        except Exception as exc:  # noqa: BLE001 - the database went away: report each, go on
            return [{"error": f"{type(exc).__name__}: {exc}", "path": label} for label, _raw in items]
    return [
        {"error": result.message, "path": label} if isinstance(result, ApplicationError) else result.as_dict()
        for (label, _raw), result in zip(items, results, strict=True)
    ]


def _chunks(items: Iterator[tuple[str, bytes] | dict]) -> Iterator[list[tuple[str, bytes]] | dict]:
    chunk: list[tuple[str, bytes]] = []
    for item in items:
        if isinstance(item, dict):
            if chunk:
                yield chunk
                chunk = []
            yield item
            continue
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_worker_inbox: Inbox | None = None


def _worker_init(inbox_id: int) -> None:
    # Forked after the command closed its connections: each worker opens its own.
    global _worker_inbox
    _worker_inbox = Inbox.objects.get(pk=inbox_id)


def _worker_ingest(items: list[tuple[str, bytes]]) -> list[dict]:
    return ingest_chunk(_worker_inbox, items)


class Command(BaseCommand):
    help = "Ingest .eml files, directories, mbox or Maildir into an email inbox."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--inbox", help="Email inbox name (default: the first email inbox).")
        parser.add_argument("--jobs", type=int, default=1, help="Worker processes (default 1).")

    def handle(self, *args, paths, inbox=None, jobs=1, **options):
        qs = Inbox.objects.filter(kind="email", is_active=True)
        box = qs.filter(name=inbox).first() if inbox else qs.order_by("pk").first()
        if box is None:
            raise CommandError(
                f"no email inbox {inbox!r}"
                if inbox
                else "no email inbox: create one with `create_inbox email NAME --set address=…`"
            )
        if jobs < 1:
            raise CommandError("--jobs must be at least 1")
        if jobs > 1 and connections["default"].vendor != "postgresql":
            self.stderr.write("--jobs needs PostgreSQL (concurrent writers); ingesting with one process")
            jobs = 1
        if jobs == 1:
            for item in _chunks(self._items(paths)):
                for line in [item] if isinstance(item, dict) else ingest_chunk(box, item):
                    self.stdout.write(json.dumps(line))
            return
        connections.close_all()
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(box.pk,)) as pool:
            pending: deque = deque()  # bounded: at most jobs × 2 chunks in memory
            for item in _chunks(self._items(paths)):
                pending.append(item if isinstance(item, dict) else pool.submit(_worker_ingest, item))
                while len(pending) > jobs * 2:
                    self._emit(pending.popleft())
            while pending:
                self._emit(pending.popleft())

    def _emit(self, item) -> None:
        for line in [item] if isinstance(item, dict) else item.result():
            self.stdout.write(json.dumps(line))

    def _items(self, paths: list[str]) -> Iterator[tuple[str, bytes] | dict]:
        """(label, raw) per message, or a ready error line for a path that cannot be read."""
        for raw_path in paths:
            path = Path(raw_path)
            if not path.exists():
                yield {"error": "no such file or directory", "path": raw_path}
                continue
            try:
                yield from iter_messages(path)
            except OSError as exc:
                yield {"error": f"cannot read: {exc}", "path": raw_path}
