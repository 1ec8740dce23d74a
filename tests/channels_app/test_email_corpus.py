"""Every mail fixture in tests/data/email/ (expectations in expected.json), as a person
reading it would see it: stored (or kept as a dead letter with its reason), the right
sender, subject and body; the same bytes again are a duplicate; a different mail that
reuses the Message-ID is a new message."""

import json

import pytest

from channels_app.models import RawInbound
from channels_app.services import ingest_raw_email
from cxdesk.errors import ApplicationError
from tests import DATA
from tickets.models import Message

EXPECTED = json.loads((DATA / "email" / "expected.json").read_text())


def test_every_mail_fixture_has_expectations():
    on_disk = {str(p.relative_to(DATA / "email")) for p in (DATA / "email").rglob("*.eml")}
    assert on_disk == set(EXPECTED), "a mail fixture without expectations (or the reverse)"
    assert len(on_disk) >= 30


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mail_is_stored_and_read_as_written(name, email_inbox):
    spec = EXPECTED[name]
    raw = (DATA / "email" / name).read_bytes()
    if "dead_letter" in spec:
        with pytest.raises(ApplicationError):
            ingest_raw_email(raw=raw, inbox=email_inbox, source="test")
        assert spec["dead_letter"] in RawInbound.objects.get().error
        return
    result = ingest_raw_email(raw=raw, inbox=email_inbox, source="test")
    message = Message.objects.select_related("identity__customer").get(pk=result.message.pk)
    assert not result.duplicate
    assert message.identity.address == spec["from"]
    if "from_name" in spec:
        assert message.identity.display_name == spec["from_name"]
    if "subject" in spec:
        assert message.subject == spec["subject"]
    if "subject_startswith" in spec:
        assert message.subject.startswith(spec["subject_startswith"])
    if "body_contains" in spec:
        assert spec["body_contains"] in message.body_text
    if spec.get("body_is_blank"):
        assert message.body_text.strip() == ""
    assert "\ufffd" not in message.subject + message.body_text, "replacement characters where a decoding exists"
    assert message.metadata.get("sender_header", "from") == spec.get("sender_header", "from")
    if "sender_original" in spec:
        assert message.metadata["sender_original"] == spec["sender_original"]
    if "message_id" in spec:
        assert message.email_message_id == spec["message_id"]
    names = sorted(a.filename for a in message.attachments.all())
    if "attachments" in spec:
        assert names == sorted(spec["attachments"])
    for wanted in spec.get("attachments_include", []):
        assert wanted in names

    again = ingest_raw_email(raw=raw, inbox=email_inbox, source="test")
    assert again.duplicate and again.message.pk == message.pk

    if message.email_message_id:
        other = (
            f"From: Someone Else <someone.else@other.example>\r\nTo: support@example.com\r\n"
            f"Subject: A different mail\r\nMessage-ID: {message.email_message_id}\r\n\r\nNot the same mail at all.\r\n"
        ).encode()
        reused = ingest_raw_email(raw=other, inbox=email_inbox, source="test")
        assert not reused.duplicate
        assert reused.message.pk != message.pk
        assert reused.message.identity.address == "someone.else@other.example"
        assert reused.message.body_text == "Not the same mail at all."
