"""The outbox on PostgreSQL: rows written with the change, claimed with a lease, swept,
retried; parked statuses; a storage failure retried; degraded dependencies."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels_app.models import Inbox
from channels_app.services import ingest
from outbox.models import OutboxTask
from outbox.services import claim, enqueue, run, sweep
from tests.channels_app.factories import InboxFactory, email_inbound
from tickets.models import Attachment, Message
from tickets.services import reply

pytestmark = pytest.mark.django_db

SID = "AC0123456789abcdef0123456789abcdef"


@pytest.fixture
def twilio_inbox(settings):
    settings.PUBLIC_URL = "https://example.com"
    return InboxFactory(
        id=3, kind="twilio", name="Twilio",
        config={"account_sid": SID, "phone_number": "+15005550006", "default_region": "PL"},
        transport=Inbox.Transport.LIVE, secrets={"auth_token": "12345"},
    )  # fmt: skip


def _signed_post(client, path, params):
    from twilio.request_validator import RequestValidator

    sig = RequestValidator("12345").compute_signature(f"https://example.com{path}", params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sig)


def test_a_reply_is_an_outbox_row_in_its_transaction_and_a_lease_allows_one_claim(email_inbox, agent, settings):
    ticket = ingest(email_inbound(email_inbox, address="o@example.com")).ticket
    message = reply(ticket=ticket, author=agent, body="hello")  # on_commit never runs here: not dispatched
    task = OutboxTask.objects.get(kind="send_message", object_id=message.pk)
    assert task.status == "pending" and task.attempts == 0
    assert claim(task.pk) is not None
    assert claim(task.pk) is None, "a live lease excludes a second claim"
    OutboxTask.objects.filter(pk=task.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert claim(task.pk).attempts == 2, "an expired lease (a dead worker) can be claimed again"


def test_the_sweeper_runs_what_the_broker_lost_once(email_inbox, agent, mailoutbox, settings):
    settings.CXDESK_OUTBOX_REDISPATCH_SECONDS = 0
    ticket = ingest(email_inbound(email_inbox, address="s@example.com")).ticket
    message = reply(ticket=ticket, author=agent, body="lost by the broker")  # never dispatched
    mailoutbox.clear()
    OutboxTask.objects.update(dispatched_at=timezone.now() - timedelta(seconds=5))
    for _ in range(5):  # eager: each sweep dispatches and runs inline (the ack, then its send)
        if not sweep()["due"]:
            break
    message.refresh_from_db()
    assert message.status == "sent"
    assert [m.body for m in mailoutbox].count("lost by the broker") == 1
    assert run(OutboxTask.objects.get(kind="send_message", object_id=message.pk).pk) == "skipped"
    assert sweep()["due"] == 0
    assert [m.body for m in mailoutbox].count("lost by the broker") == 1, "nothing doubled"
    assert not OutboxTask.objects.exclude(status="done").exists(), "the backlog drained"


def test_an_unexpected_send_error_fails_the_message_with_its_reason(
    email_inbox, agent, monkeypatch, django_capture_on_commit_callbacks
):
    from channels_app.adapters.email import EmailAdapter

    def boom(self, out):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(EmailAdapter, "deliver", boom)
    ticket = ingest(email_inbound(email_inbox, address="u@example.com")).ticket
    with django_capture_on_commit_callbacks(execute=True):
        message = reply(ticket=ticket, author=agent, body="x")
    message.refresh_from_db()
    assert message.status == "failed" and "RuntimeError: template exploded" in message.error
    assert OutboxTask.objects.get(kind="send_message", object_id=message.pk).status == "done"


def test_a_message_left_sending_by_a_dead_worker_is_taken_over_after_the_lease(
    email_inbox, agent, mailoutbox, settings
):
    from channels_app.outbound import Retry, send_stored_message

    settings.CXDESK_OUTBOX_LEASE = 60
    ticket = ingest(email_inbound(email_inbox, address="d@example.com")).ticket
    message = reply(ticket=ticket, author=agent, body="once")
    Message.objects.filter(pk=message.pk).update(status="sending", email_message_id="<fixed@x>", attempts=1)
    mailoutbox.clear()
    with pytest.raises(Retry):
        send_stored_message(message.pk)  # a live worker may still hold it
    Message.objects.filter(pk=message.pk).update(updated_at=timezone.now() - timedelta(seconds=61))
    assert send_stored_message(message.pk) == "sent"
    assert [m.extra_headers.get("Message-ID") or m.message()["Message-ID"] for m in mailoutbox] == ["<fixed@x>"]


def test_a_status_before_its_message_is_parked_then_applied(client, twilio_inbox, agent, settings):
    settings.CXDESK_STATUS_PARK_RETRY_SECONDS = 30
    params = {"MessageSid": "SMearly", "MessageStatus": "delivered", "AccountSid": SID, "To": "+48600100200"}
    assert _signed_post(client, "/hooks/twilio/3/status/", params).status_code == 200
    parked = OutboxTask.objects.get(kind="apply_status", ref="SMearly")
    assert parked.status == "pending" and parked.payload["status"] == "delivered"
    p = {
        "MessageSid": "SM1",
        "From": "+48600100200",
        "To": "+15005550006",
        "Body": "hi",
        "NumMedia": "0",
        "AccountSid": SID,
    }
    assert _signed_post(client, "/hooks/twilio/3/", p).status_code == 200
    ticket = Message.objects.get(provider_message_id="SM1").ticket
    with responses.RequestsMock() as mock:
        mock.post(
            f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json", json={"sid": "SMearly"}, status=201
        )
        message = reply(ticket=ticket, author=agent, body="thanks")
        run(OutboxTask.objects.get(kind="send_message", object_id=message.pk).pk)
    message.refresh_from_db()
    assert message.provider_message_id == "SMearly"
    # release() made the parked row due; the sweeper (or its dispatch) applies it
    assert run(parked.pk) == "done"
    message.refresh_from_db()
    assert message.status == "delivered" and message.delivered_at is not None
    # a late "sent" never moves it back
    late = dict(params, MessageStatus="sent")
    assert _signed_post(client, "/hooks/twilio/3/status/", late).status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"


def test_a_parked_status_gives_up_after_its_window(twilio_inbox, settings):
    from channels_app.services import status_apply
    from channels_app.types import StatusUpdate

    settings.CXDESK_STATUS_PARK_RETRY_SECONDS = 0
    settings.CXDESK_STATUS_PARK_SECONDS = 60
    status_apply(inbox=twilio_inbox, update=StatusUpdate(provider_message_id="SMnever", status="delivered"))
    task = OutboxTask.objects.get(kind="apply_status")
    assert run(task.pk) == "retry"
    OutboxTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert run(task.pk) == "done"
    task.refresh_from_db()
    assert task.result == "expired"


def test_a_media_fetch_that_fails_on_our_side_is_retried(client, twilio_inbox, monkeypatch, settings):
    from django.core.files.storage import default_storage

    settings.CXDESK_OUTBOX_RETRY_BASE = 30
    url = "https://api.twilio.com/2010-04-01/Accounts/x/Messages/MM1/Media/ME1"
    p = {"MessageSid": "MM1", "From": "+48600100200", "To": "+15005550006", "Body": "", "NumMedia": "1",
         "MediaUrl0": url, "MediaContentType0": "image/jpeg", "AccountSid": SID}  # fmt: skip
    assert _signed_post(client, "/hooks/twilio/3/", p).status_code == 200
    task = OutboxTask.objects.get(kind="fetch_media")
    real_save = default_storage.save

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(default_storage, "save", full_disk)
    with responses.RequestsMock() as mock:
        mock.get(url, body=b"\xff\xd8jpeg", content_type="image/jpeg")
        assert run(task.pk) == "retry"
        task.refresh_from_db()
        assert "No space left" in task.last_error and task.status == "pending"
        monkeypatch.setattr(default_storage, "save", real_save)
        assert run(task.pk) == "skipped", "not due yet"
        OutboxTask.objects.filter(pk=task.pk).update(next_attempt_at=timezone.now())
        assert run(task.pk) == "done"
    att = Attachment.objects.get()
    assert att.sha256 and att.file.read() == b"\xff\xd8jpeg"


def test_an_enqueue_failure_after_commit_is_swallowed(api_client_and_ticket, monkeypatch):
    from outbox.tasks import run_outbox_task

    client, ticket = api_client_and_ticket

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(run_outbox_task, "apply_async", broker_down)
    response = client.post(f"/api/v1/tickets/{ticket.pk}/messages/", {"body": "still 201"}, format="json")
    assert response.status_code == 201
    assert OutboxTask.objects.filter(kind="send_message", object_id=response.json()["id"], status="pending").exists()


def test_the_api_and_presence_degrade_when_the_cache_is_down(api_client_and_ticket, settings):
    from django.core.cache import caches

    from tickets.presence import presence_list, presence_touch

    settings.CACHES = {"default": {"BACKEND": "cxdesk.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    caches._settings = caches.settings = caches.configure_settings(None)  # the new CACHES
    try:
        del caches._connections.default
    except AttributeError:
        pass
    client, ticket = api_client_and_ticket
    assert client.get(f"/api/v1/tickets/{ticket.pk}/").status_code == 200
    presence_touch(ticket_id=ticket.pk, channel="c1", user_id=1, name="Ana")
    assert presence_list(ticket_id=ticket.pk) == []


@pytest.fixture
def api_client_and_ticket(email_inbox, agent):
    from rest_framework.test import APIClient

    from integrations.services import api_key_create

    _, key = api_key_create(user=agent, name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    ticket = ingest(email_inbound(email_inbox, address="api@example.com")).ticket
    return client, ticket


def test_enqueue_refuses_an_unknown_kind():
    with pytest.raises(LookupError):
        enqueue("no_such_kind", object_id=1)


def test_out_of_order_whatsapp_is_ordered_by_the_providers_time():
    from channels_app.models import Channel
    from tests.channels_app.factories import inbound
    from tickets.selectors import ticket_timeline_items

    wa = InboxFactory(kind="twilio", name="WA", config={"default_region": "PL"})
    sent_first = timezone.now() - timedelta(minutes=5)
    # the second message overtakes the first on the way to us
    later = ingest(inbound(wa, channel=Channel.WHATSAPP, text="second", received_at=sent_first + timedelta(seconds=30)))
    earlier = ingest(inbound(wa, channel=Channel.WHATSAPP, text="first", received_at=sent_first))
    assert earlier.ticket.pk == later.ticket.pk
    # same provider second: arrival order decides; a timestamp from the future is clamped to arrival
    same = ingest(inbound(wa, channel=Channel.WHATSAPP, text="third", received_at=sent_first + timedelta(seconds=30)))
    future = ingest(
        inbound(wa, channel=Channel.WHATSAPP, text="fourth", received_at=timezone.now() + timedelta(days=1))
    )
    texts = [m.body_text for kind, m in ticket_timeline_items(ticket=earlier.ticket) if kind == "message"]
    assert texts == ["first", "second", "third", "fourth"]
    assert future.message.timeline_at <= future.message.created_at
    assert same.message.pk > later.message.pk


def test_embedded_mode_sweeps_on_the_next_write(email_inbox, agent, settings, django_capture_on_commit_callbacks):
    from outbox import services

    settings.CXDESK_OUTBOX_EAGER_SWEEP = True
    settings.CXDESK_OUTBOX_REDISPATCH_SECONDS = 0
    services._last_embedded_sweep = 0.0
    ticket = ingest(email_inbound(email_inbox, address="e@example.com")).ticket
    waiting = reply(ticket=ticket, author=agent, body="left behind")  # its dispatch never happened
    OutboxTask.objects.update(dispatched_at=timezone.now() - timedelta(seconds=5))
    with django_capture_on_commit_callbacks(execute=True):
        reply(ticket=ticket, author=agent, body="the next write")
    waiting.refresh_from_db()
    assert waiting.status == "sent"


def test_a_batch_writes_its_rows_in_one_insert_and_drops_those_of_a_rolled_back_savepoint(
    django_capture_on_commit_callbacks, monkeypatch
):
    """`outbox.services.batch`: the rows enqueued in it are written as it ends, in one
    statement; a row enqueued in a savepoint that was rolled back is not written; rows of
    the kinds it runs are run here after the commit, the others go to Celery after it."""
    from django.db import transaction

    from outbox.services import batch

    ran, sent = [], []
    monkeypatch.setattr("routing.tasks.route_many_handler", lambda tasks: ran.append(len(tasks)) or {})
    monkeypatch.setattr("routing.tasks.route_handler", lambda task: ran.append(task.object_id))
    monkeypatch.setattr("outbox.services.dispatch", lambda tasks, **kw: sent.extend(t.kind for t in tasks))
    with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=True):
        with batch():
            enqueue("route", object_id=1, payload={"trigger": "ticket_created"})
            enqueue("send_survey", object_id=7)
            try:
                with transaction.atomic():
                    enqueue("route", object_id=2, payload={"trigger": "ticket_created"})
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            assert not OutboxTask.objects.exists(), "nothing written before the batch ends"
    inserts = [q for q in ctx.captured_queries if q["sql"].startswith('INSERT INTO "outbox_outboxtask"')]
    assert len(inserts) == 1
    assert sorted(OutboxTask.objects.values_list("kind", "object_id")) == [("route", 1), ("send_survey", 7)]
    assert ran == [1] and sent == ["send_survey"]
    route = OutboxTask.objects.get(kind="route")
    assert route.status == "done" and route.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_task_run_by_a_batchs_commit_hook_writes_its_own_rows(monkeypatch, caplog):
    """A row a batch hands to Celery after its commit may run at once (eager in `make run`);
    what that task enqueues in its own transaction is written then, not left for the batch's
    flush, which is over."""
    import logging

    from django.db import transaction

    from outbox.services import batch

    def eager(tasks, **kwargs):
        for task in tasks:
            if task.object_id < 100:  # the first task's run enqueues one more
                with transaction.atomic():
                    enqueue("send_survey", object_id=task.object_id + 100)

    monkeypatch.setattr("outbox.services.dispatch", eager)
    with caplog.at_level(logging.ERROR, logger="outbox.services"), batch():  # a real commit: hooks run in it
        enqueue("send_survey", object_id=1)
    assert "not flushed" not in caplog.text
    assert sorted(OutboxTask.objects.values_list("object_id", flat=True)) == [1, 101]


def test_a_batch_settles_its_before_commit_kinds_in_the_transaction(django_capture_on_commit_callbacks, monkeypatch):
    """`batch(before_commit=…)`: those rows run inside the transaction, with the instance the
    enqueuer holds, and are never written; a handler that fails there takes back what it
    wrote (its savepoint), and its rows are written and run after the commit as usual."""
    from django.db import transaction

    from customers.models import Customer
    from outbox.services import batch

    seen, after = [], []

    def settle(tasks):
        with transaction.atomic():  # all or nothing, as a `many` handler must be
            seen.append([(t.object_id, t.instance) for t in tasks])
            Customer.objects.create(name=f"written by the handler {len(seen)}")
            if len(seen) == 2:
                raise RuntimeError("the handler fails")
        return {}

    monkeypatch.setattr("routing.tasks.route_many_handler", settle)
    monkeypatch.setattr("outbox.services._run", lambda tasks: after.extend((t.object_id, t.instance) for t in tasks))
    marker = object()
    with django_capture_on_commit_callbacks(execute=True), batch(before_commit=("route",)):
        enqueue("route", object_id=1, payload={"trigger": "ticket_created"}, instance=marker)
        enqueue("send_survey", object_id=7)
    assert seen == [[(1, marker)]]
    assert list(OutboxTask.objects.values_list("kind", flat=True)) == ["send_survey"], "settled: no row"
    assert after == []
    assert Customer.objects.filter(name="written by the handler 1").exists()

    with django_capture_on_commit_callbacks(execute=True), batch(before_commit=("route",)):
        enqueue("route", object_id=2, payload={"trigger": "ticket_created"}, instance=marker)
    assert seen[1] == [(2, marker)]
    assert not Customer.objects.filter(name="written by the handler 2").exists(), "its savepoint rolled back"
    assert OutboxTask.objects.filter(kind="route", object_id=2).exists(), "written after all"
    assert after == [(2, None)], "run after the commit, reading the ticket back (no instance)"
