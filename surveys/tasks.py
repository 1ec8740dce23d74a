from celery import shared_task


@shared_task(acks_late=True)
def send_survey(ticket_id: int) -> int | None:
    from .services import survey_send

    survey = survey_send(ticket_id=ticket_id)
    return survey.pk if survey else None
