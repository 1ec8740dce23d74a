"""Thin Celery tasks: ids in, one service call, idempotent, retried with backoff.

Work that must not be lost (replies, acknowledgements, media, parked statuses) goes
through the outbox (`outbox.services.enqueue`); these tasks stay for direct callers."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, max_retries=8)
def send_message(self, message_id: int) -> str:
    from .outbound import Retry, send_stored_message

    try:
        return send_stored_message(message_id)
    except Retry as exc:
        raise self.retry(exc=exc, countdown=exc.countdown) from exc


@shared_task(bind=True, acks_late=True, max_retries=5)
def fetch_attachment(self, attachment_id: int) -> str:
    from .media import MediaError, fetch_attachment_media

    try:
        return fetch_attachment_media(attachment_id)
    except MediaError as exc:
        if exc.permanent:
            log.warning("media for attachment %s cannot be fetched: %s", attachment_id, exc)
            return "failed"
        raise self.retry(exc=exc, countdown=min(600, 10 * 2**self.request.retries)) from exc


@shared_task(acks_late=True)
def reconcile_twilio() -> dict[str, int]:
    from .reconcile import reconcile_twilio as run

    return run()


@shared_task(acks_late=True)
def send_auto_acknowledgement(message_id: int) -> int | None:
    from .automations import auto_acknowledge

    ack = auto_acknowledge(message_id=message_id)
    return ack.pk if ack else None


@shared_task
def poll_imap() -> dict:
    from .imap import poll_all

    return poll_all()


@shared_task(ignore_result=True)
def drain_webhooks(slot: int | None = None) -> int:
    """Ingest the stored webhook deliveries (channels_app/webhook_queue.py). Not acks_late:
    a drainer that dies leaves its rows pending, and the next delivery or the sweep wakes
    another."""
    from .webhook_queue import drain

    return drain(slot=slot)


@shared_task(ignore_result=True)
def drain_stale_webhooks() -> int:
    from .webhook_queue import drain_stale

    return drain_stale()
