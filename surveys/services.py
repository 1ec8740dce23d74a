"""Satisfaction surveys: sent on the conversation's channel when a ticket is solved."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from cxdesk.errors import ApplicationError
from cxdesk.i18n import for_customer
from tickets.models import Ticket

from .models import SurveyResponse

CHANGE_WINDOW = timedelta(days=7)


def _hash(token: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()


@transaction.atomic
def survey_send(*, ticket_id: int) -> SurveyResponse | None:
    """Create the survey and queue its message on the channel the customer last used.
    Idempotent: one survey per ticket."""
    from tickets.services import automatic_message_queue, reply_target

    ticket = Ticket.objects.select_for_update().select_related("customer").filter(pk=ticket_id).first()
    if ticket is None or ticket.status != Ticket.Status.SOLVED or SurveyResponse.objects.filter(ticket=ticket).exists():
        return None
    try:
        target = reply_target(ticket=ticket)
    except ApplicationError:
        return None  # no channel to reach them (e.g. an API-only ticket without identities)
    token = secrets.token_urlsafe(24)
    survey = SurveyResponse.objects.create(ticket=ticket, token_hash=_hash(token), channel=target.channel)
    link = f"{settings.PUBLIC_URL}/survey/{token}/"
    with for_customer(ticket.customer):
        language = translation.get_language()
        if target.channel == "email":
            options = "\n".join(f"  {n} – {link}?csat={n}" for n in range(5, 0, -1))
            body = _("How did we do with %(reference)s “%(subject)s”? One click is enough:") % {
                "reference": ticket.reference,
                "subject": ticket.subject,
            }
            body = f"{body}\n\n{options}\n"
        else:
            body = _("How did we do with %(reference)s? Rate us 1–5: %(link)s") % {
                "reference": ticket.reference,
                "link": link,
            }
    automatic_message_queue(ticket=ticket, target=target, body=body, kind="survey", language=language)
    return survey


def survey_for_token(token: str) -> SurveyResponse | None:
    return SurveyResponse.objects.select_related("ticket").filter(token_hash=_hash(token)).first()


@transaction.atomic
def survey_answer(
    *, survey: SurveyResponse, csat: int | None = None, ces: int | None = None, comment: str | None = None
) -> SurveyResponse:
    survey = SurveyResponse.objects.select_for_update().get(pk=survey.pk)
    if survey.answered_at and timezone.now() - survey.answered_at > CHANGE_WINDOW:
        raise ApplicationError(_("This survey can no longer be changed."), code="survey_closed", status=409)
    if csat is not None:
        if not 1 <= csat <= 5:
            raise ApplicationError(_("Satisfaction is 1 to 5."), code="invalid_csat", fields={"csat": ["1–5"]})
        survey.csat = csat
    if ces is not None:
        if not 1 <= ces <= 7:
            raise ApplicationError(_("Effort is 1 to 7."), code="invalid_ces", fields={"ces": ["1–7"]})
        survey.ces = ces
    if comment is not None:
        survey.comment = comment[:5000]
    survey.answered_at = survey.answered_at or timezone.now()
    survey.save()
    from tickets import events

    events.record(survey.ticket, "survey_answered", csat=survey.csat, ces=survey.ces)
    return survey
