"""IMAP polling for email inboxes (IMAP over TLS, by UID).

A message is flagged \\Seen and its UID remembered only after its ticket is committed
(or, for mail that cannot be ingested, after it is kept as a dead letter): a crash
between the two re-reads the message next time, and ingest's dedupe on the Message-ID
makes that a no-op. So nothing is lost and nothing is doubled."""

from __future__ import annotations

import imaplib
import logging
import re

from django.db import DatabaseError, transaction

from cxdesk.errors import ApplicationError

from .models import Inbox, RawInbound
from .services import raw_inbound_process, raw_inbound_store

log = logging.getLogger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


def _connect(inbox: Inbox) -> imaplib.IMAP4:
    cfg = inbox.config
    host, port = cfg["imap_host"], int(cfg.get("imap_port") or 993)
    if str(cfg.get("imap_ssl", "true")).lower() in ("0", "false", "no"):
        conn = imaplib.IMAP4(host, port, timeout=30)  # only for test servers on loopback
    else:
        conn = imaplib.IMAP4_SSL(host, port, timeout=30)
    conn.login(cfg.get("imap_user", ""), inbox.secrets.get("imap_password", ""))
    return conn


@transaction.atomic
def _remember(inbox: Inbox, *, uid: int, uidvalidity: str) -> None:
    box = Inbox.objects.select_for_update().get(pk=inbox.pk)
    box.config = {**box.config, "imap_last_uid": uid, "imap_uidvalidity": uidvalidity}
    box.save(update_fields=["config"])
    inbox.config = box.config


def _mark_taken(conn: imaplib.IMAP4, uid: int, move_to: str) -> None:
    """Flag the message \\Seen and, if configured, move it out of the polled folder.
    Called only once its ticket (or dead letter) is committed."""
    conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
    if not move_to:
        return
    folder = '"' + move_to.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "MOVE" in conn.capabilities:
        typ, _ = conn.uid("MOVE", str(uid), folder)
    else:
        # No MOVE (RFC 6851): copy, then mark deleted; the UID is remembered either way,
        # so the message is not read again even where it cannot be expunged.
        typ, _ = conn.uid("COPY", str(uid), folder)
        if typ == "OK":
            conn.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    if typ != "OK":
        log.warning("could not move UID %s to %s (it stays flagged \\Seen)", uid, move_to)


def poll_inbox(inbox: Inbox, *, limit: int = 200) -> dict[str, int]:
    """Fetch new mail of one inbox. Returns counts: ingested, duplicates, failed."""
    counts = {"ingested": 0, "duplicates": 0, "failed": 0}
    conn = _connect(inbox)
    try:
        typ, _ = conn.select(inbox.config.get("imap_folder") or "INBOX")
        if typ != "OK":
            raise ApplicationError(f"cannot select folder on {inbox.name}", code="imap_folder")
        validity = b""
        for line in conn.untagged_responses.get("UIDVALIDITY", []) or []:
            validity = line
        uidvalidity = validity.decode() if validity else ""
        last = int(inbox.config.get("imap_last_uid") or 0)
        if uidvalidity and str(inbox.config.get("imap_uidvalidity", "")) not in ("", uidvalidity):
            log.warning("%s: UIDVALIDITY changed; reading the folder again (dedupe keeps it exactly-once)", inbox.name)
            last = 0
        typ, data = conn.uid("SEARCH", None, f"UID {last + 1}:*")
        uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > last)[:limit]
        for uid in uids:
            typ, fetched = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
            raw = next((part[1] for part in fetched or [] if isinstance(part, tuple)), None)
            if typ != "OK" or raw is None:
                log.warning("%s: UID %s could not be fetched; will retry", inbox.name, uid)
                break
            record = raw_inbound_store(raw=raw, source="imap", inbox=inbox)  # kept before parsing
            try:
                result = raw_inbound_process(record=record)
                counts["duplicates" if result.duplicate else "ingested"] += 1
            except ApplicationError:
                counts["failed"] += 1  # kept as a dead letter (RawInbound) with the error
            except DatabaseError as exc:
                if not RawInbound.objects.filter(pk=record.pk, status=RawInbound.Status.FAILED).exists():
                    raise  # the dead letter itself was not written (database down): read it again next poll
                # A poison message (a NUL byte, an over-long value…): its savepoint rolled
                # back, the raw mail is a dead letter with the error; flag it and go on.
                log.warning("%s: UID %s kept as a dead letter: %s", inbox.name, uid, exc)
                counts["failed"] += 1
            _mark_taken(conn, uid, inbox.config.get("imap_move_to") or "")
            _remember(inbox, uid=uid, uidvalidity=uidvalidity)
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return counts


def poll_all() -> dict[str, dict[str, int]]:
    out = {}
    for inbox in Inbox.objects.filter(kind="email", is_active=True).exclude(config__imap_host=None):
        if not inbox.config.get("imap_host"):
            continue
        try:
            out[inbox.name] = poll_inbox(inbox)
        except (imaplib.IMAP4.error, OSError, ApplicationError) as exc:
            log.warning("IMAP poll of %s failed: %s", inbox.name, exc)
            out[inbox.name] = {"error": 1}
        except Exception:  # noqa: BLE001 - each mailbox in isolation: one broken box never stops the others
            log.exception("IMAP poll of %s failed", inbox.name)
            out[inbox.name] = {"error": 1}
    return out
