from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation

from cxdesk.errors import ApplicationError
from cxdesk.i18n import resolve_language

from .services import survey_answer, survey_for_token


def _int(value):
    return int(value) if value and str(value).isdecimal() else None


def answer(request: HttpRequest, token: str) -> HttpResponse:
    """One click from the email/SMS records the rating; the page asks for effort and a comment."""
    survey = survey_for_token(token)
    if survey is None:
        raise Http404
    if survey.ticket.customer.language:  # the page speaks the language the survey was sent in
        translation.activate(resolve_language(survey.ticket.customer.language))
        request.LANGUAGE_CODE = translation.get_language()
    error = ""
    data = request.POST if request.method == "POST" else request.GET
    if any(k in data for k in ("csat", "ces", "comment")):
        try:
            survey = survey_answer(
                survey=survey, csat=_int(data.get("csat")), ces=_int(data.get("ces")), comment=data.get("comment")
            )
        except ApplicationError as exc:
            error = exc.message
    return render(
        request,
        "surveys/answer.html",
        {"survey": survey, "error": error, "scale5": range(1, 6), "scale7": range(1, 8)},
        status=400 if error else 200,
    )
