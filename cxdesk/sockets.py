"""The database from websocket consumers (the desk's and the chat widget's).

A consumer's ORM calls run in asgiref's worker threads. Channels' `database_sync_to_async`
ends every call with `close_old_connections()`, which with `CONN_MAX_AGE=0` closes the
thread's connection each time: every live event opened a new PostgreSQL connection for each
socket that rendered it. With 200 agents connected and 20 messages/s, the database saw 2,619
sessions opened over a 400-message run, 881 with this module (bench/README.md, ninth pass);
in a slow phase of the machine the desk fell 4–6 s behind that way (eighth pass).

`database_sync_to_async` here is the same wrapper, except that a connection its calls open
is kept for at least `KEEP_SECONDS` whatever `CONN_MAX_AGE` says. Everything else about
closing stays Django's: a connection is closed at once when it is unusable (an error and a
failed check, autocommit left off), when it is older than both limits, and a rested one is
health-checked before use (`CONN_HEALTH_CHECKS`). The threads are few (asgiref's one shared
thread, and the pool of `thread_sensitive=False` calls), so a process holds at most that
many connections this way, instead of opening one per socket per event. With psycopg's pool
(`OPTIONS["pool"]`) closing is already cheap and nothing is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import close_old_connections, connections

KEEP_SECONDS = 60.0  # as the default CONN_MAX_AGE on PostgreSQL (cxdesk/settings.py)


class DatabaseSyncToAsync(SyncToAsync):
    """channels.db.DatabaseSyncToAsync, with the thread's connections kept (module doc)."""

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            keep_open()
            close_old_connections()


database_sync_to_async: Callable[..., Any] = DatabaseSyncToAsync


def in_pool(fn: Callable[..., Any], executor: Executor | None = None) -> Callable[..., Any]:
    """`database_sync_to_async(fn)` run in the thread pool (the event loop's, or `executor`),
    not on the one thread a process's thread-sensitive calls share: for work that must not
    queue the rest behind it (a visitor's chat frame, the inbox renders of a busy desk). Each
    pool thread keeps a connection of its own."""
    return database_sync_to_async(fn, thread_sensitive=False, executor=executor)


def keep_open() -> None:
    """Let this thread's open connections live KEEP_SECONDS from when they were opened,
    unless their own CONN_MAX_AGE is longer (or None: forever). Once per connection opened."""
    seconds = KEEP_SECONDS
    for conn in connections.all(initialized_only=True):
        max_age = conn.settings_dict.get("CONN_MAX_AGE")
        if conn.connection is None or conn.close_at is None or max_age is None or max_age >= seconds:
            continue
        if conn.settings_dict.get("OPTIONS", {}).get("pool") or getattr(conn, "_kept", None) is conn.connection:
            continue
        conn._kept = conn.connection
        conn.close_at = max(conn.close_at, conn.close_at - max_age + seconds)


class DispatchWithoutHop:
    """A consumer mixin: channels' `AsyncConsumer.dispatch`, without the
    `aclose_old_connections()` it awaits before every message. That is a hop to the
    database thread per message per socket, even for the many channel-layer events a socket
    handles without touching the database: with 200 agents on their inboxes it was a quarter
    of the ASGI process's time (bench/README.md, ninth pass). A consumer using this mixin must
    make its database calls through `database_sync_to_async` above (or channels' own), which
    check the thread's connections before and after each call."""

    async def dispatch(self, message: dict) -> None:
        from channels.consumer import get_handler_name

        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
