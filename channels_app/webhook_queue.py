"""Provider webhooks acknowledged once their payload is durable, processed in batches.

`provider_webhook` (channels_app/webhooks.py) verifies the signature and parses the body in
the request — a forged or malformed delivery is still a 403/400 with nothing stored — then,
for an adapter with `queue_webhooks`, writes ONE row (the raw body, in `RawInbound`, one
autocommitted INSERT: durable when it returns), wakes a drainer and answers.

The drainer (`drain`, the Celery task `drain_webhooks`) claims pending rows in batches
(`FOR UPDATE SKIP LOCKED`, so drainers never take the same row), ingests each with the same
idempotency as the inline path (a duplicate delivery is still one message) in one
transaction per batch, and runs the batch's routing right after its commit. A delivery that
cannot be ingested becomes a dead letter, visible in the desk and retryable.

Waking is cheap and exact: a drainer holds one of `CXDESK_WEBHOOK_DRAINERS` slots (a cache
key added with NX). Each delivery belongs to one slot, by its lane (a hash of its sender,
`lane_of`): the drainer of that slot takes it, so one sender's deliveries are taken by one
drainer, in order, and two drainers never wait for each other on a common sender's turn
(`customers.services.senders_take_turns`, still taken: a delivery of several senders may
share one with another lane). An acknowledgement that finds its slot free takes it and
queues a drainer; one that finds it taken queues nothing, because a drainer gives its slot
back and only then looks for its pending rows one last time — so a row committed before
that look is drained by it, and a row committed after finds the slot free. That last look
is two, the second GRACE_SECONDS after the first, so an acknowledgement that found the slot
held less than GRACE_SECONDS ago need not ask the cache again (under a flood, most of
them). Should the broker or the cache be down at the moment, the row is still durable and
the beat sweep (`drain_stale`) queues a drainer for rows left pending; the sweep's drainer
takes every lane.

`CXDESK_WEBHOOKS` chooses: "queued" (acknowledge after the raw write) or "inline" (ingest in
the request, acknowledge after the message's commit). bench/webhook_ingest.py measures both.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import time
import zlib
from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Mod
from django.http import HttpRequest, QueryDict
from django.http.request import RawPostDataException
from django.utils import timezone

from cxdesk.errors import ApplicationError
from cxdesk.memo import memo_scope
from cxdesk.observability import get_request_id, request_id_scope
from outbox.services import batch as outbox_batch

from .models import Inbox, RawInbound
from .services import ingest, ingest_batched, raw_inbound_failed, raw_inbound_processed, status_apply
from .types import InboundMessage, WebhookError

log = logging.getLogger(__name__)
task_log = logging.getLogger("cxdesk.tasks")

SOURCE = "webhook"
BATCH = 50  # deliveries per transaction
SLOT_KEY = "cxdesk:webhook-drainer:{}"
SLOT_SECONDS = 15  # a drainer that died gives its slot back after this long (it renews it per batch)
DRAIN_SECONDS = 60  # then a drainer hands its slot to a new task (Celery's time limits)
LINGER_SECONDS = 0.02  # after a short batch, wait this long for more before taking the next
GRACE_SECONDS = 0.05  # a slot seen held this recently is not asked for again (see `wake`)
MEMO_SECONDS = 1.0  # settings every message asks about, asked again at most this often
STALE = timedelta(seconds=10)  # pending this long: the sweep wakes a drainer (a lost wake-up)
LANES = 1 << 15  # lanes are 0 … LANES - 1 (a smallint); a slot takes the lanes ≡ its number


def queued(adapter) -> bool:
    return settings.CXDESK_WEBHOOKS == "queued" and getattr(adapter, "queue_webhooks", False)


def lane_of(inbound: Sequence[InboundMessage]) -> int | None:
    """A delivery's lane: a hash of its first sender as the provider names them (a provider
    names a sender the same way each time), or None (statuses only: any drainer)."""
    if not inbound:
        return None
    sender = inbound[0].sender
    return zlib.crc32(f"{sender.kind}:{sender.address}".encode()) % LANES


def webhook_store(*, request: HttpRequest, inbox: Inbox, lane: int | None = None) -> int:
    """The delivery as received (body and content type), committed, and its slot's drainer
    woken. Returns the stored row's id."""
    content_type = request.content_type or "application/octet-stream"
    try:
        body = request.body
    except RawPostDataException:  # a form already read into request.POST (the input checks)
        body = urlencode(list(request.POST.lists()), doseq=True).encode()
        content_type = "application/x-www-form-urlencoded"
    # One autocommitted INSERT (outside any transaction the caller may hold: the answer
    # waits for it to be durable), so nothing else is written in the request. Written as
    # SQL: on the path every delivery takes, the ORM's INSERT cost as much as the database.
    values = {
        "inbox_id": inbox.pk,
        "source": SOURCE,
        "content_type": content_type[:100],
        "payload": zlib.compress(body, 1),
        "sha256": hashlib.sha256(body).hexdigest(),
        "status": RawInbound.Status.PENDING,
        "error": "",
        "attempts": 0,
        "request_id": get_request_id()[:64],
        "lane": lane,
        "created_at": connection.ops.adapt_datetimefield_value(timezone.now()),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RawInbound._meta.db_table} ({', '.join(values)}) "  # noqa: S608 - names from the model and this code
            f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
            list(values.values()),
        )
        pk = cursor.fetchone()[0]
    # Now, in autocommit; after the caller's commit otherwise.
    transaction.on_commit(functools.partial(wake, lane))
    return pk


_turn = itertools.count()
_held_at: dict[int, float] = {}  # slot → when this process last found it held (monotonic, before asking)


def _slots() -> range:
    return range(max(1, settings.CXDESK_WEBHOOK_DRAINERS))


def _shared_cache() -> bool:
    return "locmem" not in settings.CACHES["default"]["BACKEND"].lower()


def _slot_of(lane: int | None) -> int:
    """The slot whose drainer takes a delivery of this lane (None: any, taken in turn)."""
    if lane is None:
        # Any slot's drainer takes it: one in turn, so a burst of them runs every drainer.
        return next(_turn) % len(_slots())
    return lane % len(_slots())


def _pending(slot: int | None) -> QuerySet[RawInbound]:
    """The pending deliveries a drainer holding `slot` takes: its lanes' and those of no
    lane (None: every one, as the sweep's drainer takes them)."""
    rows = RawInbound.objects.filter(source=SOURCE, status=RawInbound.Status.PENDING)
    slots = len(_slots())
    if slot is None or slots == 1:
        return rows
    return rows.alias(slot=Mod("lane", slots)).filter(Q(slot=slot % slots) | Q(lane__isnull=True))


def wake(lane: int | None = None) -> None:
    """Queue the drainer of this lane's slot if the slot is free. Never raises: the row is
    durable and the sweep finds it if the cache or the broker is down right now."""
    from .tasks import drain_webhooks

    try:
        if not _shared_cache():  # slots need a cache every process sees: wake every time
            drain_webhooks.delay(None)
            return
        slot = _slot_of(lane)
        asked = time.monotonic()
        if asked - _held_at.get(slot, float("-inf")) < GRACE_SECONDS:
            # Found held less than GRACE_SECONDS ago (asked at `asked`): its holder had not
            # given it back then, and after giving it back it looks for rows twice, the
            # second time GRACE_SECONDS later — after this row's commit. Under a flood this
            # spares most acknowledgements their round trip to the cache.
            return
        if cache.add(SLOT_KEY.format(slot), 1, SLOT_SECONDS):
            try:
                drain_webhooks.delay(slot)
            except Exception:
                cache.delete(SLOT_KEY.format(slot))  # nobody holds it: the next delivery may try
                raise
        else:
            _held_at[slot] = asked
    except Exception as exc:  # noqa: BLE001 - broker or cache down: the sweep wakes a drainer
        log.warning("webhook drainer not woken (%s); the sweep will", exc)


def drain(*, slot: int | None = None, batch: int = BATCH) -> int:
    """Ingest pending deliveries until none is left; returns how many messages were stored.
    Holding `slot`, give it back at the end and look once more (see the module's doc)."""
    with contextlib.ExitStack() as settings_memo:
        return _drain(slot, batch, settings_memo)


def _drain(slot: int | None, batch: int, settings_memo: contextlib.ExitStack) -> int:
    stored = 0
    deadline = time.monotonic() + DRAIN_SECONDS
    conflicts = 0
    memo_until = 0.0
    while True:
        if time.monotonic() >= memo_until:
            # What every message asks of the settings (SLA policies, routing rules…), asked
            # again at most every MEMO_SECONDS: a flood of small batches does not ask it each
            # time, and an admin's change counts within a second.
            settings_memo.close()
            settings_memo.enter_context(memo_scope())
            memo_until = time.monotonic() + MEMO_SECONDS
        try:
            taken, count = _drain_batch(batch, slot)
            conflicts = 0  # the retries below are counted per batch
        except OperationalError as exc:
            if _transient(exc) and conflicts < 5:
                # Two drainers met on the same new customers in opposite order: PostgreSQL
                # rolled this batch back to let the other through. Take it again.
                conflicts += 1
                log.info("webhook batch rolled back (%s); taking it again", exc)
                continue
            if slot is not None:
                cache.delete(SLOT_KEY.format(slot))
            raise  # the database is away: the rows stay pending; the sweep or the next delivery wakes us
        except InterfaceError:
            if slot is not None:
                cache.delete(SLOT_KEY.format(slot))
            raise
        except IntegrityError as exc:
            if _constraint(exc) == IDENTITY_CONSTRAINT and conflicts < 5:
                # Another drainer's batch created a customer this one also met as new (they
                # wrote twice within a moment); that batch has committed by now (ours waited
                # for it): taken again, this batch finds the customer.
                conflicts += 1
                log.info("a webhook batch met a customer another drainer just created; taking it again")
                continue
            # A repeat of a stored message (a provider's retry): each delivery alone knows
            # what to do with it.
            log.info("a batch of webhook deliveries met a stored row (%s); taking them one at a time", exc)
            taken, count = _drain_singly(batch, slot)
        except Exception:  # noqa: BLE001 - something broke the batch's transaction: take its rows one by one
            log.exception("a batch of webhook deliveries failed; taking them one at a time")
            taken, count = _drain_singly(batch, slot)
        stored += count
        if taken == batch or (taken and slot is not None):
            if slot is not None:
                cache.touch(SLOT_KEY.format(slot), SLOT_SECONDS)
            if taken < batch:
                # Deliveries are coming in, fewer than a batch at a time: wait a moment for
                # more rather than give the slot back and be woken again — fuller batches,
                # fewer tasks, and the acknowledgements get the CPU meanwhile.
                time.sleep(LINGER_SECONDS)
            if time.monotonic() > deadline:
                # A long flood: hand the slot to a fresh task, well inside Celery's time limit.
                from .tasks import drain_webhooks

                drain_webhooks.delay(slot)
                return stored
            continue
        if slot is None:
            return stored
        cache.delete(SLOT_KEY.format(slot))
        if not _unclaimed_left(slot):
            # An acknowledgement that found the slot held within the last GRACE_SECONDS
            # woke nobody (`wake`): look once more after that long.
            time.sleep(GRACE_SECONDS)
            if not _unclaimed_left(slot):
                return stored
        if not cache.add(SLOT_KEY.format(slot), 1, SLOT_SECONDS):
            return stored  # an acknowledgement took the slot: its drainer will take the rows


IDENTITY_CONSTRAINT = "identity_kind_address_uniq"


def _constraint(exc: IntegrityError) -> str:
    """The name of the constraint an IntegrityError broke (PostgreSQL), else ""."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or ""


def _transient(exc: OperationalError) -> bool:
    """A deadlock or serialization failure: the transaction may simply be run again."""
    return getattr(exc.__cause__, "sqlstate", None) in ("40P01", "40001")


def _unclaimed_left(slot: int | None) -> bool:
    """A pending delivery of this slot that no drainer holds (rows in another drainer's
    batch are locked)."""
    with transaction.atomic():
        return bool(_pending(slot).select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:1])


def _drain_batch(batch: int, slot: int | None) -> tuple[int, int]:
    """One transaction: claim up to `batch` pending deliveries of the slot, ingest them and
    route their tickets (before the commit, on the tickets the batch holds locked or
    created). Returns (claimed, messages stored)."""
    stored = 0
    with memo_scope(), outbox_batch(before_commit=("route",)):
        records = list(
            _pending(slot)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("inbox")
            .order_by("created_at")[:batch]
        )
        # Parsed first (bad content is a dead letter, nothing written), so the batch's
        # senders are read in one statement; then stored with no savepoint each: anything
        # that goes wrong from here rolls the batch back, and `drain` takes its deliveries
        # again one at a time.
        parsed = []
        for record in records:
            with request_id_scope(record.request_id or f"raw-{record.pk}"):
                found = _parse(record)
            if found is not None:
                parsed.append((record, *found))
        # Every parsed delivery is stored or the batch rolls back: first-time senders get
        # their customers here, together.
        with ingest_batched([item for _record, items, _statuses in parsed for item in items], create_senders=True):
            for record, items, statuses in parsed:
                with request_id_scope(record.request_id or f"raw-{record.pk}"):
                    count = _store(record, items, statuses, in_batch=True)
                    task_log.info("webhook delivery #%s taken: %s new message(s)", record.pk, count)
                    stored += count
    return len(records), stored


def _drain_singly(batch: int, slot: int | None) -> tuple[int, int]:
    """The slot's next `batch` pending deliveries, each in its own transaction (after a
    batch failed): one that still fails is a dead letter, the others are stored."""
    stored = 0
    ids = list(_pending(slot).order_by("created_at").values_list("pk", flat=True)[:batch])
    for pk in ids:
        with memo_scope():
            try:
                with outbox_batch():
                    record = (
                        RawInbound.objects.select_for_update(skip_locked=True, of=("self",))
                        .select_related("inbox")
                        .filter(pk=pk, status=RawInbound.Status.PENDING)
                        .first()
                    )
                    if record is not None:
                        with request_id_scope(record.request_id or f"raw-{record.pk}"):
                            stored += webhook_process(record=record, in_batch=True)
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on the row, which stops blocking the queue
                log.exception("webhook delivery #%s failed on its own", pk)
                RawInbound.objects.filter(pk=pk, status=RawInbound.Status.PENDING).update(
                    status=RawInbound.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000]
                )
    return len(ids), stored


def drain_stale(*, now=None) -> int:
    """Beat: queue a drainer when deliveries have waited longer than a wake-up takes
    (the broker or the cache was down when they came). Returns how many were waiting."""
    from .tasks import drain_webhooks

    now = now or timezone.now()
    waiting = RawInbound.objects.filter(
        source=SOURCE, status=RawInbound.Status.PENDING, created_at__lt=now - STALE
    ).count()
    if waiting:
        drain_webhooks.delay(None)
    return waiting


def _request(record: RawInbound) -> HttpRequest:
    """An HttpRequest carrying the stored body, for the adapter's parser."""
    body = record.raw
    request = HttpRequest()
    request.method = "POST"
    request.META = {"CONTENT_TYPE": record.content_type, "CONTENT_LENGTH": str(len(body))}
    request.content_type = record.content_type
    request._body = body  # what `request.body` returns (JSON providers read it)
    if record.content_type == "application/x-www-form-urlencoded":  # Twilio posts a form
        request.POST = QueryDict(body, encoding="utf-8")
    return request


BAD_CONTENT = (WebhookError, ApplicationError, LookupError, TypeError, ValueError, KeyError)


def webhook_process(*, record: RawInbound, in_batch: bool = False) -> int:
    """Ingest a stored delivery (a drainer taking deliveries one at a time, the outbox task
    of older rows, the dead-letter retry). Returns the number of messages stored. Bad
    content makes a dead letter; a lost database connection raises (the row stays pending
    and is taken again). `in_batch`: any other error is a dead letter too, logged with its
    traceback — one poisoned delivery never holds back the ones after it."""
    try:
        parsed = _parse(record)
        if parsed is None:
            return 0
        items, statuses = parsed
        # One message and nothing else: its ingest is already all-or-nothing (and marks the
        # row processed); more than that is made all-or-nothing here.
        whole = contextlib.nullcontext() if len(items) == 1 and not statuses else transaction.atomic()
        with whole:
            return _store(record, items, statuses)
    except BAD_CONTENT as exc:
        raw_inbound_failed(raw=record, error=f"{type(exc).__name__}: {exc}")
        return 0
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        if not in_batch:
            raise
        log.exception("webhook delivery #%s could not be ingested", record.pk)
        raw_inbound_failed(raw=record, error=f"{type(exc).__name__}: {exc}")
        return 0


def _parse(record: RawInbound) -> tuple[list, list] | None:
    """(messages, status updates) of a stored delivery, or None when there is nothing to do
    (already processed) or it cannot be parsed (then a dead letter: nothing was written)."""
    if record.status == RawInbound.Status.PROCESSED:
        return None
    if record.inbox is None:
        raw_inbound_failed(raw=record, error="its inbox was deleted")
        return None
    try:
        request = _request(record)
        adapter = record.inbox.adapter
        return adapter.parse(request, record.inbox), adapter.parse_status(request, record.inbox)
    except BAD_CONTENT as exc:
        raw_inbound_failed(raw=record, error=f"{type(exc).__name__}: {exc}")
        return None


def _store(record: RawInbound, items: list, statuses: list, *, in_batch: bool = False) -> int:
    """Ingest a parsed delivery and mark it processed; returns the messages stored."""
    results = []
    for item in items:
        item.raw_inbound_id = record.pk
        results.append(ingest(item, in_batch=in_batch))
    for update in statuses:
        status_apply(inbox=record.inbox, update=update)
    if statuses or not results or results[-1].duplicate:
        # A repeat of a stored message (or statuses only) is done too, pointing at what it repeated.
        raw_inbound_processed(raw_id=record.pk, message=results[-1].message if results else None, only_open=True)
    return sum(not r.duplicate for r in results)


def webhook_process_handler(task) -> str:
    """Outbox handler for `webhook_process` rows."""
    record = RawInbound.objects.select_related("inbox").filter(pk=task.object_id).first()
    if record is None:
        return "gone"
    return str(webhook_process(record=record))
