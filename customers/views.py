"""Customer-360 in the desk: the full page, identities, merge with confirmation, undo."""

from __future__ import annotations

from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from cxdesk.errors import ApplicationError

from . import gdpr, selectors, services
from .desk_selectors import customer_panel, customer_search, duplicate_suggestions
from .models import CustomerMerge, Identity


def _back(request: HttpRequest, customer_id: int) -> HttpResponse:
    """Back to where the agent was (the ticket's side panel) or to the customer page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("desk-customer", customer_id=customer_id)


def _customer_or_404(request: HttpRequest, customer_id: int):
    customer = (
        selectors.customers_visible_to(agent=request.user)
        .select_related("organization", "merged_into")
        .filter(pk=customer_id)
        .first()
    )
    if customer is None:
        raise Http404("no such customer")
    return customer


@staff_member_required
def customer_list(request: HttpRequest) -> HttpResponse:
    """Find a person: by name, any identity (as typed or normalised), or organisation."""
    q = request.GET.get("q", "")
    context = {"q": q, "results": customer_search(agent=request.user, q=q), "merge_into": None}
    into = request.GET.get("merge_into", "")
    if into.isdecimal():
        context["merge_into"] = _customer_or_404(request, int(into))
    template = "customers/_results.html" if request.htmx else "customers/list.html"
    return render(request, template, context)


@staff_member_required
def customer_detail(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = _customer_or_404(request, customer_id)
    timeline = list(
        selectors.customer_timeline(customer=customer, agent=request.user)
        .select_related("ticket")
        .order_by("-created_at", "-id")[:100]
    )
    candidate = None
    if request.GET.get("merge", "").isdecimal():
        candidate = _customer_or_404(request, int(request.GET["merge"]))
    return render(
        request,
        "customers/customer.html",
        {
            "customer": customer,
            "panel": customer_panel(customer=customer, agent=request.user),
            "timeline": timeline,
            "suggestions": duplicate_suggestions(customer=customer, agent=request.user),
            "merge_candidate": candidate,
            "candidate_panel": customer_panel(customer=candidate, agent=request.user) if candidate else None,
            "attributes_text": "\n".join(f"{k}={v}" for k, v in customer.attributes.items()),
            "can_export": gdpr.can_export_customer(request.user),
            "can_erase": gdpr.can_erase_customer(request.user) and not customer.merged_into_id,
            "confirm_erase": request.GET.get("erase") == "1",
        },
    )


@staff_member_required
@require_POST
def customer_edit(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = _customer_or_404(request, customer_id)
    attributes = {}
    for line in request.POST.get("attributes", "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            attributes[key.strip()[:64]] = value.strip()[:500]
    try:
        services.customer_update(
            customer=customer,
            actor=request.user,
            name=request.POST.get("name", customer.name),
            organization_name=request.POST.get("organization", ""),
            attributes=attributes,
        )
        flash.success(request, _("Saved."))
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("desk-customer", customer_id=customer.pk)


@staff_member_required
@require_POST
def identity_add(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = _customer_or_404(request, customer_id)
    try:
        services.identity_add(
            customer=customer,
            kind=request.POST.get("kind", ""),
            address=request.POST.get("address", ""),
            actor=request.user,
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _back(request, customer.pk)


@staff_member_required
@require_POST
def identity_remove(request: HttpRequest, customer_id: int, identity_id: int) -> HttpResponse:
    customer = _customer_or_404(request, customer_id)
    identity = Identity.objects.filter(pk=identity_id, customer=customer).first()
    if identity is None:
        raise Http404("no such identity")
    try:
        services.identity_remove(identity=identity, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _back(request, customer.pk)


@staff_member_required
@require_POST
def customer_merge(request: HttpRequest, customer_id: int) -> HttpResponse:
    keep = _customer_or_404(request, customer_id)
    other_id = request.POST.get("other", "")
    if not other_id.isdecimal():
        raise Http404("no such customer")
    other = _customer_or_404(request, int(other_id))
    if request.POST.get("confirm") != "yes":
        flash.error(request, _("Confirm the merge first."))
        return redirect(f"/desk/customers/{keep.pk}/?merge={other.pk}")
    try:
        services.merge_customers(keep=keep, other=other, actor=request.user)
        flash.success(
            request, _("Merged %(other)s into %(keep)s. You can undo it below.") % {"other": other, "keep": keep}
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("desk-customer", customer_id=keep.pk)


@staff_member_required
@require_POST
def merge_undo(request: HttpRequest, merge_id: int) -> HttpResponse:
    merge = CustomerMerge.objects.filter(
        pk=merge_id, kept__in=selectors.customers_visible_to(agent=request.user)
    ).first()
    if merge is None:
        raise Http404("no such merge")
    try:
        services.unmerge_customers(merge=merge, actor=request.user)
        flash.success(request, _("Merge undone."))
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("desk-customer", customer_id=merge.kept_id)


@staff_member_required
@require_POST
def customer_export(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = _customer_or_404(request, customer_id)
    try:
        content = gdpr.customer_export(customer=customer, actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return redirect("desk-customer", customer_id=customer.pk)
    return FileResponse(
        content, as_attachment=True, filename=f"customer-{customer.pk}-export.zip", content_type="application/zip"
    )


@staff_member_required
@require_POST
def customer_erase(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = _customer_or_404(request, customer_id)
    if request.POST.get("confirm") != str(customer.pk):
        flash.error(request, _("Type the customer number to confirm the erasure."))
        return redirect(f"/desk/customers/{customer.pk}/?erase=1")
    try:
        counts = gdpr.customer_erase(customer=customer, actor=request.user)
        flash.success(
            request,
            _("Customer erased: %(tickets)s tickets kept anonymously, %(messages)s messages cleared.") % counts,
        )
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return redirect("desk-customer", customer_id=customer.pk)


@staff_member_required
@require_POST
def customer_language(request: HttpRequest, customer_id: int) -> HttpResponse:
    """An agent sets the customer's language (automatic messages follow it)."""
    customer = _customer_or_404(request, customer_id)
    try:
        services.customer_language_set(customer=customer, language=request.POST.get("language", ""), actor=request.user)
    except ApplicationError as exc:
        flash.error(request, exc.message)
    return _back(request, customer.pk)
