"""CXDESK_WEBHOOKS=queued: a provider webhook is answered once its raw delivery is stored;
a worker (here: the outbox task, run eagerly at commit) ingests it with the same
idempotency as the inline path."""

import pytest

from channels_app.models import RawInbound
from outbox.models import OutboxTask
from tests.channels_app.test_twilio import _signed, _sms, post
from tickets.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(settings):
    settings.CXDESK_WEBHOOKS = "queued"


def test_answered_after_one_durable_write_and_ingested_by_the_worker(
    client, twilio_inbox, queued, django_capture_on_commit_callbacks
):
    params = _sms("Where is my parcel?", "SMq1")
    with django_capture_on_commit_callbacks(execute=False) as pending:
        answer = post(client, "/hooks/twilio/3/", params, _signed(params))
    assert answer.status_code == 200 and b"<Response/>" in answer.content
    record = RawInbound.objects.get()
    assert record.source == "webhook" and record.status == RawInbound.Status.PENDING
    assert OutboxTask.objects.filter(kind="webhook_process", object_id=record.pk).exists()
    assert not Message.objects.exists(), "acknowledged before it is ingested"
    for callback in pending:  # the commit: the outbox hands the row to the worker
        callback()
    message = Message.objects.get()
    assert message.body_text == "Where is my parcel?" and message.provider_message_id == "SMq1"
    record.refresh_from_db()
    assert record.status == RawInbound.Status.PROCESSED and record.message_id == message.pk


def test_a_duplicate_delivery_is_still_one_message(client, twilio_inbox, queued, django_capture_on_commit_callbacks):
    params = _sms("hello", "SMq2")
    with django_capture_on_commit_callbacks(execute=True):
        post(client, "/hooks/twilio/3/", params, _signed(params))
        post(client, "/hooks/twilio/3/", params, _signed(params))
    assert Message.objects.filter(provider_message_id="SMq2").count() == 1
    message = Message.objects.get(provider_message_id="SMq2")
    assert [(r.status, r.message_id) for r in RawInbound.objects.order_by("pk")] == [
        ("processed", message.pk),
        ("processed", message.pk),
    ], "the repeat is done too, not a pending row forever"


def test_forged_or_malformed_deliveries_store_nothing(client, twilio_inbox, queued):
    params = _sms("hello", "SMq3")
    assert post(client, "/hooks/twilio/3/", params, "forged").status_code == 403
    broken = {"From": "+48600100200", "Body": "no MessageSid"}
    assert post(client, "/hooks/twilio/3/", broken, _signed(broken)).status_code == 400
    assert not RawInbound.objects.exists() and not OutboxTask.objects.exists()


def test_a_delivery_that_cannot_be_ingested_is_a_dead_letter(
    client, twilio_inbox, queued, django_capture_on_commit_callbacks
):
    params = _sms("hi", "SMq4", sender="not a phone number")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 200
    record = RawInbound.objects.get()
    assert record.status == RawInbound.Status.FAILED and record.error
    assert not Message.objects.exists()


def test_a_failed_delivery_is_taken_again_from_the_dead_letters(twilio_inbox):
    """Kept as received (say it failed during a database outage): the desk's retry ingests it."""
    import zlib
    from urllib.parse import urlencode

    from channels_app.services import raw_inbound_retry

    body = urlencode(_sms("parcel?", "SMq5")).encode()
    record = RawInbound.objects.create(
        inbox=twilio_inbox,
        source="webhook",
        content_type="application/x-www-form-urlencoded",
        payload=zlib.compress(body),
        sha256="x",
        status=RawInbound.Status.FAILED,
        error="OperationalError: the database went away",
    )
    result = raw_inbound_retry(record=record)
    assert result.message.body_text == "parcel?"
    record.refresh_from_db()
    assert record.status == RawInbound.Status.PROCESSED and record.message_id == result.message.pk
