from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per API key (per user for session requests), on the cache — Redis in production."""

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
