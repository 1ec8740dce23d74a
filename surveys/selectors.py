from django.db.models import Avg, Count

from .models import SurveyResponse


def survey_for_ticket(*, ticket) -> SurveyResponse | None:
    return SurveyResponse.objects.filter(ticket=ticket).first()


def customer_satisfaction(*, customer) -> dict:
    return SurveyResponse.objects.filter(ticket__customer=customer, answered_at__isnull=False).aggregate(
        csat=Avg("csat"), ces=Avg("ces"), answers=Count("id")
    )
