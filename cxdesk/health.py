"""Dependencies that may be down, and how the app degrades instead of failing.

- `cache_get` / `cache_set`: the cache (Redis in production) read and written so that an
  outage is logged (at most once a minute) and treated as a miss. Presence and rate
  limiting use them: when Redis is down, presence is empty and requests are allowed.
- `check_cache()`, `check_channel_layer()`, `check_database()`, `check_outbox()`: for a
  readiness endpoint (`/readyz`); each returns (ok, detail) and never raises.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache

log = logging.getLogger(__name__)

_last_warning: dict[str, float] = {}


def degraded(what: str, exc: BaseException) -> None:
    """Log that `what` is unavailable and we carry on without it (rate-limited per `what`)."""
    now = time.monotonic()
    if now - _last_warning.get(what, -1e9) >= 60:
        _last_warning[what] = now
        log.warning("%s unavailable, degrading: %s: %s", what, type(exc).__name__, exc)


def cache_get(key: str, default: Any = None) -> Any:
    try:
        return cache.get(key, default)
    except Exception as exc:  # noqa: BLE001 - a cache outage is a miss
        degraded("cache", exc)
        return default


def cache_set(key: str, value: Any, timeout: float | None = None) -> bool:
    try:
        cache.set(key, value, timeout)
        return True
    except Exception as exc:  # noqa: BLE001 - a cache outage loses the write, nothing else
        degraded("cache", exc)
        return False


def check_cache() -> tuple[bool, str]:
    try:
        cache.set("cxdesk:health", "1", 10)
        ok = cache.get("cxdesk:health") == "1"
        return ok, "ok" if ok else "cache did not return what was written"
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"


def check_channel_layer() -> tuple[bool, str]:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return False, "no channel layer configured"
    try:
        async_to_sync(layer.group_send)("cxdesk.health", {"type": "health.ping"})
        return True, "ok"
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"


def check_database() -> tuple[bool, str]:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"


def check_outbox() -> tuple[bool, str]:
    """Not a readiness failure by itself: reports the pending/failed backlog and the oldest due row."""
    try:
        from django.utils import timezone

        from outbox.models import OutboxTask
        from outbox.services import backlog

        counts = backlog()
        oldest = (
            OutboxTask.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        lag = int((timezone.now() - oldest).total_seconds()) if oldest else 0
        return True, f"pending={counts.get('pending', 0)} failed={counts.get('failed', 0)} oldest_due_s={lag}"
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"
