"""API keys, idempotency records and outgoing webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import requests
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from cxdesk.errors import ApplicationError
from cxdesk.http import UnsafeTarget, check_url, excerpt, safe_request
from cxdesk.memo import kept

from .models import ApiKey, WebhookDelivery, WebhookSubscription

KEY_PREFIX = "cxk_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_key_create(*, user, name: str, scope: str = ApiKey.Scope.READ_WRITE, actor=None) -> tuple[ApiKey, str]:
    """A new key for `user`. Returns (record, the key) — the key is not stored and cannot be shown again."""
    if scope not in ApiKey.Scope.values:
        raise ApplicationError(
            f"scope must be one of {ApiKey.Scope.values}", code="invalid_scope", fields={"scope": ["invalid"]}
        )
    if not user.is_active:
        raise ApplicationError("the user is inactive", code="inactive_user")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey.objects.create(
        user=user, name=(name or "API key")[:100], prefix=prefix, key_hash=_hash(key), scope=scope
    )
    audit.api_key_created(key=record, actor=actor)
    return record, key


def api_key_authenticate(key: str) -> ApiKey | None:
    """The record of a live key, with its user; None for anything else. A key in use is kept
    by the process for a second (`cxdesk.memo.kept`; an unknown one is asked each time):
    revoking it or deactivating its user — a write to either table — is seen at once by
    the process that wrote, within a second by the others."""
    if not key.startswith(KEY_PREFIX):
        return None
    digest = _hash(key)
    record = kept(
        f"integrations.api_key.{digest}",
        lambda: ApiKey.objects.select_related("user").filter(key_hash=digest, revoked_at=None).first(),
        keep_none=False,
    )
    if record is None or not record.user.is_active:
        return None
    now = timezone.now()
    if record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=record.pk).update(last_used_at=now)  # at most once a minute
        record.last_used_at = now
    return record


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor=None) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.api_key_revoked(key=key, actor=actor)
    return key


# --- outgoing webhooks ----------------------------------------------------------

MAX_CONSECUTIVE_FAILURES = 10


@transaction.atomic
def webhook_subscribe(*, url: str, events: list[str], user=None) -> tuple[WebhookSubscription, str]:
    unknown = sorted(set(events) - set(WebhookSubscription.EVENTS))
    if not events or unknown:
        raise ApplicationError(
            f"events must be a non-empty subset of {list(WebhookSubscription.EVENTS)}",
            code="invalid_events",
            fields={"events": [f"unknown: {', '.join(unknown)}" if unknown else "required"]},
        )
    webhook_url_check(url)
    secret = secrets.token_urlsafe(32)
    sub = WebhookSubscription.objects.create(url=url, events=sorted(set(events)), secret=secret, created_by=user)
    return sub, secret


def webhook_url_check(url: str) -> None:
    """Refuse URLs the worker must never call: non-http(s), or a host that is (or resolves
    to) a private, loopback, link-local or metadata address (unless CXDESK_ALLOW_PRIVATE_TARGETS)."""
    try:
        check_url(url)
    except UnsafeTarget as exc:
        raise ApplicationError(f"url refused: {exc}", code="unsafe_url", fields={"url": [str(exc)]}) from None
    except requests.RequestException as exc:
        raise ApplicationError(f"url refused: {exc}", code="unsafe_url", fields={"url": ["host not found"]}) from None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` — the X-CXDesk-Signature header."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_enqueue(*, event: str, data: dict[str, Any]) -> list[int]:
    """Create a delivery per active subscription to `event`; sent by Celery after commit."""
    active = kept("integrations.active_subscriptions", lambda: list(WebhookSubscription.objects.filter(is_active=True)))
    subs = [s for s in active if event in s.events]
    if not subs:
        return []
    payload = {"event": event, "created_at": timezone.now().isoformat(), "data": data}
    deliveries = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(subscription=s, event=event, payload=payload) for s in subs]
    )
    from outbox.services import enqueue

    for d in deliveries:
        enqueue("deliver_webhook", object_id=d.pk)  # same transaction as the event
    return [d.pk for d in deliveries]


class DeliveryRetry(Exception):
    pass


def webhook_deliver(*, delivery_id: int, max_attempts: int) -> str:
    """One attempt. Raises DeliveryRetry for a failure that should be retried. The URL is
    checked again here (DNS may have changed since the subscription); the log keeps the
    status and a short sanitised excerpt of the answer, never the body."""
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.FAILED):
        return delivery.status if delivery else "missing"
    sub = delivery.subscription
    if not sub.is_active:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED, error="subscription disabled"
        )
        return "failed"
    body = json.dumps({"id": delivery.pk, **delivery.payload}, separators=(",", ":")).encode()
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "cxdesk-webhooks/1",
        "X-CXDesk-Event": delivery.event,
        "X-CXDesk-Delivery": str(delivery.pk),
        "X-CXDesk-Signature": sign(sub.secret, body, ts),
    }
    started = time.monotonic()
    code, error = None, ""
    try:
        response = safe_request(
            "POST", sub.url, data=body, headers=headers, timeout=(5, 10), max_bytes=64 * 1024, allow_redirects=False
        )
        code = response.status_code
        ok = 200 <= code < 300
        if not ok:
            error = f"HTTP {code}: {excerpt(response.text)}"
    except requests.RequestException as exc:
        ok, error = False, excerpt(f"{type(exc).__name__}: {exc}", 300)
    latency = int((time.monotonic() - started) * 1000)
    attempts = delivery.attempts + 1
    with transaction.atomic():
        sub = WebhookSubscription.objects.select_for_update().get(pk=sub.pk)
        if ok:
            status = WebhookDelivery.Status.DELIVERED
            sub.consecutive_failures = 0
        else:
            status = WebhookDelivery.Status.RETRYING if attempts < max_attempts else WebhookDelivery.Status.FAILED
            sub.consecutive_failures += 1
            if sub.consecutive_failures >= MAX_CONSECUTIVE_FAILURES and sub.is_active:
                sub.is_active = False
                sub.disabled_at = timezone.now()
                sub.disabled_reason = (
                    f"disabled after {sub.consecutive_failures} failed deliveries in a row; last: {error}"[:500]
                )
                from cxdesk.realtime import broadcast_on_commit

                broadcast_on_commit("desk", "webhook.disabled", subscription_id=sub.pk, url=sub.url)
        sub.save(update_fields=["consecutive_failures", "is_active", "disabled_at", "disabled_reason"])
        if status == WebhookDelivery.Status.RETRYING and not sub.is_active:
            status, error = WebhookDelivery.Status.FAILED, f"{error} (subscription disabled)"
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=attempts,
            response_code=code,
            latency_ms=latency,
            error=error,
            last_attempt_at=timezone.now(),
        )
    if status == WebhookDelivery.Status.RETRYING:
        raise DeliveryRetry(error)
    return status


def deliver_handler(task) -> str:
    """Outbox handler for `deliver_webhook` rows: one attempt, retried with backoff."""
    from django.conf import settings

    from outbox.services import Retry

    from .tasks import MAX_ATTEMPTS

    try:
        return webhook_deliver(delivery_id=task.object_id, max_attempts=MAX_ATTEMPTS)
    except DeliveryRetry as exc:
        base = getattr(settings, "CXDESK_WEBHOOK_RETRY_BASE", 10.0)
        raise Retry(str(exc), countdown=min(3600, base * 2 ** max(0, task.attempts - 1))) from exc
