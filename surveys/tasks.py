from celery import shared_task


@shared_task(acks_late=True)
def send_survey(ticket_id: int) -> int | None:
    from .services import survey_send

    survey = survey_send(ticket_id=ticket_id)
    return survey.pk if survey else None


def survey_handler(task) -> str:
    """Outbox handler for `send_survey` rows."""
    from .services import survey_send

    survey = survey_send(ticket_id=task.object_id)
    return f"survey {survey.pk}" if survey else "none"
