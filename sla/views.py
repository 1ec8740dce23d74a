"""Reports in the desk: the measures with server-side SVG bars, and CSV export."""

import csv

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from audit import services as audit
from channels_app.selectors import invitation_measures
from cxdesk.errors import ApplicationError

from .api import period
from .metrics import call_totals, measures, volume_by_hour

COLUMNS = [
    ("tickets", _("Tickets")), ("backlog", _("Backlog")), ("first_response_minutes", _("First response (min)")),
    ("resolution_minutes", _("Resolution (min)")), ("handle_minutes", _("Handle (min)")),
    ("first_contact_resolution", _("FCR")), ("reopen_rate", _("Reopen rate")), ("csat", _("CSAT")), ("ces", _("CES")),
    ("sla_first_response_attainment", _("SLA 1st response")), ("sla_resolution_attainment", _("SLA resolution")),
    ("calls", _("Calls")), ("calls_answered", _("Answered")), ("calls_missed", _("Missed")),
    ("call_handle_minutes", _("Call AHT (min)")),
]  # fmt: skip
DIMENSION_LABELS = {"channel": _("Channel"), "team": _("Team"), "agent": _("Agent")}


@staff_member_required
def dashboard(request):
    try:
        start, end, by = period(request.GET)
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain")
    rows = measures(start=start, end=end, by=by, agent=request.user)
    if request.GET.get("format") == "csv":
        audit.data_exported(
            what="sla.measures", actor=request.user, params={"by": by, "start": str(start), "end": str(end)}
        )
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="cxdesk-measures-{by}.csv"'
        writer = csv.writer(response)
        writer.writerow([by, *[key for key, _ in COLUMNS]])
        for row in rows:
            writer.writerow([row[by], *[row[key] if row[key] is not None else "" for key, _ in COLUMNS]])
        return response
    hours = volume_by_hour(start=start, end=end, agent=request.user)
    per_hour = [0] * 24
    for h in hours:
        per_hour[h["hour"]] += h["tickets"]
    peak = max(per_hour) or 1
    bars = [
        {"hour": i, "n": n, "x": i * 20, "height": round(100 * n / peak), "y": 100 - round(100 * n / peak)}
        for i, n in enumerate(per_hour)
    ]
    table = [{"name": row[by], "cells": [row[key] for key, _ in COLUMNS]} for row in rows]
    return render(
        request,
        "sla/dashboard.html",
        {
            "rows": table,
            "columns": COLUMNS,
            "by": by,
            "by_label": DIMENSION_LABELS.get(by, by),
            "start": start,
            "end": end,
            "bars": bars,
            "calls": call_totals(start=start, end=end),
            "invitations": invitation_measures(start=start, end=end),
        },
    )
