"""`Idempotency-Key` on POSTs that create: a retried request gets the first answer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from cxdesk.errors import ApplicationError

from .models import IdempotencyRecord

WAIT_SECONDS = 10
STALE = timedelta(minutes=1)


def idempotent(request, create: Callable[[], Response]) -> Response:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return create()
    if len(key) > 200:
        raise ApplicationError("Idempotency-Key is longer than 200 characters", code="invalid_idempotency_key")
    digest = hashlib.sha256(request.method.encode() + request.path.encode() + request.body).hexdigest()
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                user=request.user, key=key, method=request.method, path=request.path[:500], request_hash=digest
            )
    except IntegrityError:
        return _replay(request, key, digest, create)
    return _run(record, create)


def _run(record: IdempotencyRecord, create: Callable[[], Response]) -> Response:
    try:
        response = create()
    except Exception:
        record.delete()  # a failed attempt must not block a corrected retry
        raise
    if response.status_code >= 400:
        record.delete()
        return response
    IdempotencyRecord.objects.filter(pk=record.pk).update(status_code=response.status_code, response_body=response.data)
    return response


def _replay(request, key: str, digest: str, create: Callable[[], Response]) -> Response:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        record = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
        if record is None:  # the first attempt failed and was removed: this one runs
            return idempotent(request, create)
        if record.request_hash != digest:
            raise ApplicationError(
                "this Idempotency-Key was used with a different request", code="idempotency_key_reused", status=422
            )
        if record.status_code is not None:
            response = Response(record.response_body, status=record.status_code)
            response["Idempotent-Replayed"] = "true"
            return response
        if record.created_at < timezone.now() - STALE:
            record.delete()
            continue
        if time.monotonic() > deadline:
            raise ApplicationError(
                "a request with this Idempotency-Key is still in progress", code="idempotency_in_progress", status=409
            )
        time.sleep(0.05)
