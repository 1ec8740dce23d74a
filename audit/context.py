"""The request being served, so that records written deep in a service or a signal
receiver know the actor, API key, IP address and user agent without threading the
request through every call. Set by `AuditContextMiddleware`; empty in tasks/commands."""

from __future__ import annotations

from contextvars import ContextVar

from django.http import HttpRequest

_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def current_request() -> HttpRequest | None:
    return _request.get()


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
