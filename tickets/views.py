"""The agent workspace (HTML). Thin: selectors to read, services to write."""

from __future__ import annotations

from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from cxdesk.errors import ApplicationError

from . import selectors, services
from .models import Ticket


@staff_member_required
def inbox(request: HttpRequest) -> HttpResponse:
    status = request.GET.getlist("status") or list(Ticket.OPEN_STATUSES)
    tickets = selectors.ticket_list_for_agent(agent=request.user, status=status)
    return render(request, "tickets/inbox.html", {"tickets": tickets, "status": status})


def _ticket_or_404(request: HttpRequest, ticket_id: int) -> Ticket:
    ticket = selectors.ticket_get_for_agent(agent=request.user, ticket_id=ticket_id)
    if ticket is None:
        raise Http404("no such ticket")
    return ticket


@staff_member_required
def ticket_detail(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    timeline = selectors.ticket_timeline(ticket=ticket)
    return render(request, "tickets/ticket.html", {"ticket": ticket, "timeline": timeline})


@staff_member_required
@require_POST
def ticket_reply(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    try:
        if request.POST.get("internal"):
            services.note_add(ticket=ticket, author=request.user, body=request.POST.get("body", ""))
        else:
            services.reply(
                ticket=ticket,
                author=request.user,
                body=request.POST.get("body", ""),
                channel=request.POST.get("channel") or None,
                status_after=request.POST.get("status_after") or None,
            )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("desk-ticket", ticket_id=ticket.pk)
