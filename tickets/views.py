"""The agent workspace (HTML + htmx partials). Thin: selectors read, services write."""

from __future__ import annotations

from urllib.parse import urlencode

import requests
from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from channels_app.models import Channel, Inbox
from channels_app.sanitize import remote_image_urls
from customers.desk_selectors import customer_panel
from cxdesk.errors import ApplicationError
from cxdesk.http import safe_request
from cxdesk.uploads import uploaded_files
from routing.services import agent_set_status
from sla.selectors import STATES as SLA_STATES
from sla.selectors import ticket_sla
from surveys.selectors import survey_for_ticket

from . import selectors, services
from .models import CannedResponse, Team, Ticket, TicketMove


def _ticket_or_404(request: HttpRequest, ticket_id: int) -> Ticket:
    ticket = selectors.ticket_get_for_agent(agent=request.user, ticket_id=ticket_id)
    if ticket is None:
        raise Http404("no such ticket")
    return ticket


def _inbox_context(request: HttpRequest) -> dict:
    filters = selectors.inbox_filters_clean(request.GET)
    view = filters["view"]
    tickets, cursor = selectors.inbox_page(
        agent=request.user,
        view=view,
        sort=filters["sort"],
        before=filters["before"],
        **{k: filters[k] for k in selectors.INBOX_FILTERS},
    )
    query_base = urlencode({k: v for k, v in filters.items() if v and k != "before"})
    return {
        "tickets": tickets,
        "cursor": cursor,
        "view": view,
        "views": selectors.INBOX_VIEWS,
        "counts": selectors.inbox_counts(agent=request.user),
        "filters": filters,
        "query_base": query_base,
        "live_filters": filters,
        "channels": Channel.choices,
        "statuses": Ticket.Status.choices,
        "priorities": Ticket.Priority.choices,
        "inboxes": Inbox.objects.order_by("name").values_list("pk", "name"),
        "sla_states": SLA_STATES,
        "mentions": selectors.mentions_unread(agent=request.user),
    }


@staff_member_required
def inbox(request: HttpRequest) -> HttpResponse:
    context = _inbox_context(request)
    if request.htmx and request.htmx.target == "inbox-list":
        return render(request, "tickets/_inbox_list.html", context)
    return render(request, "tickets/inbox.html", context)


def _ticket_context(request: HttpRequest, ticket: Ticket) -> dict:
    panel = customer_panel(customer=ticket.customer, current=ticket)
    identities = panel.identities
    try:
        default = services.reply_target(ticket=ticket).channel
    except ApplicationError:
        default = ""
    choices = []
    for identity in identities:
        for channel, kind in services.CHANNEL_IDENTITY_KIND.items():
            if kind == identity.kind:
                choices.append((channel, identity))
    return {
        "ticket": ticket,
        "timeline": selectors.ticket_timeline_items(ticket=ticket),
        "panel": panel,
        "reply_choices": choices,
        "default_channel": default,
        "agents": get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username"),
        "teams": Team.objects.order_by("name"),
        "statuses": Ticket.Status.choices,
        "priorities": Ticket.Priority.choices,
        "moves": TicketMove.objects.filter(source=ticket, undone_at=None).select_related("target")[:5],
        "tags": ", ".join(t.name for t in ticket.tags.all()),
        "sla": ticket_sla(ticket=ticket),
        "survey": survey_for_ticket(ticket=ticket),
        "canned": [
            (c.title, services.canned_render(canned=c, ticket=ticket, agent=request.user))
            for c in CannedResponse.objects.filter(is_active=True)
        ],
        "now": timezone.now(),
    }


@staff_member_required
def ticket_detail(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    services.mentions_mark_read(user=request.user, ticket=ticket)
    return render(request, "tickets/ticket.html", _ticket_context(request, ticket))


@staff_member_required
def ticket_timeline(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    return render(
        request,
        "tickets/_timeline.html",
        {"ticket": ticket, "timeline": selectors.ticket_timeline_items(ticket=ticket)},
    )


@staff_member_required
def message_image(request: HttpRequest, ticket_id: int, message_id: int) -> HttpResponse:
    """A remote image of one message, fetched by the server when an agent clicks "Load images"
    (the CSP keeps the browser itself from loading remote images). Only addresses that are in
    that message, only images, through the SSRF-safe client."""
    ticket = _ticket_or_404(request, ticket_id)
    message = ticket.messages.filter(pk=message_id).first()
    url = request.GET.get("u", "")
    if message is None or url not in remote_image_urls(message.body_html):
        raise Http404("no such image in this message")
    try:
        fetched = safe_request("GET", url, timeout=(3, 8), max_bytes=5 * 1024 * 1024)
    except requests.RequestException:
        return HttpResponse(status=502)
    content_type = fetched.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if fetched.status_code != 200 or content_type not in IMAGE_TYPES:
        return HttpResponse(status=502)
    response = HttpResponse(fetched.content, content_type=content_type)
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon"}


def _done(request: HttpRequest, ticket: Ticket) -> HttpResponse:
    return redirect("desk-ticket", ticket_id=ticket.pk)


@staff_member_required
@require_POST
def ticket_reply(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    try:
        files = uploaded_files(request)
        if request.POST.get("internal"):
            services.note_add(ticket=ticket, author=request.user, body=request.POST.get("body", ""), attachments=files)
        else:
            services.reply(
                ticket=ticket,
                author=request.user,
                body=request.POST.get("body", ""),
                channel=request.POST.get("channel") or None,
                status_after=request.POST.get("status_after") or None,
                attachments=files,
            )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _done(request, ticket)


@staff_member_required
@require_POST
def ticket_update(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    post = request.POST
    kwargs: dict = {}
    for field, qs in (
        ("assignee", get_user_model().objects.filter(is_staff=True, is_active=True)),
        ("team", Team.objects.all()),
    ):
        if field not in post:
            continue
        value = post[field]
        kwargs[field] = qs.filter(pk=int(value)).first() if value.isdigit() else None
        if value and kwargs[field] is None:
            return HttpResponseBadRequest(f"unknown {field}")
    if "tags" in post:
        kwargs["tags"] = [t for t in post["tags"].replace(",", " ").split() if t]
    try:
        services.ticket_update(
            ticket=ticket,
            actor=request.user,
            status=post.get("status") or None,
            priority=post.get("priority") or None,
            **kwargs,
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _done(request, ticket)


@staff_member_required
@require_POST
def ticket_merge(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    ref = request.POST.get("target", "").upper().removeprefix("CX-").strip()
    target = selectors.ticket_get_for_agent(agent=request.user, ticket_id=int(ref)) if ref.isdigit() else None
    if target is None:
        flash.error(request, "No such ticket to merge into.")
        return _done(request, ticket)
    try:
        services.merge_tickets(source=ticket, target=target, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return _done(request, ticket)
    flash.success(request, f"Merged {ticket.reference} into {target.reference}.")
    return _done(request, target)


@staff_member_required
@require_POST
def ticket_split(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    ids = [int(i) for i in request.POST.getlist("message") if i.isdigit()]
    try:
        move = services.split_ticket(ticket=ticket, message_ids=ids, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return _done(request, ticket)
    flash.success(request, f"Split into {move.target.reference}.")
    return _done(request, move.target)


@staff_member_required
@require_POST
def move_undo(request: HttpRequest, move_id: int) -> HttpResponse:
    move = (
        TicketMove.objects.filter(pk=move_id, source__in=selectors.tickets_visible_to(agent=request.user))
        .select_related("source")
        .first()
    )
    if move is None:
        raise Http404("no such merge or split")
    try:
        services.undo_move(move=move, actor=request.user)
        flash.success(request, "Undone.")
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _done(request, move.source)


@staff_member_required
@require_POST
def my_status(request: HttpRequest) -> HttpResponse:
    """The agent's availability for routing (available / away / offline)."""
    try:
        agent_set_status(user=request.user, status=request.POST.get("status", ""))
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect(request.POST.get("next") or "desk-inbox")
