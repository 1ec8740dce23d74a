"""Desk pages of the channels side: the dead-letter list with retry (staff only)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from cxdesk.errors import ApplicationError

from . import selectors
from .models import RawInbound
from .services import raw_inbound_retry


@staff_member_required
def dead_letters(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", RawInbound.Status.FAILED)
    if status not in selectors.DEAD_LETTER_STATUSES:
        status = RawInbound.Status.FAILED
    counts = selectors.dead_letter_counts(user=request.user)
    page = Paginator(selectors.dead_letters(user=request.user, status=status), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "channels_app/dead_letters.html",
        {
            "page": page,
            "status": status,
            "statuses": [(s, RawInbound.Status(s).label, counts.get(s, 0)) for s in selectors.DEAD_LETTER_STATUSES],
        },
    )


@staff_member_required
def dead_letter_raw(request: HttpRequest, pk: int) -> HttpResponse:
    """The raw mail as a download: never rendered (it is whatever a stranger sent)."""
    record = selectors.dead_letter_get(user=request.user, pk=pk)
    if record is None:
        raise Http404
    extension = "eml" if record.content_type == "message/rfc822" else "bin"
    response = HttpResponse(record.raw, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="inbound-{record.pk}.{extension}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@staff_member_required
@require_POST
def dead_letter_retry(request: HttpRequest, pk: int) -> HttpResponse:
    record = selectors.dead_letter_get(user=request.user, pk=pk)
    if record is None:
        raise Http404
    status = record.status
    try:
        result = raw_inbound_retry(record=record)
    except ApplicationError as exc:
        messages.error(request, _("#%(id)s not taken: %(reason)s") % {"id": pk, "reason": exc.message})
    else:
        messages.success(
            request,
            _("#%(id)s taken: message %(message)s in ticket %(ticket)s")
            % {"id": pk, "message": result.message.pk, "ticket": result.ticket.reference},
        )
    return redirect(f"{request.path.rsplit('/', 3)[0]}/?status={status}")
