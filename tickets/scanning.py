"""Attachment scanning: one small scanner interface, a ClamAV (clamd) backend, and the
service that applies a verdict to stored attachments.

`scan(source) -> Clean | Infected(name) | ScanError(reason)`; `source` is bytes, a path or
a binary file object. The backend is chosen by settings:

    CXDESK_SCANNER = ""        # no scanning (default): attachments are "unscanned"
    CXDESK_SCANNER = "clamd"   # CLAMD_SOCKET=/run/clamav/clamd.ctl, or CLAMD_HOST + CLAMD_PORT

Every stored attachment (tickets.attachments.attachment_store and fetched provider media)
calls `attachment_stored()`, which marks it pending and scans it in a Celery task after
commit. An infected file is quarantined: every attachment with the same bytes (storage is
content-addressed) is refused by the desk, API and portal downloads, not sent out, shown as
quarantined in the timeline, and each ticket carrying it gets a TicketEvent.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Attachment

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Clean:
    pass


@dataclass(frozen=True)
class Infected:
    name: str


@dataclass(frozen=True)
class ScanError:
    reason: str


Error = ScanError  # the interface's third verdict, under its short name
ScanResult = Clean | Infected | ScanError
Source = bytes | str | os.PathLike | BinaryIO


class Scanner(Protocol):
    def scan(self, source: Source) -> ScanResult: ...


def _chunks(source: Source):
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]
        return
    if isinstance(source, str | os.PathLike):
        with Path(source).open("rb") as fh:
            yield from iter(lambda: fh.read(CHUNK), b"")
        return
    yield from iter(lambda: source.read(CHUNK), b"")


class ClamdScanner:
    """clamd's socket protocol: `zINSTREAM\\0`, then <4-byte big-endian length><bytes>
    chunks, a zero-length chunk to end; the answer is `stream: OK`, `stream: <name> FOUND`
    or `… ERROR` (e.g. the stream is larger than clamd's StreamMaxLength)."""

    def __init__(self, *, unix_socket: str = "", host: str = "127.0.0.1", port: int = 3310, timeout: float = 30.0):
        self.unix_socket, self.host, self.port, self.timeout = unix_socket, host, port, timeout

    def _connect(self) -> socket.socket:
        if self.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.unix_socket)
            return sock
        return socket.create_connection((self.host, self.port), timeout=self.timeout)

    def _command(self, command: bytes, chunks=()) -> str:
        with self._connect() as sock:
            sock.sendall(b"z" + command + b"\0")
            for chunk in chunks:
                sock.sendall(struct.pack("!L", len(chunk)) + chunk)
            if command == b"INSTREAM":
                sock.sendall(struct.pack("!L", 0))
            reply = b""
            while not reply.endswith(b"\0"):
                part = sock.recv(4096)
                if not part:
                    break
                reply += part
        return reply.rstrip(b"\0").decode("utf-8", "replace").strip()

    def ping(self) -> bool:
        try:
            return self._command(b"PING") == "PONG"
        except OSError:
            return False

    def scan(self, source: Source) -> ScanResult:
        try:
            reply = self._command(b"INSTREAM", _chunks(source))
        except OSError as exc:
            # clamd closes the socket when a stream passes StreamMaxLength; any other
            # socket failure is an error too: never a "clean".
            return ScanError(f"clamd unreachable or closed the connection: {exc}")
        _, _, verdict = reply.partition(": ")
        if verdict == "OK":
            return Clean()
        if verdict.endswith(" FOUND"):
            return Infected(verdict[: -len(" FOUND")].strip() or "unknown")
        return ScanError(f"clamd: {reply[:200] or 'no answer'}")


def get_scanner() -> Scanner | None:
    kind = (getattr(settings, "CXDESK_SCANNER", "") or "").strip().lower()
    if kind in ("", "none"):
        return None
    if kind == "clamd":
        return ClamdScanner(
            unix_socket=settings.CLAMD_SOCKET,
            host=settings.CLAMD_HOST,
            port=settings.CLAMD_PORT,
            timeout=settings.CLAMD_TIMEOUT,
        )
    raise ValueError(f"unknown CXDESK_SCANNER {kind!r} (use '' or 'clamd')")


def scan(source: Source) -> ScanResult:
    scanner = get_scanner()
    if scanner is None:
        return ScanError("no scanner configured")
    return scanner.scan(source)


# --- applying verdicts to attachments ------------------------------------------------------


def attachment_stored(attachment: Attachment) -> None:
    """Called by every path that stores attachment bytes: schedule the scan after commit."""
    if get_scanner() is None:
        return
    Attachment.objects.filter(pk=attachment.pk).update(scan_status=Attachment.ScanStatus.PENDING)
    attachment.scan_status = Attachment.ScanStatus.PENDING
    from .tasks import scan_attachment

    transaction.on_commit(lambda: scan_attachment.delay(attachment.pk))


class ScanFailed(Exception):
    """A scan could not be done now (clamd down, timeout): the task retries."""


def attachment_scan(*, attachment_id: int, final_attempt: bool = False) -> str:
    """Scan one stored attachment and record the verdict. Idempotent: an attachment
    already decided is left alone. Raises ScanFailed for a retry unless `final_attempt`,
    in which case the attachment stays refused with status `error`."""
    att = Attachment.objects.filter(pk=attachment_id).first()
    if att is None or not att.file:
        return "missing"
    if att.scan_status not in (Attachment.ScanStatus.PENDING, Attachment.ScanStatus.ERROR):
        return att.scan_status
    with att.file.open("rb") as fh:
        result = scan(fh)
    if isinstance(result, ScanError):
        if not final_attempt:
            raise ScanFailed(result.reason)
        Attachment.objects.filter(pk=attachment_id).update(
            scan_status=Attachment.ScanStatus.ERROR, scan_detail=result.reason[:200], scanned_at=timezone.now()
        )
        return Attachment.ScanStatus.ERROR
    if isinstance(result, Infected):
        attachment_quarantine(sha256=att.sha256, signature=result.name)
        return Attachment.ScanStatus.INFECTED
    Attachment.objects.filter(pk=attachment_id, scan_status__in=["pending", "error"]).update(
        scan_status=Attachment.ScanStatus.CLEAN, scan_detail="", scanned_at=timezone.now()
    )
    return Attachment.ScanStatus.CLEAN


@transaction.atomic
def attachment_quarantine(*, sha256: str, signature: str) -> list[Attachment]:
    """Quarantine every attachment with these bytes and tell each ticket's timeline."""
    from . import events

    affected = list(
        Attachment.objects.select_for_update()
        .filter(sha256=sha256)
        .exclude(scan_status=Attachment.ScanStatus.INFECTED)
        .select_related("message__ticket")
    )
    now = timezone.now()
    for att in affected:
        att.scan_status, att.scan_detail, att.scanned_at = Attachment.ScanStatus.INFECTED, signature[:200], now
        att.save(update_fields=["scan_status", "scan_detail", "scanned_at"])
        events.attachment_quarantined(
            att.message.ticket,
            attachment_id=att.pk,
            message_id=att.message_id,
            filename=att.filename,
            signature=signature,
        )
    return affected


def download_refusal(attachment: Attachment) -> tuple[str, str] | None:
    """(code, reason) when this attachment may not be downloaded or sent, else None."""
    status = attachment.scan_status
    if status == Attachment.ScanStatus.INFECTED:
        return "attachment_quarantined", f"quarantined: the virus scanner found {attachment.scan_detail}"
    if status == Attachment.ScanStatus.PENDING:
        return "attachment_scan_pending", "being scanned for viruses; try again in a moment"
    if status == Attachment.ScanStatus.ERROR:
        return "attachment_scan_failed", "could not be scanned for viruses, so it is held back"
    return None
