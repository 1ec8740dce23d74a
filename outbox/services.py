"""Enqueue, claim, run and sweep outbox rows.

- `enqueue(kind, object_id=…)` inside the transaction that causes the work: the row
  commits with it, and a Celery message is sent after commit. A broker that is down at
  that moment is logged, not raised: the caller's write stands and the sweeper sends it.
- `run(task_id)` claims the row with a lease (one UPDATE … WHERE unclaimed or expired),
  runs its handler outside any transaction, and records the outcome: done, a retry at
  `next_attempt_at` (the handler raised `Retry`, or an unexpected error under the
  attempt cap), or failed.
- `sweep()` (beat, every CXDESK_OUTBOX_SWEEP_SECONDS) re-enqueues due rows that are not
  claimed (or whose lease expired) and were not dispatched recently.
- `batch()`: one transaction for a batch of work (a webhook drainer's deliveries, an
  `ingest_mail` chunk, an API create) whose rows are written together as it ends, one
  INSERT; rows of the kinds it runs (routing) are written already claimed and run by the
  same process right after the commit, all at once when the kind has a `many` handler.
  Kinds it settles `before_commit` (routing, for an API create and a drainer's batch) run
  inside the transaction instead and write no row at all, unless they fail.

A handler's side effect must be idempotent per row (the send path fixes the
Message-ID and records `sending` before it talks to the provider)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import OutboxTask

log = logging.getLogger(__name__)

P = OutboxTask.Status


class Retry(Exception):
    """Raised by a handler: try again in `countdown` seconds (nothing was done this time)."""

    def __init__(self, message: str = "", *, countdown: float = 0.0):
        super().__init__(message)
        self.countdown = max(0.0, float(countdown))


# kind → (dotted path of `handler(task) -> str | None`, Celery queue)
_HANDLERS: dict[str, tuple[str, str]] = {}
# kind → dotted path of `handler(tasks) -> {task id: result}`: runs many rows in one go
_MANY: dict[str, str] = {}


def register(kind: str, handler: str, *, queue: str = "default", many: str = "") -> None:
    """Called from an app's `ready()`: `handler` is a dotted path, imported when first run.
    `many`, if given, runs a batch's rows of `kind` together (see `batch`); it must be
    all-or-nothing (its own `transaction.atomic()` block, so a savepoint inside a caller's
    transaction), because when it raises each row runs alone, or after the commit."""
    _HANDLERS[kind] = (handler, queue)
    if many:
        _MANY[kind] = many


def _handler(kind: str) -> Callable[[OutboxTask], Any]:
    if kind not in _HANDLERS:
        raise LookupError(f"no outbox handler for {kind!r}")
    return import_string(_HANDLERS[kind][0])


def enqueue(
    kind: str,
    *,
    object_id: int | None = None,
    ref: str = "",
    payload: dict | None = None,
    delay: float = 0.0,
    instance: Any = None,
) -> OutboxTask:
    """Record work of `kind` in the current transaction; dispatch it after commit.
    `instance`: the object the work is about, as the caller holds it; a `batch` that settles
    the kind before its commit hands it to the handler (`task.instance`) instead of the
    handler reading it back. Every other run reads it back (`task.instance` is None)."""
    if kind not in _HANDLERS:
        raise LookupError(f"no outbox handler for {kind!r}")
    now = timezone.now()
    task = OutboxTask(
        kind=kind,
        object_id=object_id,
        ref=ref[:255],
        payload=payload or {},
        next_attempt_at=now + timedelta(seconds=delay),
        dispatched_at=now,
    )
    here = _here.get()
    runs_here = here is not None and kind in here.kinds and not delay
    if here is not None and here.batching and connection.in_atomic_block:
        if runs_here:  # written already held by this process, which runs it after the commit
            task.claimed_until, task.attempts = now + _lease(), 1
        # Written with the rest of the batch's rows as its transaction ends (`_flush`); the
        # hook stays only if the savepoint it was made in is not rolled back.
        transaction.on_commit(_Deferred(here, task, runs_here, delay, instance))
        return task
    task.save(force_insert=True)
    if runs_here:
        here.tasks.append(task)  # run by this process when the `run_here` block ends
        return task
    transaction.on_commit(lambda: (dispatch([task], countdown=delay or None), _embedded_sweep()))
    return task


@dataclass
class _Here:
    kinds: frozenset[str]
    tasks: list[OutboxTask] = field(default_factory=list)
    batching: bool = False
    before_commit: frozenset[str] = frozenset()


_here: contextvars.ContextVar[_Here | None] = contextvars.ContextVar("outbox_run_here", default=None)


@dataclass(eq=False)
class _Deferred:
    """A row enqueued in a `batch`: inserted by `_flush` before the commit; this commit hook
    then hands it over (to this process or to Celery)."""

    here: _Here
    task: OutboxTask
    runs_here: bool
    delay: float
    instance: Any = None  # handed to a handler that runs before the commit, never stored
    written: bool = False
    settled: bool = False  # run before the commit (`_settle`): nothing left to do

    def __call__(self) -> None:
        if self.settled:
            return
        if not self.written:  # not flushed (a bug): better late than lost
            log.error("outbox %s row enqueued in a batch was not flushed; writing it now", self.task.kind)
            self.task.claimed_until, self.task.attempts = None, 0
            self.task.save(force_insert=True)
            self.runs_here = False
        if not self.runs_here:  # a row this process runs was handed over by `_flush`
            dispatch([self.task], countdown=self.delay or None)
            _embedded_sweep()


def _pending(here: _Here) -> list[_Deferred]:
    """The rows `here` deferred whose savepoints still stand, not yet written."""
    return [
        hook for _sids, hook, _robust in connection.run_on_commit
        if isinstance(hook, _Deferred) and hook.here is here and not hook.written
    ]  # fmt: skip


def _settle(here: _Here) -> None:
    """Run the deferred rows of `here.before_commit` kinds inside the transaction: each
    kind's rows in one call of its `many` handler (which is all or nothing), else each by its
    single handler, in one savepoint. Done, they are never written: their work commits with
    the rest. If the handler raises, the savepoint is rolled back (with whatever the handler
    wrote or enqueued) and the rows are left to `_flush`, to run as if never settled."""
    by_kind: dict[str, list[_Deferred]] = {}
    for hook in _pending(here):
        if hook.task.kind in here.before_commit and not hook.delay:
            by_kind.setdefault(hook.task.kind, []).append(hook)
    for kind, hooks in by_kind.items():
        tasks = [hook.task for hook in hooks]
        for hook in hooks:
            hook.task.instance = hook.instance
        try:
            if kind in _MANY:  # all or nothing by contract (`register`): its own savepoint
                import_string(_MANY[kind])(tasks)
            else:
                with transaction.atomic():
                    for task in tasks:
                        _handler(kind)(task)
        except Exception:  # noqa: BLE001 - the rows stay, run after the commit (and retried) as usual
            log.exception("outbox: %s rows failed before the commit; they run after it instead", kind)
            continue
        finally:
            for task in tasks:
                task.instance = None
        for hook in hooks:
            hook.written = hook.settled = True


def _flush(here: _Here) -> int:
    """Insert the rows `here` deferred whose savepoints still stand: one statement."""
    pending = _pending(here)
    if pending:
        OutboxTask.objects.bulk_create([hook.task for hook in pending])
        for hook in pending:
            hook.written = True
            if hook.runs_here:
                here.tasks.append(hook.task)
    return len(pending)


def flush_pending() -> None:
    """Write the current batch's deferred rows now (before reading outbox rows back)."""
    here = _here.get()
    if here is not None and here.batching and connection.in_atomic_block:
        _flush(here)


@contextlib.contextmanager
def batch(kinds: Iterable[str] = ("route",), *, before_commit: Iterable[str] = ()) -> Iterator[None]:
    """One transaction for a batch of work (a drainer's deliveries): the outbox rows it
    enqueues are written together as it ends — one INSERT, not one each — and rows of
    `kinds` are written already claimed by this process, which runs them right after the
    commit (a kind with a `many` handler all at once). If the block raises, nothing was
    written and nothing runs. A crash after the commit leaves the claimed rows to the
    sweeper once their lease ends.

    Rows of `before_commit` kinds are run by this process as the block ends, inside its
    transaction (`_settle`), and are not written: the work is committed with what caused it,
    or not at all. A handler that fails there leaves its rows to run after the commit."""
    here = _Here(frozenset(kinds), batching=True, before_commit=frozenset(before_commit))
    token = _here.set(here)
    try:
        with transaction.atomic():
            yield
            _settle(here)
            _flush(here)
            # The commit hooks may run tasks (eagerly in `make run`) whose own transactions
            # enqueue: those rows are written as usual, not deferred to a flush that is over.
            here.batching = False
    finally:
        _here.reset(token)
    _run(here.tasks)


def _run(tasks: list[OutboxTask]) -> None:
    """Run claimed rows in this process and record them done: a kind with a `many` handler
    in one call (each row alone if that raises), the others one by one."""
    results: dict[int, str] = {}
    by_kind: dict[str, list[OutboxTask]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    for kind, group in by_kind.items():
        if kind in _MANY and len(group) > 1:
            try:
                done = import_string(_MANY[kind])(group)
            except Exception:  # noqa: BLE001 - one bad row: run them one at a time
                log.exception("outbox: %s rows failed together; running them one by one", kind)
            else:
                results.update({pk: str(result or "")[:100] for pk, result in done.items()})
                continue
        for task in group:
            outcome, result = _execute(task)
            if outcome == "done":
                results[task.pk] = result
    _done(results)


@contextlib.contextmanager
def run_here(kinds: Iterable[str] = ("route",)) -> Iterator[None]:
    """Rows of `kinds` enqueued in the block are run by this process as the block ends
    (after the transaction inside it committed), not handed to Celery: a worker that just
    stored a batch of messages routes them itself, without a broker round trip and a task
    each. Rows are written as usual, so a crash before they run leaves them to the sweeper;
    if the block raises, they go to Celery (a row that was rolled back is skipped there)."""
    here = _Here(frozenset(kinds))
    token = _here.set(here)
    try:
        yield
    except BaseException:
        _here.reset(token)
        dispatch(here.tasks)
        raise
    _here.reset(token)
    _run(claim_many([task.pk for task in here.tasks]))


_last_embedded_sweep = 0.0


def _embedded_sweep() -> None:
    """Without a broker and beat (`make run`: tasks run eagerly), retries due later are
    picked up by an opportunistic sweep on the next write, at most once per sweep interval."""
    global _last_embedded_sweep
    import time

    if not getattr(settings, "CXDESK_OUTBOX_EAGER_SWEEP", False):
        return
    now = time.monotonic()
    if now - _last_embedded_sweep < settings.CELERY_BEAT_SCHEDULE["outbox-sweep"]["schedule"]:
        return
    _last_embedded_sweep = now
    try:
        sweep()
    except Exception:  # noqa: BLE001 - a best-effort sweep never breaks the write that triggered it
        log.exception("embedded outbox sweep failed")


def dispatch(tasks: Iterable[OutboxTask], *, countdown: float | None = None) -> int:
    """Hand rows to Celery. Never raises: a row the broker did not take is still pending
    in the database and the sweeper dispatches it again. Returns how many were sent."""
    from .tasks import run_outbox_task

    sent = 0
    for task in tasks:
        queue = _HANDLERS.get(task.kind, ("", "default"))[1]
        try:
            run_outbox_task.apply_async(
                (task.pk,),
                queue=queue,
                countdown=countdown,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
            )
            sent += 1
        except Exception as exc:  # noqa: BLE001 - the broker is down: the sweeper re-sends it
            log.warning("outbox: could not enqueue %s #%s (%s); the sweeper will retry", task.kind, task.pk, exc)
    return sent


def _lease() -> timedelta:
    return timedelta(seconds=settings.CXDESK_OUTBOX_LEASE)


def claim(task_id: int) -> OutboxTask | None:
    """Claim a due, unclaimed (or lease-expired) row for this worker; None if not ours."""
    return next(iter(claim_many([task_id])), None)


def claim_many(task_ids: list[int]) -> list[OutboxTask]:
    """Claim the rows of `task_ids` that are due and unclaimed (or lease-expired), in one
    statement: the conditional UPDATE decides who holds each row and RETURNING hands them
    over (PostgreSQL, and SQLite >= 3.35 for the embedded run)."""
    if not task_ids:
        return []
    now = timezone.now()
    table = OutboxTask._meta.db_table
    at = connection.ops.adapt_datetimefield_value
    ids = ", ".join(["%s"] * len(task_ids))
    claimed = OutboxTask.objects.raw(
        f"UPDATE {table} SET claimed_until = %s, attempts = attempts + 1, updated_at = %s "  # noqa: S608 - table name from the model
        f"WHERE id IN ({ids}) AND status = %s AND next_attempt_at <= %s "
        f"AND (claimed_until IS NULL OR claimed_until < %s) RETURNING *",
        [at(now + _lease()), at(now), *task_ids, P.PENDING, at(now), at(now)],
    )
    return sorted(claimed, key=lambda task: task.pk)


def _backoff(attempts: int) -> float:
    return min(600.0, settings.CXDESK_OUTBOX_RETRY_BASE * 2 ** max(0, attempts - 1))


def run(task_id: int) -> str:
    """Run one outbox row if it is ours to run. Returns what happened."""
    task = claim(task_id)
    if task is None:
        return "skipped"
    outcome, result = _execute(task)
    if outcome == "done":
        _done({task.pk: result})
    return outcome


def _execute(task: OutboxTask) -> tuple[str, str]:
    """Run a claimed row's handler: ("done", its result) for the caller to record, or the
    retry/failure already recorded on the row."""
    try:
        result = _handler(task.kind)(task)
    except Retry as exc:
        return _reschedule(task, countdown=exc.countdown, error=str(exc) or "retry"), ""
    except Exception as exc:  # noqa: BLE001 - any failure of a handler is recorded on its row
        error = f"{type(exc).__name__}: {exc}"
        log.exception("outbox %s #%s (%s) failed", task.kind, task.pk, task.object_id or task.ref)
        if task.attempts >= settings.CXDESK_OUTBOX_MAX_ATTEMPTS:
            OutboxTask.objects.filter(pk=task.pk).update(
                status=P.FAILED, claimed_until=None, last_error=error[:4000], done_at=timezone.now()
            )
            return "failed", ""
        return _reschedule(task, countdown=_backoff(task.attempts), error=error), ""
    return "done", str(result or "")[:100]


def _done(results: dict[int, str]) -> None:
    """Record rows as done: one UPDATE per distinct result."""
    by_result: dict[str, list[int]] = {}
    for pk, result in results.items():
        by_result.setdefault(result, []).append(pk)
    now = timezone.now()
    for result, pks in by_result.items():
        OutboxTask.objects.filter(pk__in=pks).update(status=P.DONE, claimed_until=None, done_at=now, result=result)


def _reschedule(task: OutboxTask, *, countdown: float, error: str) -> str:
    now = timezone.now()
    OutboxTask.objects.filter(pk=task.pk).update(
        claimed_until=None,
        next_attempt_at=now + timedelta(seconds=countdown),
        dispatched_at=now,
        last_error=error[:4000],
    )
    task.next_attempt_at = now + timedelta(seconds=countdown)
    dispatch([task], countdown=countdown or None)
    return "retry"


def release(kind: str, ref: str) -> int:
    """Make pending rows of `kind` waiting on `ref` due now (a parked status whose message
    just appeared); dispatched after commit."""
    if not ref:
        return 0
    flush_pending()  # a row this batch parked is among those to release
    now = timezone.now()
    tasks = list(OutboxTask.objects.filter(kind=kind, ref=ref[:255], status=P.PENDING))
    if not tasks:
        return 0
    OutboxTask.objects.filter(pk__in=[t.pk for t in tasks]).update(next_attempt_at=now, dispatched_at=now)
    transaction.on_commit(lambda: dispatch(tasks))
    return len(tasks)


def sweep(*, limit: int = 500) -> dict[str, int]:
    """Re-dispatch due rows that nobody holds; forget old finished rows."""
    now = timezone.now()
    quiet = now - timedelta(seconds=settings.CXDESK_OUTBOX_REDISPATCH_SECONDS)
    with transaction.atomic():
        tasks = list(
            OutboxTask.objects.select_for_update(skip_locked=True)
            .filter(status=P.PENDING, next_attempt_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=quiet))
            .order_by("next_attempt_at")[:limit]
        )
        if tasks:
            OutboxTask.objects.filter(pk__in=[t.pk for t in tasks]).update(dispatched_at=now)
    sent = dispatch(tasks) if tasks else 0
    keep = now - timedelta(days=settings.CXDESK_OUTBOX_KEEP_DAYS)
    purged, _ = OutboxTask.objects.filter(status=P.DONE, done_at__lt=keep).delete()
    if tasks:
        log.info("outbox sweep: %s due, %s dispatched", len(tasks), sent)
    return {"due": len(tasks), "dispatched": sent, "purged": purged}


def backlog() -> dict[str, int]:
    """Pending and failed rows (for health checks and the admin)."""
    from django.db.models import Count

    rows = OutboxTask.objects.exclude(status=P.DONE).values("status").annotate(n=Count("id"))
    return {r["status"]: r["n"] for r in rows}
