"""CXDESK_WEBHOOKS=queued: a provider webhook is answered once its raw delivery is stored
(one INSERT); a drainer (channels_app/webhook_queue.py, the Celery task run eagerly here)
ingests pending deliveries in batches with the same idempotency as the inline path."""

import logging
import time
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app import webhook_queue
from channels_app.models import Inbox, RawInbound
from outbox.models import OutboxTask
from tests.channels_app.test_twilio import SID, _signed, _sms, post
from tickets.models import Message, Team, Ticket

pytestmark = pytest.mark.django_db


def _free_slots():
    cache.delete_many([webhook_queue.SLOT_KEY.format(slot) for slot in range(8)])


@pytest.fixture
def queued(settings):
    settings.CXDESK_WEBHOOKS = "queued"
    settings.CXDESK_WEBHOOK_DRAINERS = 1
    _free_slots()
    webhook_queue._held_at.clear()
    yield
    _free_slots()
    webhook_queue._held_at.clear()


def test_answered_after_one_durable_write_and_ingested_by_the_drainer(
    client, twilio_inbox, queued, django_capture_on_commit_callbacks
):
    params = _sms("Where is my parcel?", "SMq1")
    with CaptureQueriesContext(connection) as ctx, django_capture_on_commit_callbacks(execute=False) as pending:
        answer = post(client, "/hooks/twilio/3/", params, _signed(params), HTTP_X_REQUEST_ID="req-parcel-0001")
    assert answer.status_code == 200 and b"<Response/>" in answer.content
    writes = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SELECT", "SAVEPOINT", "RELEASE"))]
    assert len(writes) == 1 and writes[0].startswith("INSERT INTO channels_app_rawinbound "), writes
    record = RawInbound.objects.get()
    assert record.source == "webhook" and record.status == RawInbound.Status.PENDING
    assert record.request_id == "req-parcel-0001"
    assert not OutboxTask.objects.exists(), "no task row per delivery: the pending row is the queue"
    assert not Message.objects.exists(), "acknowledged before it is ingested"
    for callback in pending:  # the wake-up: a drainer takes the pending rows
        callback()
    message = Message.objects.get()
    assert message.body_text == "Where is my parcel?" and message.provider_message_id == "SMq1"
    record.refresh_from_db()
    assert record.status == RawInbound.Status.PROCESSED and record.message_id == message.pk
    assert cache.get(webhook_queue.SLOT_KEY.format(0)) is None, "the drainer gave its slot back"


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


def _store(client, body, sid, sender="+48600100200"):
    params = _sms(body, sid, sender=sender)
    assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 200


def test_a_delivery_that_arrives_while_the_slot_is_held_is_taken_by_its_holder(
    client, twilio_inbox, queued, monkeypatch, django_capture_on_commit_callbacks
):
    """The wake-up protocol: an acknowledgement that finds the slot taken queues nothing; the
    drainer holding it gives it back and then looks once more, so the row is not left behind."""
    woken = []
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: woken.append(slot))
    assert cache.add(webhook_queue.SLOT_KEY.format(0), 1, 60)  # a drainer is at work
    with django_capture_on_commit_callbacks(execute=True):
        _store(client, "first", "SMs1")
    assert woken == [] and RawInbound.objects.filter(status="pending").count() == 1
    assert webhook_queue.drain(slot=0) == 1
    assert Message.objects.get().body_text == "first"
    assert cache.get(webhook_queue.SLOT_KEY.format(0)) is None
    with django_capture_on_commit_callbacks(execute=True):
        _store(client, "second", "SMs2")  # the slot is free again: this one wakes a drainer
    assert woken == [0]


def test_an_acknowledgement_that_just_found_the_slot_held_asks_nothing_and_its_row_is_still_drained(
    client, twilio_inbox, queued, monkeypatch, django_capture_on_commit_callbacks
):
    """Under a flood most acknowledgements skip the cache: one that found the slot held less
    than GRACE_SECONDS ago does not ask again. Its row is safe because the holder, after
    giving the slot back, looks twice, GRACE_SECONDS apart: a row committed between the two
    looks (by an acknowledgement that skipped) is drained, with no drainer queued for it."""
    woken, asked = [], []
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: woken.append(slot))
    real_add = cache.add

    class Counting:
        def __getattr__(self, name):
            return getattr(cache, name)

        def add(self, key, *args, **kwargs):
            asked.append(key)
            return real_add(key, *args, **kwargs)

    monkeypatch.setattr(webhook_queue, "cache", Counting())
    assert cache.add(webhook_queue.SLOT_KEY.format(0), 1, 60)  # a drainer is at work
    with django_capture_on_commit_callbacks(execute=True):
        _store(client, "first", "SMg1")  # finds the slot held
    with django_capture_on_commit_callbacks(execute=True):
        _store(client, "second", "SMg2")  # a moment later: asks nothing
    assert woken == [] and len(asked) == 1

    looks = []
    real_look = webhook_queue._unclaimed_left

    def look(slot):
        found = real_look(slot)
        looks.append(found)
        if len(looks) == 1:  # just after the holder's first look: an acknowledgement that skipped
            webhook_queue._held_at[0] = time.monotonic()
            with django_capture_on_commit_callbacks(execute=True):
                _store(client, "third", "SMg3")
        return found

    monkeypatch.setattr(webhook_queue, "_unclaimed_left", look)
    assert webhook_queue.drain(slot=0) == 3
    assert woken == [] and looks[:2] == [False, True]
    assert sorted(Message.objects.values_list("body_text", flat=True)) == ["first", "second", "third"]


def test_a_batch_survives_a_delivery_that_breaks(client, twilio_inbox, queued, monkeypatch, caplog):
    """An unexpected error in one delivery makes it a dead letter; the rest of the batch is stored."""
    from channels_app.adapters.twilio import TwilioAdapter

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    for k in range(3):
        _store(client, f"message {k}", f"SMb{k}", sender=f"+4860010030{k}")
    parse = TwilioAdapter.parse

    def breaking(self, request, inbox):
        items = parse(self, request, inbox)
        if items and items[0].text == "message 1":
            raise RuntimeError("a bug met this one")
        return items

    monkeypatch.setattr(TwilioAdapter, "parse", breaking)
    with caplog.at_level(logging.ERROR):
        assert webhook_queue.drain() == 2
    assert sorted(Message.objects.values_list("body_text", flat=True)) == ["message 0", "message 2"]
    failed = RawInbound.objects.get(status=RawInbound.Status.FAILED)
    assert "RuntimeError: a bug met this one" in failed.error
    assert RawInbound.objects.filter(status=RawInbound.Status.PROCESSED).count() == 2


def test_a_repeat_inside_a_batch_is_taken_again_one_by_one_and_stays_one_message(
    client, twilio_inbox, queued, monkeypatch, caplog
):
    """A batch has no savepoint per delivery: the provider's retry of a message in the same
    batch rolls the batch back, and the drainer takes its deliveries again one at a time —
    every message once, every delivery processed, the repeat pointing at the message."""
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "first", "SMd1", sender="+48600100501")
    _store(client, "first", "SMd1", sender="+48600100501")  # Twilio's retry
    _store(client, "second", "SMd2", sender="+48600100502")
    with caplog.at_level(logging.INFO, logger="channels_app.webhook_queue"):
        assert webhook_queue.drain() == 2
    assert "taking them one at a time" in caplog.text
    first = Message.objects.get(provider_message_id="SMd1")
    assert Message.objects.count() == 2 and Ticket.objects.count() == 2
    assert [(r.status, r.message_id) for r in RawInbound.objects.order_by("pk")][:2] == [
        ("processed", first.pk),
        ("processed", first.pk),
    ]
    assert RawInbound.objects.filter(status=RawInbound.Status.PROCESSED).count() == 3


def test_a_delivery_that_breaks_after_writing_leaves_nothing_half_written(
    client, twilio_inbox, queued, monkeypatch, caplog
):
    """Past parsing, an error rolls the whole batch back (nothing of it stays) and each
    delivery is taken alone: the broken one is a dead letter with no customer or ticket of
    its own, the others are stored."""
    from customers.models import Identity
    from tickets import services as ticket_services

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    for k in range(3):
        _store(client, f"message {k}", f"SMh{k}", sender=f"+4860010060{k}")
    receive = ticket_services.message_receive

    def breaking(**kwargs):
        received = receive(**kwargs)  # the customer, identity, ticket and message are written
        if kwargs["body_text"] == "message 1":
            raise RuntimeError("a bug after the writes")
        return received

    monkeypatch.setattr("channels_app.services.message_receive", breaking)
    with caplog.at_level(logging.ERROR):
        assert webhook_queue.drain() == 2
    assert sorted(Message.objects.values_list("body_text", flat=True)) == ["message 0", "message 2"]
    assert not Identity.objects.filter(address="+48600100601").exists(), "rolled back with its delivery"
    assert Ticket.objects.count() == 2
    failed = RawInbound.objects.get(status=RawInbound.Status.FAILED)
    assert "a bug after the writes" in failed.error


def test_the_batch_routes_its_new_tickets_itself(client, twilio_inbox, queued, monkeypatch):
    """The batch routes its tickets before it commits, in its own transaction (on the tickets
    it created; those it continued it holds locked): no routing row written, claimed, run
    after the commit or sent to Celery."""
    team = Team.objects.create(name="Support", is_default=True)
    sent = []
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    monkeypatch.setattr("outbox.services.dispatch", lambda tasks, **kw: sent.extend(t.kind for t in tasks))
    for k in range(3):
        _store(client, f"hello {k}", f"SMr{k}", sender=f"+4860010040{k}")
    with CaptureQueriesContext(connection) as ctx:
        assert webhook_queue.drain() == 3
    assert "route" not in sent
    assert set(Ticket.objects.values_list("team_id", flat=True)) == {team.pk}
    assert not OutboxTask.objects.filter(kind="route").exists(), "routed before the commit: no row"
    statements = [q["sql"] for q in ctx.captured_queries]
    assert not [q for q in statements if 'outbox_outboxtask"' in q or "outbox_outboxtask " in q], "no outbox row"
    # No savepoint per delivery: the two seen are the batch's transaction and its routing's,
    # savepoints here only because the test runs inside a transaction of its own.
    assert len([q for q in statements if q.startswith("SAVEPOINT")]) == 2
    # What a new conversation costs in a batch: 1 statement, giving it the default team (the
    # update); everything else once per batch: the claim of the deliveries, the senders' turns
    # (an advisory lock each, one statement), their senders, the new customers and
    # identities, the open tickets, ids drawn ahead, the tickets, messages
    # and timeline events (one INSERT each), the deliveries marked processed, the routing's
    # events, and the configuration, read once here (webhook subscriptions, SLA policies,
    # routing rules, the default team, which inboxes have a routing config) and kept by the
    # process after (`cxdesk.memo.kept`).
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")
    sql = [q for q in statements if not q.startswith(control)]
    # (Elsewhere than on PostgreSQL, `rows_batched` writes as it goes: each conversation's
    # ticket and message one by one, not one INSERT per table for the batch.)
    bound = 3 * 1 + 17 if connection.vendor == "postgresql" else 3 * 3 + 14
    assert len(sql) <= bound, "\n".join(sql)


def test_a_lost_wake_up_is_caught_by_the_sweep(client, twilio_inbox, queued, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)  # the broker was down
    _store(client, "still here", "SMl1")
    monkeypatch.undo()
    assert webhook_queue.drain_stale() == 0, "not stale yet: a wake-up may be on its way"
    assert webhook_queue.drain_stale(now=timezone.now() + timedelta(minutes=1)) == 1
    assert Message.objects.get().body_text == "still here"


def test_the_drainer_logs_each_delivery_with_the_request_that_stored_it(
    client, twilio_inbox, queued, monkeypatch, caplog
):
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    params = _sms("trace me", "SMt1")
    post(client, "/hooks/twilio/3/", params, _signed(params), HTTP_X_REQUEST_ID="req-trace-0001")
    from cxdesk.observability import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())  # as the console handler in settings.LOGGING
    with caplog.at_level(logging.INFO, logger="cxdesk.tasks"):
        webhook_queue.drain()
    lines = [r for r in caplog.records if r.name == "cxdesk.tasks"]
    assert [r.request_id for r in lines] == ["req-trace-0001"]


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


def test_a_long_flood_is_handed_to_a_fresh_task_with_the_slot(client, twilio_inbox, queued, monkeypatch):
    """A drainer stops after DRAIN_SECONDS (well inside Celery's time limit) and queues its
    successor for the same slot, which it keeps; nothing pending is dropped."""
    woken = []
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: woken.append(slot))
    for k in range(3):
        _store(client, f"flood {k}", f"SMf{k}", sender=f"+4860010050{k}")
    monkeypatch.setattr(webhook_queue, "DRAIN_SECONDS", -1)  # already past its time
    assert cache.add(webhook_queue.SLOT_KEY.format(0), 1, 60)
    assert webhook_queue.drain(slot=0, batch=2) == 2
    assert woken == [0] and cache.get(webhook_queue.SLOT_KEY.format(0)) is not None
    assert RawInbound.objects.filter(status=RawInbound.Status.PENDING).count() == 1
    monkeypatch.setattr(webhook_queue, "DRAIN_SECONDS", 60)  # the successor's own time
    assert webhook_queue.drain(slot=0, batch=2) == 1  # takes the rest, looks again, gives the slot back
    assert cache.get(webhook_queue.SLOT_KEY.format(0)) is None and woken == [0]


def test_a_drainer_holding_a_slot_waits_briefly_after_a_short_batch_for_more(client, twilio_inbox, queued, monkeypatch):
    """Deliveries arriving fewer than a batch at a time: the slot's holder takes what is
    there, waits LINGER_SECONDS and takes what came meanwhile, instead of giving the slot
    back after every short batch (and being woken again through the broker)."""
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "early", "SMl1", sender="+48600100701")
    sleeps = []

    def meanwhile(seconds):  # a delivery comes while the drainer waits
        sleeps.append(seconds)
        if len(sleeps) == 1:
            _store(client, "meanwhile", "SMl2", sender="+48600100702")

    monkeypatch.setattr(webhook_queue.time, "sleep", meanwhile)
    assert cache.add(webhook_queue.SLOT_KEY.format(0), 1, 60)
    assert webhook_queue.drain(slot=0, batch=5) == 2
    linger, grace = webhook_queue.LINGER_SECONDS, webhook_queue.GRACE_SECONDS
    assert sleeps == [linger, linger, grace], "one wait per short batch, none after an empty one; the last look's"
    assert cache.get(webhook_queue.SLOT_KEY.format(0)) is None


def test_a_batch_chosen_as_a_deadlock_victim_is_taken_again(client, twilio_inbox, queued, monkeypatch):
    import psycopg
    from django.db import OperationalError

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "after the deadlock", "SMd1")
    real = webhook_queue._drain_batch
    calls = []

    def once_a_victim(batch, slot):
        calls.append(batch)
        if len(calls) == 1:
            error = OperationalError("deadlock detected")
            error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")
            raise error
        return real(batch, slot)

    monkeypatch.setattr(webhook_queue, "_drain_batch", once_a_victim)
    assert webhook_queue.drain() == 1 and len(calls) == 2
    assert Message.objects.get().body_text == "after the deadlock"


def test_a_database_outage_gives_the_slot_back_and_raises(client, twilio_inbox, queued, monkeypatch):
    from django.db import OperationalError

    def down(batch, slot):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(webhook_queue, "_drain_batch", down)
    assert cache.add(webhook_queue.SLOT_KEY.format(0), 1, 60)
    with pytest.raises(OperationalError):
        webhook_queue.drain(slot=0)
    assert cache.get(webhook_queue.SLOT_KEY.format(0)) is None, "the next delivery can wake a drainer"


def test_the_webhook_inbox_is_remembered_briefly_and_forgotten_when_saved(client, twilio_inbox, queued, monkeypatch):
    """A flood asks for the same inbox every time: each process remembers it a few seconds.
    A change saved in this process counts at once; one made elsewhere (here an UPDATE that
    sends no signal) counts once the memory is older than WEBHOOK_INBOX_SECONDS."""
    from channels_app import selectors

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    params = _sms("one", "SMm1")
    assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        params = _sms("two", "SMm2")
        assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 200
    assert not [q for q in ctx.captured_queries if "channels_app_inbox" in q["sql"]], "remembered"

    twilio_inbox.is_active = False
    twilio_inbox.save()  # in this process: forgotten at once
    params = _sms("three", "SMm3")
    assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 404

    Inbox.objects.filter(pk=twilio_inbox.pk).update(is_active=True)  # "elsewhere": no signal here
    params = _sms("four", "SMm4")
    assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 404, "still remembered"
    monkeypatch.setattr(selectors, "WEBHOOK_INBOX_SECONDS", 0.0)
    assert post(client, "/hooks/twilio/3/", params, _signed(params)).status_code == 200


def test_a_batch_costs_the_same_statements_whatever_its_messages(client, twilio_inbox, queued, monkeypatch):
    """Ten deliveries in one batch — five numbers writing again, five new ones — cost no
    statement of their own: the batch claims them, takes its turn on their senders, reads
    their senders and customers,
    creates the new ones' customers and identities, reads and locks the senders' open
    tickets, draws the new tickets' and the messages' ids, asks the settings once (webhook
    subscriptions, SLA policies, routing rules), writes the new tickets, the messages, the
    tickets' activity, the timeline events, the processed marks and the outbox rows in one
    statement each, and routes them (read, rules, default team, rows done)."""
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    for k in range(5):
        _store(client, f"hello {k}", f"SMs{k}", sender=f"+4860010080{k}")
    assert webhook_queue.drain() == 5  # their customers and tickets exist now
    for k in range(5):
        _store(client, f"hello again {k}", f"SMs{k}b", sender=f"+4860010080{k}")
    for k in range(5, 10):
        _store(client, f"hello {k}", f"SMs{k}", sender=f"+4860010080{k}")
    with CaptureQueriesContext(connection) as ctx:
        assert webhook_queue.drain() == 10
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")
    sql = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(control)]
    assert len(sql) <= 20, "\n".join(sql)
    assert len([q for q in sql if q.startswith('INSERT INTO "tickets_message"')]) == 1
    assert len([q for q in sql if q.startswith('INSERT INTO "tickets_ticket"')]) == 1
    assert Ticket.objects.count() == 10 and Message.objects.count() == 15


@pytest.mark.django_db(transaction=True)
def _other_connection():
    """A second connection to the test database: another drainer, another process."""
    import psycopg

    db = connection.settings_dict
    return psycopg.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432)


def _customer_created_by(other, phone: str) -> int:
    """What another writer's ingest creates for a new number: a customer and its identity."""
    customer_id = other.execute(
        "INSERT INTO customers_customer (name, attributes, language, created_at, updated_at) "
        "VALUES ('', '{}', '', now(), now()) RETURNING id"
    ).fetchone()[0]
    other.execute(
        "INSERT INTO customers_identity (customer_id, kind, address, display_name, created_at) "
        "VALUES (%s, 'phone', %s, '', now())",
        [customer_id, phone],
    )
    return customer_id


@pytest.mark.django_db(transaction=True)
def test_two_batches_with_the_same_new_sender_take_turns_instead_of_failing(
    client, twilio_inbox, queued, monkeypatch, caplog
):
    """A number writes twice within a moment and each message lands in another drainer's
    batch. The other drainer holds its turn on the sender (its batch is still open, the new
    customer not committed): this batch waits for that commit, then reads the customer — no
    unique-address failure, no batch taken again."""
    import threading

    from customers.models import Customer, Identity
    from customers.services import SENDER_LOCKS, sender_lock_key

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "second message", "SMt2", sender="+48600100911")
    other = _other_connection()
    try:  # the other drainer's batch: its turn on the number, its new customer, not committed yet
        other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SENDER_LOCKS, sender_lock_key("phone", "+48600100911")])
        customer_id = _customer_created_by(other, "+48600100911")
        commit = threading.Timer(0.5, other.commit)
        commit.start()
        with caplog.at_level(logging.INFO, logger="channels_app.webhook_queue"):
            assert webhook_queue.drain() == 1
        commit.join()
    finally:
        other.close()
    assert "another drainer just created" not in caplog.text and "one at a time" not in caplog.text
    assert Identity.objects.filter(address="+48600100911").count() == 1
    assert Customer.objects.filter(identities__address="+48600100911").get().pk == customer_id
    assert Message.objects.get(provider_message_id="SMt2").identity.customer_id == customer_id


@pytest.mark.django_db(transaction=True)  # the other connection commits: flushed after
def test_a_batch_that_meets_a_customer_another_drainer_just_created_is_taken_again_whole(
    client, twilio_inbox, queued, monkeypatch, caplog
):
    """Two drainers, two batches, one new number in both (it wrote twice within a moment):
    the batch that commits second meets the first one's customer at its INSERT. It is taken
    again as a batch — it finds the customer now — not one delivery at a time."""

    from customers import services as customer_services
    from customers.models import Customer, Identity

    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "second message", "SMr2", sender="+48600100901")
    _store(client, "someone else", "SMr3", sender="+48600100902")
    real = customer_services._senders_create
    calls = []

    def created_after_the_other(batch, missing):  # our batch has looked; the other commits first
        calls.append(1)
        if len(calls) == 1:
            other_drainer_first_commit()
        return real(batch, missing)

    def other_drainer_first_commit():
        with _other_connection() as other:
            other.autocommit = True
            _customer_created_by(other, "+48600100901")

    monkeypatch.setattr(customer_services, "_senders_create", created_after_the_other)
    with caplog.at_level(logging.INFO, logger="channels_app.webhook_queue"):
        assert webhook_queue.drain() == 2
    assert "another drainer just created" in caplog.text
    assert "one at a time" not in caplog.text
    assert Identity.objects.filter(address="+48600100901").count() == 1
    assert Customer.objects.count() == 2
    message = Message.objects.get(provider_message_id="SMr2")
    assert message.identity.address == "+48600100901"
    assert webhook_queue.IDENTITY_CONSTRAINT in {c.name for c in Identity._meta.constraints}


def test_a_batch_threads_as_one_message_at_a_time_would(client, twilio_inbox, queued, monkeypatch):
    """Inside one batch, threading looks in what the batch read ahead and what it stored: a
    new number writing twice gets one ticket; a known number's second message joins the open
    ticket its first one reopened; each ticket's activity and last channel are those of its
    newest message (written once, as the batch ends)."""
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "first", "SMk1", sender="+48600100901")
    assert webhook_queue.drain() == 1
    known = Ticket.objects.get()
    Ticket.objects.filter(pk=known.pk).update(status=Ticket.Status.PENDING, last_customer_channel="email")
    _store(client, "new one", "SMn1", sender="+48600100902")
    _store(client, "known again", "SMk2", sender="+48600100901")
    _store(client, "new one again", "SMn2", sender="+48600100902")
    _store(client, "known once more", "SMk3", sender="+48600100901")
    assert webhook_queue.drain() == 4

    known.refresh_from_db()
    assert known.status == Ticket.Status.OPEN and known.last_customer_channel == "sms"
    newest = Message.objects.filter(ticket=known).latest("id")
    assert newest.body_text == "known once more" and known.messages.count() == 3
    before = Message.objects.get(body_text="known again")
    assert before.created_at < known.last_message_at == known.last_customer_message_at <= newest.created_at
    assert known.events.filter(kind="channel_switch").count() == 1
    fresh = Ticket.objects.exclude(pk=known.pk).get()
    assert list(fresh.messages.order_by("id").values_list("body_text", flat=True)) == ["new one", "new one again"]
    first, second = fresh.messages.order_by("id")
    assert first.created_at < fresh.last_message_at <= second.created_at and fresh.last_customer_channel == "sms"


def test_the_acknowledgements_insert_feeds_three_indexes():
    """Every acknowledgement inserts a RawInbound row: its indexes are what the drainer and
    the desk look up (pending rows, an inbox's deliveries) and the primary key; the message
    index covers only rows that have one (none yet when acknowledged)."""
    import os

    if connection.vendor != "postgresql":
        assert os.environ.get("CI") != "true", "CI runs the suite on PostgreSQL"
        pytest.skip("PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [RawInbound._meta.db_table])
        defs = [row[0] for row in cursor.fetchall()]
    assert not [d for d in defs if "sha256" in d], defs
    partial = [d for d in defs if "message_id" in d]
    assert len(partial) == 1 and "WHERE (message_id IS NOT NULL)" in partial[0], defs
    assert len(defs) == 4, defs


def test_a_batchs_rows_are_stored_as_they_were_announced(client, twilio_inbox, queued, monkeypatch):
    """The batch writes its tickets and messages as it ends, with the ids drawn ahead and the
    times they were given: what subscribers were told (ids, created_at) is what is stored,
    and a ticket opened and continued in the same batch keeps its newest activity."""
    from integrations.models import WebhookDelivery, WebhookSubscription

    WebhookSubscription.objects.create(url="https://hooks.example.com/cx", secret="s", events=["message.created"])
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: None)
    _store(client, "one", "SMr1", sender="+48600100911")
    _store(client, "two", "SMr2", sender="+48600100911")
    assert webhook_queue.drain() == 2
    told = {d.payload["data"]["id"]: d.payload["data"] for d in WebhookDelivery.objects.all()}
    stored = {m.pk: m for m in Message.objects.all()}
    assert set(told) == set(stored)
    for pk, data in told.items():
        assert data["created_at"] == stored[pk].created_at.isoformat() and data["body"] == stored[pk].body_text
    ticket = Ticket.objects.get()
    assert ticket.last_message_at > stored[min(stored)].created_at
    assert RawInbound.objects.filter(status="processed", message__isnull=False).count() == 2


def _senders_by_slot(slots: int) -> dict[int, list[str]]:
    """Numbers whose deliveries fall to each of `slots` drainers (two of each)."""
    by_slot: dict[int, list[str]] = {slot: [] for slot in range(slots)}
    for n in range(100, 200):
        sender = f"+48600100{n}"
        lane = webhook_queue.lane_of([SimpleNamespace(sender=SimpleNamespace(kind="phone", address=sender))])
        if len(by_slot[lane % slots]) < 2:
            by_slot[lane % slots].append(sender)
    assert all(len(found) == 2 for found in by_slot.values())
    return by_slot


def test_each_senders_deliveries_go_to_the_drainer_of_its_lane(
    client, twilio_inbox, queued, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """With two drainers, a delivery belongs to the slot of its sender's lane: its
    acknowledgement wakes that slot, and that slot's drainer takes it and no other's. So one
    sender's messages are taken by one drainer, in order, and two drainers never wait for
    each other's turn on a sender. Statuses (no sender) go to either; the sweep takes all."""
    settings.CXDESK_WEBHOOK_DRAINERS = 2
    woken = []
    monkeypatch.setattr("channels_app.tasks.drain_webhooks.delay", lambda slot: woken.append(slot))
    by_slot = _senders_by_slot(2)
    sent = []
    for k, (slot, sender) in enumerate((s, n) for s, numbers in by_slot.items() for n in numbers for _ in (1, 2)):
        _free_slots()  # each acknowledgement finds its slot free and says whom it wakes
        webhook_queue._held_at.clear()
        with django_capture_on_commit_callbacks(execute=True):
            _store(client, f"m{k}", f"SMl{k}", sender=sender)
        assert woken[-1] == slot, (sender, woken)
        sent.append((slot, sender, f"m{k}"))
    lanes = dict(RawInbound.objects.values_list("pk", "lane"))
    assert None not in lanes.values() and len(set(lanes.values())) == 4, "one lane a sender"

    _free_slots()
    assert webhook_queue.drain(slot=1) == 4
    taken = list(Message.objects.order_by("pk").values_list("body_text", "ticket__customer__identities__address"))
    assert taken == [(body, sender) for slot, sender, body in sent if slot == 1], "slot 1's senders, in order"
    assert RawInbound.objects.filter(status="pending").count() == 4, "slot 0's rows wait for slot 0's drainer"
    assert not webhook_queue._unclaimed_left(1) and webhook_queue._unclaimed_left(0)

    status = {"MessageSid": "SMl0", "MessageStatus": "delivered", "AccountSid": SID}
    assert post(client, "/hooks/twilio/3/", status, _signed(status)).status_code == 200
    assert RawInbound.objects.get(lane__isnull=True).status == "pending"
    assert webhook_queue._unclaimed_left(1), "a delivery of no lane is any drainer's"
    assert webhook_queue.drain() == 4, "the sweep's drainer takes every lane"
    assert not RawInbound.objects.filter(status="pending").exists()
    assert sorted(Message.objects.values_list("body_text", flat=True)) == sorted(body for *_x, body in sent)
