import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from cxdesk.cache import count
from cxdesk.degrade import degraded


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per API key (per user for session requests), on the cache — Redis in production: at
    most the rate's number of requests in each fixed window of its period (a minute), counted
    by one counter per key and window; a 429's Retry-After is the window's end. (DRF's own
    throttle keeps every request's time in a list read and written whole by each request:
    1,200 entries at the default rate.) A cache outage allows the request (logged) rather
    than taking the API down."""

    scope = "api"

    def get_cache_key(self, request, view):
        key = request.auth
        if key is not None and hasattr(key, "pk"):
            ident = f"key:{key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        window = int(self.timer() // self.duration)
        self.window_ends = (window + 1) * self.duration
        try:
            return count(self.cache, f"{self.key}:{window}", self.duration + 1) <= self.num_requests
        except Exception as exc:  # noqa: BLE001 - the rate limiter's store is down: allow, log
            degraded("cache (API rate limiting)", exc)
            return True

    def wait(self):
        return max(1.0, self.window_ends - self.timer())


# --- API key guessing: failures counted per client address, on the cache ----------------


def client_ident(request) -> str:
    """The client address as DRF sees it (X-Forwarded-For only through NUM_PROXIES)."""
    return BaseThrottle().get_ident(request) or "unknown"


def _keys(ident: str) -> tuple[str, str]:
    return f"apikey-fail:{ident}:n", f"apikey-fail:{ident}:t"


def key_guess_wait(ident: str) -> int | None:
    """Seconds this address must wait before its next key is even looked at, or None.
    With the cache down nothing is counted: keys are checked as usual (logged)."""
    count_key, start_key = _keys(ident)
    try:
        if (cache.get(count_key) or 0) < settings.CXDESK_API_KEY_FAILURES:
            return None
        started = cache.get(start_key) or time.time()
    except Exception as exc:  # noqa: BLE001
        degraded("cache (API key guessing)", exc)
        return None
    return max(1, int(started + settings.CXDESK_API_KEY_FAILURE_WINDOW - time.time()))


def key_guess_failed(ident: str) -> None:
    try:
        _count_failure(ident)
    except Exception as exc:  # noqa: BLE001
        degraded("cache (API key guessing)", exc)


def _count_failure(ident: str) -> None:
    count_key, start_key = _keys(ident)
    window = settings.CXDESK_API_KEY_FAILURE_WINDOW
    if cache.add(count_key, 1, window):
        cache.set(start_key, time.time(), window)
        return
    try:
        cache.incr(count_key)
    except ValueError:  # expired between add and incr
        cache.add(count_key, 1, window)
        cache.set(start_key, time.time(), window)
