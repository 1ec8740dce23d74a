"""Answers that stay the same for the length of a unit of work, asked once in it; and
(`kept`, below) the desk's configuration, kept by each process for a second.

A batch of inbound deliveries (channels_app/webhook_queue.py) asks, for every message, the
same questions of tables that change a few times a day: which SLA policies are active,
which webhook subscriptions exist. Inside `memo_scope()` the first `memoized(key, loader)`
runs the loader and the rest of the scope reuses its answer; outside a scope every call
runs the loader, so code that is not in a batch behaves as before.

A scope is short (one batch, well under a second) and belongs to one thread or task
(a context variable), so a change made by an admin is seen by the next batch."""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import connection

from . import write_watch

T = TypeVar("T")

_scope: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar("cxdesk_memo", default=None)


@contextlib.contextmanager
def memo_scope() -> Iterator[None]:
    """Remember `memoized` answers until the block ends (a nested scope shares the outer one)."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set({})
    try:
        yield
    finally:
        _scope.reset(token)


def memoized(key: str, loader: Callable[[], T]) -> T:
    """`loader()`, asked once per scope (every time outside one)."""
    scope = _scope.get()
    if scope is None:
        return loader()
    if key not in scope:
        scope[key] = loader()
    return scope[key]  # type: ignore[return-value]


def forget(key: str) -> None:
    """Drop a remembered answer (the code that just changed what it describes)."""
    scope = _scope.get()
    if scope is not None:
        scope.pop(key, None)


# --- kept by the process: the desk's configuration -----------------------------------
#
# Every ticket created asks the same questions of tables an admin changes a few times a
# day: the routing rules, the default team, the SLA policies, the webhook subscriptions,
# the organisations' email domains; and every API call looks its key up. Each process
# keeps their answers for KEPT_SECONDS.
# A write to one of the `watch`ed tables by this process — any INSERT, UPDATE or DELETE,
# the ORM's, `update()` or raw SQL (`cxdesk.write_watch`) — is seen at once; one by another
# process within KEPT_SECONDS. The transaction that wrote reads its own view and keeps none
# of it (it may still roll back), so what is kept has been committed.

KEPT_SECONDS = 1.0
KEPT_MAX = 1000
_kept: dict[str, tuple[float, object]] = {}
_writer = threading.local()  # .open: this thread's transaction wrote a watched table
_tables: set[str] = set()
_tables_written = None  # a compiled regex over `_tables`


def kept(key: str, loader: Callable[[], T], *, keep_none: bool = True) -> T:
    """`loader()`, asked at most once every KEPT_SECONDS by this process (see above). The
    answer is shared by the process's threads: treat it as read-only. With `keep_none=False`
    an answer of None is not kept (asked again each time: a lookup of what an outsider
    names, an API key, must not fill the memory with what does not exist)."""
    if getattr(_writer, "open", False):
        if connection.in_atomic_block:
            return memoized(key, loader)  # its own uncommitted view: not kept (once per scope)
        kept_clear()  # the transaction ended: rolled back, since a commit clears the flag
    now = time.monotonic()
    hit = _kept.get(key)
    if hit is None or now - hit[0] >= KEPT_SECONDS:
        if hit is None and len(_kept) >= KEPT_MAX:  # keys with a value in them (a domain): stay small
            _kept.clear()
        hit = (now, loader())
        if hit[1] is None and not keep_none:
            return None  # type: ignore[return-value]
        _kept[key] = hit
    return hit[1]  # type: ignore[return-value]


def kept_clear() -> None:
    """Forget everything kept (and tests: each starts from the database it sees)."""
    _writer.open = False
    _kept.clear()


def _written(written: str, conn) -> None:
    """A write statement (`cxdesk.write_watch`): to a watched table, forget what is kept,
    and keep nothing more in this thread until its transaction has committed."""
    global _tables_written
    if _tables_written is None:
        _tables_written = re.compile(rf"\b(?:{'|'.join(re.escape(t) for t in sorted(_tables))})\b", re.IGNORECASE)
    if not _tables_written.search(written):
        return
    _kept.clear()
    if conn.in_atomic_block and not getattr(_writer, "open", False):
        _writer.open = True
        conn.on_commit(kept_clear)


def _unit_started(sender=None, **kwargs) -> None:
    """A request or a task begins outside any transaction: one this thread left over a
    watched write has ended (rolled back, or its commit cleared the flag)."""
    if getattr(_writer, "open", False) and not connection.in_atomic_block:
        kept_clear()


def watch(*models: type) -> None:
    """Called from an app's `ready()`: writes to these models' tables (and to their
    many-to-many tables) make every `kept` answer forgotten."""
    global _tables_written
    from celery.signals import task_prerun
    from django.core.signals import request_started

    for model in models:
        _tables.add(model._meta.db_table)
        _tables.update(m2m.remote_field.through._meta.db_table for m2m in model._meta.local_many_to_many)
    _tables_written = None
    write_watch.on_write(_written)
    request_started.connect(_unit_started, dispatch_uid="cxdesk.memo.request_started")
    task_prerun.connect(_unit_started, dispatch_uid="cxdesk.memo.task_prerun", weak=False)
