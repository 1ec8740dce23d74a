"""Thin Celery tasks of the tickets app: ids in, one service call, idempotent, retried."""

from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, acks_late=True, max_retries=5)
def scan_attachment(self, attachment_id: int) -> str:
    from .scanning import ScanFailed, attachment_scan

    try:
        return attachment_scan(attachment_id=attachment_id, final_attempt=self.request.retries >= self.max_retries)
    except ScanFailed as exc:
        raise self.retry(exc=exc, countdown=min(600, 10 * 2**self.request.retries)) from exc
