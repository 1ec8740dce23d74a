"""One error shape for the whole API: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from .errors import ApplicationError

log = logging.getLogger("cxdesk.api")


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        log.info("API %s: %s", exc.code, exc.message)
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_handler(exc, context)
    if response is None:
        return None
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()}
            message = "invalid input: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        else:
            message = " ".join(str(m) for m in (detail if isinstance(detail, list) else [detail]))
        code = "invalid"
    else:
        message = str(getattr(exc, "detail", exc))
        code = getattr(getattr(exc, "detail", None), "code", None) or getattr(exc, "default_code", "error")
    response.data = {"error": {"code": str(code), "message": message, "fields": fields}}
    return response
