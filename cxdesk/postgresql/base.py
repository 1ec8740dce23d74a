"""The PostgreSQL backend (ENGINE "cxdesk.postgresql"): Django's, with the health check
(CONN_HEALTH_CHECKS) asked only of a connection that may have gone stale.

Django checks a persistent connection with a `SELECT 1` before the first statement of every
request — a round trip per request, on a webhook's acknowledgement a quarter of its time
(bench/README.md). Here a connection that served the previous request without error less
than `HEALTH_CHECK_AFTER` seconds ago is used as it is; one idle for longer is checked as
Django checks it. A database restarted within that second costs at most one failed request
per process (its error closes the connection at the request's end, as in Django); a
restart takes longer than that, so the requests after it find the connection checked.

Where the server binds the parameters (`server_side_binding`, on by default here), a list
goes to it as a binary array. psycopg's default for `%s` is text, which quotes and escapes
every element in Python: 50 timestamps in 306 µs against 37 in binary, 50 texts in 162
against 26, 50 JSON values in 220 against 15. Lists are what a batch's rows travel in (Django's
`bulk_create` and `tickets.deferred.insert` send one array per column) and `AnyOf`'s ids. A
list of only NULLs, or an empty one, still goes as text: psycopg has no element type for it."""

from __future__ import annotations

import time

from django.db.backends.postgresql import base
from psycopg.adapt import AdaptersMap
from psycopg.types.array import ListBinaryDumper

HEALTH_CHECK_AFTER = 1.0  # seconds a connection may rest and still be used unchecked


class DatabaseWrapper(base.DatabaseWrapper):
    _served_at = float("-inf")  # when it last served a request without a connection error

    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        if self.settings_dict["OPTIONS"].get("server_side_binding") is True:
            params["context"] = AdaptersMap(params["context"])  # Django's is shared (lru_cache)
            params["context"].register_dumper(list, ListBinaryDumper)
        return params

    def close_if_unusable_or_obsolete(self) -> None:
        # Called as a request (or a Celery task) starts and as it ends. At the end, a
        # connection that was used (checked or opened for it) and raised no error served.
        if self.connection is not None and self.health_check_done and not self.errors_occurred:
            self._served_at = time.monotonic()
        super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self._served_at < HEALTH_CHECK_AFTER
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
