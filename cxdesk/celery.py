import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")

app = Celery("cxdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from cxdesk.observability import connect_celery_signals  # noqa: E402

connect_celery_signals()


@worker_process_init.connect(weak=False, dispatch_uid="cxdesk-worker-nice")
def _lower_priority(**kwargs) -> None:
    """Background work yields the CPU to the web processes on a shared box: a burst of
    webhooks is answered first and drained right after (CXDESK_WORKER_NICE, 0 to disable)."""
    from django.conf import settings

    if settings.CXDESK_WORKER_NICE:
        os.nice(settings.CXDESK_WORKER_NICE)
