"""The one Celery task that runs outbox rows, and the sweeper (beat)."""

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def run_outbox_task(task_id: int) -> str:
    from .services import run

    return run(task_id)


@shared_task(ignore_result=True)
def sweep_outbox() -> dict:
    from .services import sweep

    return sweep()
