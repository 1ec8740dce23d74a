from celery import shared_task
from django.conf import settings

from .services import page_views_expire


@shared_task
def expire_page_views() -> int:
    """Beat: delete visitor-trail rows older than CXDESK_ACTIVITY_RETENTION_DAYS."""
    return page_views_expire(days=settings.CXDESK_ACTIVITY_RETENTION_DAYS)
