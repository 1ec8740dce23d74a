from django.db import transaction


def on_ticket_updated(sender, *, ticket, changes=None, **kwargs):
    status = (changes or {}).get("status")
    if status and status[1] == "solved":
        from .tasks import send_survey

        transaction.on_commit(lambda: send_survey.delay(ticket.pk))
