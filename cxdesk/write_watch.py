"""One execute wrapper on every database connection that tells the desk's caches about writes
(INSERT/UPDATE/DELETE/TRUNCATE, the ORM's, `update()` and raw SQL alike): the inbox counts'
generation (`tickets.inbox_cache`), the bell's count preloaded for a request (`tickets.notifications`)
and the configuration each process keeps (`cxdesk.memo.kept`). Each watcher registers with
`on_write`, which installs the wrapper the first time. A statement that reads pays one
string check; a write, one anchored match for the table it writes (`target`), shared by the
watchers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

log = logging.getLogger(__name__)

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "TRUNCA")
_watchers: list[Callable[[str, Any], None]] = []


def is_write(sql: object) -> bool:
    return isinstance(sql, str) and sql[:16].lstrip()[:6].upper() in WRITE_VERBS


_TARGET = re.compile(r'\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:ONLY\s+)?("(?:[^"]|"")+"|[\w.]+)', re.IGNORECASE)


def target(sql: str) -> str:
    """The table a write statement writes (`INSERT INTO t`, `UPDATE t`, `DELETE FROM t`), not
    its columns, its subqueries nor the tables an UPDATE reads FROM; a TRUNCATE, or anything
    else, whole. A watcher looks for its tables here: searching a whole INSERT was a
    measurable part of every write (issue 12)."""
    found = _TARGET.match(sql)
    return found.group(1) if found else sql


def on_write(watcher: Callable[[str, Any], None]) -> None:
    """`watcher(written, connection)` after each write statement, `written` being its
    `target`: the table it writes as the statement names it, or a TRUNCATE whole (once per
    watcher)."""
    install()
    if watcher not in _watchers:
        _watchers.append(watcher)


def _watch(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    if is_write(sql):
        written = target(sql)
        for watcher in _watchers:
            try:
                watcher(written, context["connection"])
            except Exception:  # never into the writer's path
                log.exception("a write watcher failed")
    return result


def _install_on(connection, **kwargs) -> None:
    if _watch not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _watch)


def install() -> None:
    """Watch every database connection's writes (from the first `on_write`; idempotent)."""
    connection_created.connect(_install_on, dispatch_uid="cxdesk.write_watch")
    for alias in connections:  # connections opened before (e.g. by a check at start-up)
        connection = connections[alias]
        if connection.connection is not None:
            _install_on(connection)
