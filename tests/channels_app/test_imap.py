"""IMAP polling against a small IMAP4rev1 server on loopback (LOGIN, SELECT, UID SEARCH/FETCH/STORE)."""

import re
import socketserver
import threading

import pytest

from channels_app.imap import poll_inbox
from channels_app.models import Inbox, RawInbound
from tests.channels_app.factories import InboxFactory
from tickets.models import Message

pytestmark = pytest.mark.django_db


class Mailbox:
    def __init__(self):
        self.messages: dict[int, bytes] = {}
        self.seen: set[int] = set()
        self.uidvalidity = 7
        self.fail_fetch: set[int] = set()
        self.capabilities = "IMAP4rev1"
        self.folders: dict[str, dict[int, bytes]] = {"Done": {}}
        self.deleted: set[int] = set()


class Handler(socketserver.StreamRequestHandler):
    def send(self, line: str | bytes):
        self.wfile.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")

    def handle(self):
        box: Mailbox = self.server.box
        self.send("* OK fake IMAP ready")
        while line := self.rfile.readline():
            tag, _, rest = line.decode().strip().partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPABILITY":
                self.send(f"* CAPABILITY {box.capabilities}")
                self.send(f"{tag} OK done")
            elif cmd == "LOGIN":
                ok = args.split() == ["support", '"pw"'] or args.split() == ["support", "pw"]
                self.send(f"{tag} OK logged in" if ok else f"{tag} NO bad credentials")
            elif cmd == "SELECT":
                self.send(f"* {len(box.messages)} EXISTS")
                self.send(f"* OK [UIDVALIDITY {box.uidvalidity}] ok")
                self.send(f"{tag} OK [READ-WRITE] selected")
            elif cmd == "UID":
                sub, _, rest2 = args.partition(" ")
                sub = sub.upper()
                if sub == "SEARCH":
                    low = int(re.search(r"UID (\d+):\*", rest2).group(1))
                    uids = [u for u in sorted(box.messages) if u >= low] or (
                        [max(box.messages)] if box.messages else []
                    )
                    self.send("* SEARCH " + " ".join(map(str, uids)))
                    self.send(f"{tag} OK search done")
                elif sub == "FETCH":
                    uid = int(rest2.split()[0])
                    if uid in box.fail_fetch:
                        self.send(f"{tag} NO cannot fetch")
                        continue
                    data = box.messages[uid]
                    self.send(f"* {uid} FETCH (UID {uid} BODY[] {{{len(data)}}}".encode() + b"\r\n" + data + b")\r\n")
                    self.send(f"{tag} OK fetch done")
                elif sub == "STORE":
                    uid = int(rest2.split()[0])
                    (box.deleted if "Deleted" in rest2 else box.seen).add(uid)
                    self.send(f"{tag} OK store done")
                elif sub in ("MOVE", "COPY") and (sub == "COPY" or "MOVE" in box.capabilities):
                    uid_text, _, folder = rest2.partition(" ")
                    folder = folder.strip('"')
                    if folder not in box.folders:
                        self.send(f"{tag} NO [TRYCREATE] no such mailbox")
                        continue
                    box.folders[folder][int(uid_text)] = box.messages[int(uid_text)]
                    if sub == "MOVE":
                        del box.messages[int(uid_text)]
                    self.send(f"{tag} OK {sub.lower()} done")
            elif cmd == "LOGOUT":
                self.send("* BYE")
                self.send(f"{tag} OK bye")
                return
            else:
                self.send(f"{tag} BAD unknown {cmd}")


@pytest.fixture
def imap_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.box = Mailbox()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def mail(n: int) -> bytes:
    return f"From: c{n}@example.com\r\nSubject: imap {n}\r\nMessage-ID: <imap{n}@x>\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
def imap_inbox(imap_server):
    return InboxFactory(
        kind="email", name="IMAP",
        config={"address": "support@example.com", "imap_host": "127.0.0.1", "imap_port": imap_server.server_address[1],
                "imap_user": "support", "imap_ssl": "false", "auto_ack": "false"},
        secrets={"imap_password": "pw"},
    )  # fmt: skip


def test_polls_by_uid_marks_seen_after_commit_and_never_doubles(imap_server, imap_inbox):
    box = imap_server.box
    box.messages = {1: mail(1), 2: mail(2), 5: b"Subject: no sender\r\n\r\nx\r\n"}
    assert poll_inbox(imap_inbox) == {"ingested": 2, "duplicates": 0, "failed": 1}
    assert box.seen == {1, 2, 5}
    assert Inbox.objects.get(pk=imap_inbox.pk).config["imap_last_uid"] == 5
    assert RawInbound.objects.filter(status="failed", source="imap").count() == 1
    # nothing new: IMAP's "n:*" returns the last message again; it is not re-read
    assert poll_inbox(Inbox.objects.get(pk=imap_inbox.pk)) == {"ingested": 0, "duplicates": 0, "failed": 0}
    box.messages[6] = mail(6)
    assert poll_inbox(Inbox.objects.get(pk=imap_inbox.pk))["ingested"] == 1
    assert Message.objects.count() == 3


def test_a_crash_before_the_uid_is_remembered_does_not_double(imap_server, imap_inbox):
    box = imap_server.box
    box.messages = {1: mail(1), 2: mail(2)}
    box.fail_fetch = {2}
    poll_inbox(imap_inbox)
    assert box.seen == {1}, "a message that could not be fetched is not marked"
    # simulate a crash after ingest but before the UID was saved: forget it
    inbox = Inbox.objects.get(pk=imap_inbox.pk)
    inbox.config["imap_last_uid"] = 0
    inbox.save()
    box.fail_fetch = set()
    assert poll_inbox(inbox) == {"ingested": 1, "duplicates": 1, "failed": 0}
    assert Message.objects.count() == 2


def test_uidvalidity_change_rereads_without_doubling(imap_server, imap_inbox):
    box = imap_server.box
    box.messages = {10: mail(1)}
    poll_inbox(imap_inbox)
    box.uidvalidity = 8
    box.messages = {1: mail(1), 2: mail(2)}
    assert poll_inbox(Inbox.objects.get(pk=imap_inbox.pk)) == {"ingested": 1, "duplicates": 1, "failed": 0}


@pytest.mark.parametrize("capabilities", ["IMAP4rev1 MOVE", "IMAP4rev1"])
def test_taken_mail_is_moved_after_commit(imap_server, imap_inbox, capabilities):
    box = imap_server.box
    box.capabilities = capabilities
    box.messages = {1: mail(1), 2: mail(2)}
    imap_inbox.config["imap_move_to"] = "Done"
    imap_inbox.save()
    assert poll_inbox(imap_inbox)["ingested"] == 2
    assert set(box.folders["Done"]) == {1, 2}
    if "MOVE" in capabilities:
        assert box.messages == {}
    else:
        assert box.deleted == {1, 2}, "copied, then flagged deleted"
    assert Message.objects.count() == 2


def test_a_missing_target_folder_leaves_the_mail_seen(imap_server, imap_inbox):
    box = imap_server.box
    box.capabilities = "IMAP4rev1 MOVE"
    box.messages = {1: mail(1)}
    imap_inbox.config["imap_move_to"] = "Nowhere"
    imap_inbox.save()
    assert poll_inbox(imap_inbox)["ingested"] == 1
    assert box.seen == {1} and 1 in box.messages
    assert poll_inbox(Inbox.objects.get(pk=imap_inbox.pk))["ingested"] == 0


def test_a_poison_message_is_a_dead_letter_and_the_poll_goes_on(imap_server, imap_inbox, monkeypatch):
    """A message the database refuses (a DataError — NUL bytes did that until ingest learnt
    to strip them; here the refusal is injected): the message's savepoint rolls back, the raw
    mail is kept as a flagged dead letter, later mail is ingested, and the other mailboxes are
    polled too."""
    from django.db import DataError

    from channels_app import services
    from channels_app.imap import poll_all

    real_ingest = services.ingest

    def refusing_ingest(inbound, *args, **kwargs):
        if inbound.subject == "poison":
            raise DataError('invalid byte sequence for encoding "UTF8": 0x00')
        return real_ingest(inbound, *args, **kwargs)

    monkeypatch.setattr(services, "ingest", refusing_ingest)
    box = imap_server.box
    poison = b"From: p@example.com\r\nSubject: poison\r\nMessage-ID: <poison@x>\r\n\r\nbad \x00 byte\r\n"
    box.messages = {1: mail(1), 2: poison, 3: mail(3)}
    second = InboxFactory(
        kind="email", name="IMAP 2",
        config={**imap_inbox.config, "address": "sales@example.com"}, secrets={"imap_password": "pw"},
    )  # fmt: skip
    result = poll_all()
    assert result["IMAP"] == {"ingested": 2, "duplicates": 0, "failed": 1}
    assert box.seen == {1, 2, 3}, "the poison message is flagged, not re-read every poll"
    dead = RawInbound.objects.get(status="failed", source="imap", inbox=imap_inbox)
    assert b"\x00" in dead.raw and "DataError" in dead.error
    assert Inbox.objects.get(pk=imap_inbox.pk).config["imap_last_uid"] == 3
    # the second mailbox (same fake server) was polled after the first one's poison
    assert result["IMAP 2"] == {"ingested": 2, "duplicates": 0, "failed": 1}
    assert Inbox.objects.get(pk=second.pk).config["imap_last_uid"] == 3
    assert Message.objects.filter(direction="inbound", inbox=imap_inbox).count() == 2
    assert poll_inbox(Inbox.objects.get(pk=imap_inbox.pk)) == {"ingested": 0, "duplicates": 0, "failed": 0}
