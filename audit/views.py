"""/desk/audit/: the audit log for administrators, filtered, newest first, keyset-paginated."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from cxdesk.errors import ApplicationError

from . import selectors
from .models import AuditEntry

PAGE = 50
FILTERS = ("actor", "action", "since", "until")


@staff_member_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not selectors.can_view_audit(request.user):
        raise PermissionDenied("only administrators can read the audit log")
    params = {k: request.GET.get(k, "").strip() for k in FILTERS}
    error = ""
    try:
        qs = selectors.audit_entries(viewer=request.user, **params)
    except ApplicationError as exc:
        error, qs = exc.message, AuditEntry.objects.none()
    before = request.GET.get("before", "")
    if before.isdecimal() and len(before) < 19:
        qs = qs.filter(id__lt=int(before))  # ids grow with created_at: a stable keyset
    entries = list(qs.order_by("-id")[: PAGE + 1])
    more = len(entries) > PAGE
    entries = entries[:PAGE]
    query = urlencode({k: v for k, v in params.items() if v})
    return render(
        request,
        "audit/log.html",
        {
            "entries": entries,
            "params": params,
            "error": error,
            "actions": AuditEntry.Action.choices,
            "actors": get_user_model().objects.filter(is_staff=True).order_by("username").only("id", "username"),
            "older": f"?{query}&before={entries[-1].pk}" if more else "",
            "first_page": bool(before),
            "query": query,
        },
        status=400 if error else 200,
    )
