from celery import shared_task


@shared_task
def check_breaches() -> int:
    from django.utils import timezone

    from .services import check_breaches as run

    return len(run(now=timezone.now()))
