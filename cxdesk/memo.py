"""Answers that stay the same for the length of a unit of work, asked once in it.

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
from collections.abc import Callable, Iterator
from typing import TypeVar

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
