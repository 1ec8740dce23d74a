from celery import shared_task

MAX_ATTEMPTS = 8


@shared_task(bind=True, acks_late=True, max_retries=MAX_ATTEMPTS)
def deliver_webhook(self, delivery_id: int) -> str:
    from django.conf import settings

    from .services import DeliveryRetry, webhook_deliver

    try:
        return webhook_deliver(delivery_id=delivery_id, max_attempts=MAX_ATTEMPTS)
    except DeliveryRetry as exc:
        base = getattr(settings, "CXDESK_WEBHOOK_RETRY_BASE", 10.0)
        raise self.retry(exc=exc, countdown=min(3600, base * 2**self.request.retries)) from exc
