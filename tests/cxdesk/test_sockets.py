"""cxdesk.sockets: the consumers' database calls keep their thread's connection whatever
CONN_MAX_AGE says, and Django still closes it when it is unusable or old."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async as channels_database_sync_to_async
from django.db import connection, connections
from django.db.backends.signals import connection_created

from cxdesk import sockets

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")  # PostgreSQL's: this suite runs on it (CI)
        return cursor.fetchone()[0]


def calls_from_sockets(wrapper, sockets_n: int = 3, calls: int = 4) -> tuple[int, set[int]]:
    """(connections opened, backends used) by `calls` wrapped calls from each of `sockets_n`
    concurrent tasks, as a process's consumers make them."""
    opened: list[str] = []

    def count(sender, connection, **kwargs):
        opened.append(threading.current_thread().name)

    async def socket() -> list[int]:
        return [await wrapper(backend_pid)() for _ in range(calls)]

    async def main() -> list[list[int]]:
        await wrapper(connections.close_all)()  # the worker thread starts without a connection
        connection_created.connect(count)
        try:
            return await asyncio.gather(*(socket() for _ in range(sockets_n)))
        finally:
            connection_created.disconnect(count)

    pids = asyncio.run(main())
    return len(opened), {pid for per_socket in pids for pid in per_socket}


def test_calls_keep_one_connection_when_conn_max_age_is_0(monkeypatch):
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)
    # What channels' own wrapper does here: a connection per call.
    assert calls_from_sockets(channels_database_sync_to_async)[0] == 12
    opened, pids = calls_from_sockets(sockets.database_sync_to_async)
    assert (opened, len(pids)) == (1, 1)


def test_a_broken_connection_is_still_closed_and_replaced(monkeypatch):
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)

    def break_it() -> None:
        backend_pid()
        connection.connection.close()  # the server went away under Django's feet
        connection.errors_occurred = True  # as a failed statement marks it

    async def main() -> list[int]:
        call = sockets.database_sync_to_async
        await call(connections.close_all)()
        first = await call(backend_pid)()
        await call(break_it)()
        return [first, await call(backend_pid)(), await call(backend_pid)()]

    first, second, third = asyncio.run(main())
    assert second != first and third == second  # a new connection, then kept


def test_a_kept_connection_is_closed_once_older_than_the_floor(monkeypatch):
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)
    monkeypatch.setattr(sockets, "KEEP_SECONDS", 0.3)

    async def main() -> list[int]:
        call = sockets.database_sync_to_async
        await call(connections.close_all)()
        pids = [await call(backend_pid)(), await call(backend_pid)()]
        await asyncio.sleep(0.4)
        return [*pids, await call(backend_pid)()]  # the old one is closed as this call starts

    first, again, fresh = asyncio.run(main())
    assert first == again != fresh  # kept once, not every call: it would still be in use


def test_a_longer_conn_max_age_is_left_alone(monkeypatch):
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 600)

    def close_at() -> float:
        backend_pid()
        return connection.close_at

    async def main() -> float:
        await sockets.database_sync_to_async(connections.close_all)()
        return await sockets.database_sync_to_async(close_at)()

    import time

    assert 590 < asyncio.run(main()) - time.monotonic() <= 600
