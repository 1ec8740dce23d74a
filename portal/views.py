"""The customer-facing self-service portal (/portal/)."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages as flash
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from customers import services as customer_services
from customers.models import Customer
from cxdesk.errors import ApplicationError
from cxdesk.i18n import clean_language, language_chosen, resolve_language, safe_next
from cxdesk.uploads import uploaded_files
from tickets import services as ticket_services
from tickets.models import Ticket
from tickets.scanning import download_refusal

from . import selectors, services

SESSION_KEY = "portal_customer_id"


def current_customer(request: HttpRequest) -> Customer | None:
    pk = request.session.get(SESSION_KEY)
    customer = Customer.objects.filter(pk=pk, merged_into=None, erased_at=None).first() if pk else None
    if customer is not None and customer.language:
        # The customer's own language wins over the browser's.
        translation.activate(resolve_language(customer.language))
        request.LANGUAGE_CODE = translation.get_language()
    return customer


def portal_login_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        customer = current_customer(request)
        if customer is None:
            return redirect("portal-home")
        request.customer = customer
        return view(request, *args, **kwargs)

    return wrapper


def _files(request: HttpRequest) -> list[tuple[str, bytes, str]]:
    return uploaded_files(request)


def home(request: HttpRequest) -> HttpResponse:
    customer = current_customer(request)
    if customer is None:
        return render(request, "portal/sign_in.html", {"step": request.GET.get("step", "")})
    tickets = list(selectors.portal_tickets(customer=customer)[:200])
    return render(request, "portal/requests.html", {"customer": customer, "tickets": tickets})


@require_POST
def request_sign_in(request: HttpRequest) -> HttpResponse:
    address = request.POST.get("address", "")
    try:
        kind = services.portal_request_sign_in(
            address=address,
            ip=request.META.get("REMOTE_ADDR", ""),
            base_url=request.build_absolute_uri("/").rstrip("/"),
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return render(request, "portal/sign_in.html", {}, status=exc.status_code)
    if kind == "code":
        return render(request, "portal/sign_in.html", {"step": "code", "address": address})
    flash.info(
        request, _("If this address is known to us, we have sent it a sign-in link. It is valid for 15 minutes.")
    )
    return redirect("portal-home")


def redeem_link(request: HttpRequest, token: str) -> HttpResponse:
    customer = services.portal_redeem_link(token=token)
    if customer is None:
        flash.error(request, _("This sign-in link is invalid, used or expired. Ask for a new one."))
        return redirect("portal-home")
    _signed_in(request, customer)
    return redirect("portal-home")


def _signed_in(request: HttpRequest, customer: Customer) -> None:
    request.session.cycle_key()
    request.session[SESSION_KEY] = customer.pk
    # A customer whose language we do not know yet: the one their browser (or switcher) chose.
    customer_services.customer_language_set(
        customer=customer, language=translation.get_language() or "", only_if_unset=True
    )


@require_POST
def language(request: HttpRequest) -> HttpResponse:
    """The portal's language switcher: a cookie for everyone, and the customer's own
    language (automatic messages follow it) when signed in."""
    code = clean_language(request.POST.get("language", ""))
    customer = current_customer(request)
    if customer is not None:
        customer_services.customer_language_set(customer=customer, language=code)
    return language_chosen(request, redirect(safe_next(request, "/portal/")), code)


@require_POST
def redeem_code(request: HttpRequest) -> HttpResponse:
    customer = services.portal_redeem_code(address=request.POST.get("address", ""), code=request.POST.get("code", ""))
    if customer is None:
        flash.error(request, _("That code is not valid. Check it, or ask for a new one."))
        return render(
            request, "portal/sign_in.html", {"step": "code", "address": request.POST.get("address", "")}, status=400
        )
    _signed_in(request, customer)
    return redirect("portal-home")


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    return redirect("portal-home")


def _ticket_or_404(request: HttpRequest, ticket_id: int) -> Ticket:
    ticket = selectors.portal_ticket(customer=request.customer, ticket_id=ticket_id)
    if ticket is None:
        raise Http404(_("No such request."))
    return ticket


@portal_login_required
def ticket_detail(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    if request.method == "POST":
        try:
            ticket_services.customer_reply(
                ticket=ticket, customer=ticket.customer, body=request.POST.get("body", ""), attachments=_files(request)
            )
        except ApplicationError as exc:
            flash.error(request, exc.message)
        return redirect("portal-ticket", ticket_id=ticket.pk)
    return render(
        request, "portal/ticket.html", {"ticket": ticket, "messages_list": selectors.portal_messages(ticket=ticket)}
    )


@portal_login_required
@require_POST
def ticket_status(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    wanted = request.POST.get("status")
    if wanted not in (Ticket.Status.SOLVED, Ticket.Status.OPEN):
        raise Http404
    try:
        ticket_services.ticket_set_status(ticket=ticket, status=wanted, actor=None)
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("portal-ticket", ticket_id=ticket.pk)


@portal_login_required
def new_request(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            ticket = ticket_services.ticket_open(
                customer=request.customer,
                subject=request.POST.get("subject", ""),
                body=request.POST.get("body", ""),
                channel="portal",
                attachments=_files(request),
            )
        except ApplicationError as exc:
            flash.error(request, exc.message)
            return render(request, "portal/new.html", {"form": request.POST}, status=400)
        return redirect("portal-ticket", ticket_id=ticket.pk)
    return render(request, "portal/new.html", {"form": {}})


@portal_login_required
def attachment(request: HttpRequest, attachment_id: int) -> HttpResponse:
    att = selectors.portal_attachment(customer=request.customer, attachment_id=attachment_id)
    if att is None or not att.file:
        raise Http404
    refusal = download_refusal(att)
    if refusal:
        if refusal[0] == "attachment_quarantined":
            reason = _("This file was removed: our virus scanner found a threat in it.")
        else:
            reason = _("This file is being checked for viruses. Please try again in a moment.")
        return HttpResponse(reason, status=403, content_type="text/plain; charset=utf-8")
    return FileResponse(
        att.file.open("rb"), as_attachment=True, filename=att.filename, content_type="application/octet-stream"
    )
