import json

import pytest

from channels_app.adapters.email import parse_raw
from channels_app.models import Inbox
from tests import DATA


def _inbox() -> Inbox:
    return Inbox(kind="email", name="Support", config={"address": "support@example.com"})


def _cases():
    expected = json.loads((DATA / "email" / "expected.json").read_text())
    return [
        (name, spec, (DATA / "email" / name).read_bytes())
        for name, spec in sorted(expected.items())
        if name.startswith("django-helpdesk/")
    ]


def test_every_django_helpdesk_message_matches_its_expected_fields():
    cases = _cases()
    assert len(cases) == 6
    for name, spec, raw in cases:
        msg = parse_raw(raw, _inbox())
        where = f"{name}: "
        assert msg.sender.address == spec["from"], where + "sender"
        if "from_name" in spec:
            assert msg.sender.display_name == spec["from_name"], where + "display name"
        if "subject" in spec:
            assert msg.subject == spec["subject"], where + "subject"
        if "subject_startswith" in spec:
            assert msg.subject.startswith(spec["subject_startswith"]), where + repr(msg.subject)
        if "message_id" in spec:
            assert msg.email_message_id == spec["message_id"], where + "message id"
        if "body_contains" in spec:
            assert spec["body_contains"] in msg.text, where + repr(msg.text[:300])
        if spec.get("body_is_blank"):
            assert msg.text.strip() == "", where + repr(msg.text[:200])
        names = [a.filename for a in msg.attachments]
        if "attachments" in spec:
            assert names == spec["attachments"], where + repr(names)
        for wanted in spec.get("attachments_include", []):
            assert wanted in names, where + repr(names)


@pytest.mark.django_db
def test_the_django_helpdesk_mails_ingest_without_dead_letters(email_inbox):
    from channels_app.models import RawInbound
    from channels_app.services import ingest_raw_email

    for name, _spec, raw in _cases():
        result = ingest_raw_email(raw=raw, inbox=email_inbox, source="test")
        assert result.message.pk, name
    assert not RawInbound.objects.filter(status="failed").exists()


def build(headers: str, body: bytes = b"") -> bytes:
    return headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def test_rfc2047_and_rfc2231_filenames():
    raw = build(
        """
From: =?utf-8?q?Zo=C5=BCka?= <zo@example.com>
Subject: =?iso-8859-2?q?Za=BF=F3=B3=E6_g=EA=B6l=B1_ja=BC=F1?=
Message-ID: <a1@x>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=BB
""",
        b"--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhej\r\n"
        b"--BB\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''faktura%20%C5%BC%C3%B3%C5%82ta.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--BB--\r\n",
    )
    msg = parse_raw(raw, _inbox())
    assert msg.sender.display_name == "Zożka"
    assert msg.subject == "Zażółć gęślą jaźń"
    assert [a.filename for a in msg.attachments] == ["faktura żółta.pdf"]
    assert msg.attachments[0].content == b"%PDF-"


def test_unknown_and_wrong_charsets_do_not_crash():
    raw = build(
        """
From: a@example.com
Subject: x
Content-Type: text/plain; charset=x-unknown-charset
Content-Transfer-Encoding: 8bit
""",
        "Cześć — ünïcödé".encode(),
    )
    assert "Cze" in parse_raw(raw, _inbox()).text
    raw = build("From: a@example.com\nSubject: y\nContent-Type: text/plain; charset=us-ascii", "naïve café".encode())
    assert "caf" in parse_raw(raw, _inbox()).text


def test_html_only_and_alternative_and_inline_cid():
    raw = build(
        """
From: a@example.com
Subject: html
Content-Type: multipart/related; boundary=RR
""",
        b"--RR\r\nContent-Type: multipart/alternative; boundary=AA\r\n\r\n"
        b"--AA\r\nContent-Type: text/plain\r\n\r\nPlain version\r\n"
        b'--AA\r\nContent-Type: text/html\r\n\r\n<p>HTML <b>version</b><img src="cid:logo@x"><script>x()</script></p>\r\n--AA--\r\n'
        b"--RR\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--RR--\r\n",
    )
    msg = parse_raw(raw, _inbox())
    assert msg.text == "Plain version"
    assert "version" in msg.html
    [img] = msg.attachments
    assert img.inline
    assert img.content_id == "<logo@x>"
    html_only = build(
        "From: a@example.com\nSubject: h\nContent-Type: text/html; charset=utf-8", b"<div>Hello<br>world</div>"
    )
    assert parse_raw(html_only, _inbox()).html


def test_no_sender_is_a_clear_error():
    with pytest.raises(ValueError, match="no sender"):
        parse_raw(build("Subject: nobody"), _inbox())


def test_empty_body_and_calendar_invite():
    msg = parse_raw(build("From: a@example.com\nSubject: empty"), _inbox())
    assert msg.text == ""
    raw = build(
        "From: a@example.com\nSubject: Invitation\nContent-Type: multipart/mixed; boundary=CC",
        b"--CC\r\nContent-Type: text/plain\r\n\r\nSee invite\r\n--CC\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n--CC--\r\n",
    )
    msg = parse_raw(raw, _inbox())
    assert [a.filename for a in msg.attachments] == ["invite.ics"]
    assert msg.text == "See invite"


def test_forwarded_message_is_an_eml_attachment_and_its_text_is_readable():
    inner = (
        b"From: Billing <billing@shop.example>\r\nTo: anna@example.com\r\nSubject: Your invoice 42\r\n"
        b"Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nMessage-ID: <inv42@shop.example>\r\n"
        b"Content-Type: multipart/alternative; boundary=YY\r\n\r\n"
        b"--YY\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Invoice 42 is <b>overdue</b>.</p>\r\n--YY--\r\n"
    )
    raw = build(
        "From: Anna <anna@example.com>\nSubject: Fwd: invoice\nMessage-ID: <fw1@x>\nContent-Type: multipart/mixed; boundary=XX",
        b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee below.\r\n"
        b"--XX\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + inner + b"--XX--\r\n",
    )
    msg = parse_raw(raw, _inbox())
    [eml] = msg.attachments
    assert (eml.filename, eml.content_type) == ("Your invoice 42.eml", "message/rfc822")
    assert b"Message-ID: <inv42@shop.example>" in eml.content
    assert msg.text.startswith("See below.\n\n---------- Forwarded message ----------\nFrom: Billing")
    assert "Subject: Your invoice 42" in msg.text
    assert "Invoice 42 is overdue." in msg.text  # the HTML-only forwarded body, made readable
    assert "\r" not in msg.text
    assert msg.email_message_id == "<fw1@x>"  # the outer message's id, not the forwarded one's


def test_pgp_signed_mail_keeps_text_and_signature():
    raw = build(
        "From: a@example.com\nSubject: signed\nContent-Type: multipart/signed; micalg=pgp-sha256;"
        ' protocol="application/pgp-signature"; boundary=SS',
        b"--SS\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSigned text\r\n"
        b"--SS\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nabc\r\n"
        b"-----END PGP SIGNATURE-----\r\n--SS--\r\n",
    )
    msg = parse_raw(raw, _inbox())
    assert msg.text == "Signed text"
    assert [a.filename for a in msg.attachments] == ["signature.asc"]


def test_related_image_without_disposition_is_inline():
    raw = build(
        "From: a@example.com\nSubject: r\nContent-Type: multipart/related; boundary=RR",
        b'--RR\r\nContent-Type: text/html\r\n\r\n<img src="cid:p1">\r\n'
        b"--RR\r\nContent-Type: image/gif\r\nContent-ID: <p1>\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n--RR--\r\n",
    )
    [img] = parse_raw(raw, _inbox()).attachments
    assert img.inline and img.content_id == "<p1>" and img.content == b"GIF89a"


@pytest.mark.parametrize(
    "raw",
    [
        # a boundary that never appears, a truncated part, a bad base64 body
        build("From: a@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=NOPE", b"just text\r\n"),
        build("From: a@example.com\nContent-Type: multipart/mixed; boundary=B", b"--B\r\nContent-Type: text/plain\r\n"),
        build(
            "From: a@example.com\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
            b"!!!not base64###",
        ),
        # broken encoded words, an unknown charset in a header, 8-bit garbage in headers
        build("From: =?bogus?q?X?= <a@example.com>\nSubject: =?utf-8?b?!!!?= =?x-unknown?q?abc?="),
        b'From: a@example.com\r\nSubject: \xff\xfe caf\xe9\r\nContent-Type: text/plain; charset=""\r\n\r\n\xc3\x28 bad utf-8\r\n',
        # a forwarded part whose body is empty, and deep nesting
        build(
            "From: a@example.com\nContent-Type: multipart/mixed; boundary=F",
            b"--F\r\nContent-Type: message/rfc822\r\n\r\n--F--\r\n",
        ),
        build(
            "From: a@example.com\nContent-Type: multipart/mixed; boundary=A",
            b"--A\r\nContent-Type: multipart/mixed; boundary=A\r\n\r\n" * 40,
        ),
    ],
)
def test_malformed_mime_never_crashes(raw):
    msg = parse_raw(raw, _inbox())
    assert msg.sender.address == "a@example.com"
    assert isinstance(msg.text, str) and isinstance(msg.subject, str)
