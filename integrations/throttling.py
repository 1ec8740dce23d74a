from rest_framework.throttling import SimpleRateThrottle

from cxdesk.degrade import degraded


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per API key (per user for session requests), on the cache — Redis in production.
    A cache outage allows the request (logged) rather than taking the API down."""

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
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the rate limiter's store is down: allow, log
            degraded("cache (API rate limiting)", exc)
            return True
