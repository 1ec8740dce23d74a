"""Portal uploads stream to disk with a cap; stored files are private to the service user."""

import os
import stat
import tracemalloc

import pytest
from django.test import Client

from channels_app.services import ingest
from tests.channels_app.factories import email_inbound
from tickets.models import Attachment, Ticket

pytestmark = pytest.mark.django_db

BOUNDARY = "----cxdeskBoundary7MA4YWxkTrZu0gW"


class StreamedMultipart:
    """A multipart body of `size` file bytes produced on the fly (never held whole in memory)."""

    def __init__(self, fields: dict[str, str], filename: str, size: int):
        head = "".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()
        )
        head += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="attachments"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self.parts = [head.encode(), None, f"\r\n--{BOUNDARY}--\r\n".encode()]
        self.file_left = size
        self.length = len(self.parts[0]) + size + len(self.parts[2])
        self.buffer = b""

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and self.parts:
            part = self.parts[0]
            if part is None:
                if self.file_left == 0:
                    self.parts.pop(0)
                    continue
                take = min(self.file_left, 1024 * 1024)
                self.buffer += b"A" * take
                self.file_left -= take
            else:
                self.buffer += self.parts.pop(0)
        if n < 0:
            n = len(self.buffer)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def readline(self, *args):  # not used by the multipart parser, present for the WSGI contract
        return self.read(*args)


@pytest.fixture
def portal(email_inbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        ticket = ingest(email_inbound(email_inbox, address="up@example.com", subject="Uploads")).ticket
    client = Client()
    session = client.session
    session["portal_customer_id"] = ticket.customer_id
    session.save()
    return client, ticket


def _post_streamed(client, path, body: StreamedMultipart):
    return client.generic(
        "POST",
        path,
        **{
            "wsgi.input": body,
            "CONTENT_LENGTH": str(body.length),
            "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )


def test_a_120_mb_upload_is_refused_while_streaming_and_never_held_in_memory(portal, settings):
    client, ticket = portal
    body = StreamedMultipart({"subject": "Big one", "body": "see attached"}, "huge.bin", 120 * 1024 * 1024)
    tracemalloc.start()
    try:
        answer = _post_streamed(client, "/portal/requests/new/", body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"
    assert answer.status_code == 400
    assert "too large" in answer.content.decode()
    assert "huge.bin" in answer.content.decode()
    assert Ticket.objects.count() == 1  # nothing half-written
    assert body.file_left == 0  # the whole body was consumed (discarded), so the answer reaches the customer


def test_an_upload_within_the_limit_is_stored_private(portal, settings):
    client, ticket = portal
    body = StreamedMultipart({"body": "here it is"}, "scan.pdf", 2 * 1024 * 1024)
    answer = _post_streamed(client, f"/portal/requests/{ticket.pk}/", body)
    assert answer.status_code == 302
    att = Attachment.objects.get()
    assert att.size == 2 * 1024 * 1024
    path = att.file.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    directory = os.path.dirname(path)
    while os.path.commonpath([directory, str(settings.MEDIA_ROOT)]) == str(settings.MEDIA_ROOT):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        if directory == str(settings.MEDIA_ROOT):
            break
        directory = os.path.dirname(directory)
