"""Dependencies that may be down, and how the app degrades instead of failing.

`cache_get` / `cache_set`: the cache (Redis in production) read and written so that an
outage is logged (at most once a minute) and treated as a miss. Presence and rate limiting
use them: when Redis is down, presence is empty and requests are allowed. `/readyz`
(cxdesk/health.py) reports the outage.
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
