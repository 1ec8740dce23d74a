"""The agent workspace (HTML + htmx partials). Thin: selectors read, services write."""

from __future__ import annotations

from urllib.parse import urlencode

import requests
from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from customers.desk_selectors import customer_panel
from cxdesk.errors import ApplicationError
from cxdesk.http import safe_request
from cxdesk.sanitize import remote_image_urls
from cxdesk.uploads import uploaded_files
from routing.services import agent_set_status
from sla.selectors import STATES as SLA_STATES
from sla.selectors import ticket_sla
from surveys.selectors import survey_for_ticket

from . import notifications, selectors, services
from .inbox_cache import fragment_html, inbox_page_data, view_counts_html
from .inbox_rows import inbox_rows_html
from .models import Channel, Team, Ticket, TicketMove


def _ticket_or_404(request: HttpRequest, ticket_id: int) -> Ticket:
    ticket = selectors.ticket_get_for_agent(agent=request.user, ticket_id=ticket_id)
    if ticket is None:
        raise Http404("no such ticket")
    return ticket


def _inbox_list_context(request: HttpRequest) -> dict:
    """What the list partial shows (the htmx swap of #inbox-list): rows, cursor, filters."""
    filters = selectors.inbox_filters_clean(request.GET)
    tickets, cursor = selectors.inbox_page(
        agent=request.user,
        view=filters["view"],
        sort=filters["sort"],
        before=filters["before"],
        **{k: filters[k] for k in selectors.INBOX_FILTERS},
    )
    saved_id = request.GET.get("saved", "")
    rows = inbox_rows_html(tickets)
    return {
        "tickets": tickets,
        "rows": rows,
        # Joined here, not looped over in the template (each row is HTML already).
        "rows_html": SafeString("".join(f"{row}\n  " for row in rows)),
        "cursor": cursor,
        "view": filters["view"],
        "filters": filters,
        "query_base": urlencode({k: v for k, v in filters.items() if v and k != "before"}),
        "live_filters": {**filters, "saved": saved_id if saved_id.isdecimal() else ""},
    }


def _inbox_context(request: HttpRequest) -> dict:
    """The whole page: the list plus the sidebar (views and saved views with capped counts,
    one query each) and the filter and bulk-action choices - both kept in the cache until a
    write moves its generation (tickets.inbox_cache). The sidebar and the choices are
    fragments rendered once per process for each key below (everything they show)."""
    context = _inbox_list_context(request)
    filters = context["filters"]
    (saved, counts, saved_counts), (inboxes, agents, teams) = inbox_page_data(agent=request.user)
    saved_id = request.GET.get("saved", "")
    saved_active = int(saved_id) if saved_id.isdecimal() else None
    choices = {
        "channels": Channel.choices,
        "statuses": Ticket.Status.choices,
        "priorities": Ticket.Priority.choices,
        "sla_states": SLA_STATES,
        "filters": filters,
        "inboxes": inboxes,
        "agents": agents,
        "teams": teams,
    }
    # What the filter selects show of the filters (not q, view, before: outside the fragment).
    shown = tuple(filters[k] for k in ("channel", "status", "priority", "inbox_id", "tag", "sla", "sort"))
    return {
        **context,
        "saved_views": saved,
        "saved_active": saved_active,
        "sidebar": view_counts_html(
            counts=counts, saved_views=saved, saved_counts=saved_counts, view=filters["view"], saved_active=saved_active
        ),
        "filter_fields": fragment_html("tickets/_inbox_choices.html#filters", (shown, inboxes), choices),
        "bulk_fields": fragment_html("tickets/_inbox_choices.html#bulk", (agents, teams), choices),
        "counts": counts,
        "saved_counts": saved_counts,
    }


@staff_member_required
def inbox(request: HttpRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "split-rows":
        # The ticket page's split view (wide screens only): the inbox the agent came from.
        filters = selectors.inbox_filters_clean(request.GET)
        rows, _cursor = selectors.inbox_page(
            agent=request.user, view=filters["view"], sort=filters["sort"], limit=30,
            **{k: filters[k] for k in selectors.INBOX_FILTERS},
        )  # fmt: skip
        current = request.GET.get("current", "")
        return render(
            request,
            "tickets/_split_rows.html",
            {"rows": inbox_rows_html(rows, current_id=int(current) if current.isdecimal() else 0)},
        )
    if request.htmx and request.htmx.target == "inbox-list":
        # Filters and paging swap the list only: no counts, no sidebar.
        return render(request, "tickets/_inbox_list.html", _inbox_list_context(request))
    return render(request, "tickets/inbox.html", _inbox_context(request))


def _agents():
    return get_user_model().objects.filter(is_staff=True, is_active=True).order_by("first_name", "username")


def _ticket_context(request: HttpRequest, ticket: Ticket) -> dict:
    moves = list(
        TicketMove.objects.filter(Q(source=ticket) | Q(target=ticket), undone_at=None)
        .select_related("source", "target")
        .order_by("-created_at", "-id")[:10]
    )
    panel = customer_panel(customer=ticket.customer, current=ticket, agent=request.user)
    identities = panel.identities
    try:
        target = services.reply_target(ticket=ticket)
        default = target.channel
    except ApplicationError:
        target, default = None, ""
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
        "agents": _agents(),
        "teams": Team.objects.order_by("name"),
        "statuses": Ticket.Status.choices,
        "priorities": Ticket.Priority.choices,
        "moves": moves,
        "open_moves": {m.pk for m in moves},
        "tags": ", ".join(t.name for t in ticket.tags.all()),
        "sla": ticket_sla(ticket=ticket),
        "survey": survey_for_ticket(ticket=ticket),
        # Each canned response in the customer's language when it has that translation.
        "canned": [
            (c.title, services.canned_render(canned=c, ticket=ticket, agent=request.user))
            for c in selectors.canned_for_language(language=ticket.customer.language)
        ],
        "customer_language": ticket.customer.language,
        "now": timezone.now(),
        # Offered when the agent is about to answer on WhatsApp (the customer last wrote there).
        "whatsapp_templates": _whatsapp_templates(ticket, target) if default == Channel.WHATSAPP else [],
    }


def _whatsapp_templates(ticket: Ticket, target=None) -> list[dict]:
    """The WhatsApp inbox's approved templates, offered only while its 24-hour window is
    closed for this customer (the adapter says so)."""
    try:
        target = target or services.reply_target(ticket=ticket, channel=Channel.WHATSAPP)
    except ApplicationError:
        return []
    if target.channel != Channel.WHATSAPP:
        return []
    problem = target.inbox.adapter.can_send(
        inbox=target.inbox, identity=target.identity, channel=target.channel, ticket=ticket
    )
    return target.inbox.adapter.templates(target.inbox) if problem else []


@staff_member_required
@require_POST
def ticket_template(request: HttpRequest, ticket_id: int) -> HttpResponse:
    """Send an approved WhatsApp template (the window is closed for free text)."""
    ticket = _ticket_or_404(request, ticket_id)
    name, _sep, language = request.POST.get("template", "").partition("|")
    allowed = {(t["name"], t.get("language", "en")) for t in _whatsapp_templates(ticket)}
    if (name, language) not in allowed:
        flash.error(request, _("Choose one of the inbox's approved templates."))
        return _done(request, ticket)
    try:
        services.reply(
            ticket=ticket,
            author=request.user,
            body=_("[WhatsApp template: %(name)s]") % {"name": name},
            channel=Channel.WHATSAPP,
            template={"name": name, "language": {"code": language}},
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _done(request, ticket)


@staff_member_required
def ticket_detail(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    notifications.notifications_mark_read(user=request.user, ticket=ticket)
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
        kwargs[field] = qs.filter(pk=int(value)).first() if value.isdecimal() else None
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
    target = selectors.ticket_get_for_agent(agent=request.user, ticket_id=int(ref)) if ref.isdecimal() else None
    if target is None:
        flash.error(request, _("No such ticket to merge into."))
        return _done(request, ticket)
    try:
        services.merge_tickets(source=ticket, target=target, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return _done(request, ticket)
    flash.success(
        request, _("Merged %(source)s into %(target)s.") % {"source": ticket.reference, "target": target.reference}
    )
    return _done(request, target)


@staff_member_required
@require_POST
def ticket_split(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    ids = [int(i) for i in request.POST.getlist("message") if i.isdecimal()]
    try:
        move = services.split_ticket(ticket=ticket, message_ids=ids, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return _done(request, ticket)
    flash.success(request, _("Split into %(ref)s.") % {"ref": move.target.reference})
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
        flash.success(request, _("Undone."))
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


def _ids(values) -> list[int]:
    return [int(v) for v in values if str(v).isdecimal()][: services.BULK_MAX]


@staff_member_required
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Selected inbox rows: assign, set status/priority, add/remove tags, or merge into one."""
    post = request.POST
    ids = _ids(post.getlist("ids"))
    if not ids:
        flash.error(request, _("Select tickets first."))
        return redirect(_inbox_back(request))
    try:
        if post.get("action") == "merge":
            target = post.get("merge_into", "")
            results = services.tickets_bulk_merge(
                actor=request.user, ids=ids, target_id=int(target) if target.isdecimal() else ids[0]
            )
        else:
            kwargs: dict = {}
            if post.get("assignee"):
                value = post["assignee"]
                kwargs["assignee"] = (
                    None if value == "none" else _agents().filter(pk=value).first() if value.isdecimal() else None
                )
                if value not in ("none",) and kwargs["assignee"] is None:
                    return HttpResponseBadRequest("unknown assignee")
            if post.get("team"):
                value = post["team"]
                kwargs["team"] = (
                    None if value == "none" else Team.objects.filter(pk=value).first() if value.isdecimal() else None
                )
                if value != "none" and kwargs["team"] is None:
                    return HttpResponseBadRequest("unknown team")
            results = services.tickets_bulk_update(
                actor=request.user,
                ids=ids,
                status=post.get("status") or None,
                priority=post.get("priority") or None,
                add_tags=post.get("add_tags", "").replace(",", " ").split(),
                remove_tags=post.get("remove_tags", "").replace(",", " ").split(),
                **kwargs,
            )
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return redirect(_inbox_back(request))
    done = sum(r.status == "done" for r in results)
    refused = [r for r in results if r.status != "done"]
    if done:
        flash.success(request, ngettext("%(n)d ticket updated.", "%(n)d tickets updated.", done) % {"n": done})
    for r in refused[:5]:
        flash.error(request, f"CX-{r.id}: {r.message}")
    return redirect(_inbox_back(request))


def _inbox_back(request: HttpRequest) -> str:
    """Back to the inbox view the form was posted from (only a desk address)."""
    target = request.POST.get("next", "")
    if target.startswith("/desk/") and url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return target
    return "/desk/"


@staff_member_required
@require_POST
def saved_view_save(request: HttpRequest) -> HttpResponse:
    from django.http import QueryDict

    filters = QueryDict(request.POST.get("query", ""))
    try:
        view = services.saved_view_save(
            owner=request.user,
            name=request.POST.get("name", ""),
            filters=filters,
            shared=bool(request.POST.get("shared")),
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return redirect(_inbox_back(request))
    flash.success(request, _("View “%(name)s” saved.") % {"name": view.name})
    return redirect(f"/desk/?{urlencode(view.filters)}&saved={view.pk}")


@staff_member_required
@require_POST
def saved_view_delete(request: HttpRequest, view_id: int) -> HttpResponse:
    view = selectors.saved_view_get(agent=request.user, view_id=view_id)
    if view is None:
        raise Http404("no such view")
    try:
        services.saved_view_delete(view=view, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("/desk/")


@staff_member_required
def notification_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "tickets/_notifications.html", {"items": notifications.notifications_recent(user=request.user)}
    )


@staff_member_required
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Follow a notification: it (and the rest about that ticket) is read, the ticket opens."""
    note = notifications.notification_get(user=request.user, notification_id=notification_id)
    if note is None:
        raise Http404("no such notification")
    notifications.notifications_mark_read(user=request.user, ids=[note.pk])
    anchor = f"#message-{note.message_id}" if note.message_id else ""
    return redirect(reverse("desk-ticket", args=[note.ticket_id]) + anchor)


@staff_member_required
@require_POST
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    notifications.notifications_mark_read(user=request.user)
    if request.htmx:
        return render(
            request, "tickets/_notifications.html", {"items": notifications.notifications_recent(user=request.user)}
        )
    return redirect(request.POST.get("next") or "desk-inbox")
