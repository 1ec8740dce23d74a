import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")

app = Celery("cxdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from cxdesk.observability import connect_celery_signals  # noqa: E402

connect_celery_signals()
