"""SLA state for the desk: filter an inbox queryset, and a ticket's targets."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from tickets.models import Ticket

from .models import TicketSla

STATES = {"breached": _("SLA breached"), "due_soon": _("SLA due within an hour")}


def filter_by_sla_state(qs: QuerySet[Ticket], *, state: str, now: datetime) -> QuerySet[Ticket]:
    if state == "breached":
        return qs.filter(
            Q(sla__first_response_breached_at__isnull=False) | Q(sla__resolution_breached_at__isnull=False)
        )
    if state == "due_soon":
        soon = now + timedelta(hours=1)
        frt = Q(
            sla__first_response_met_at=None, sla__first_response_breached_at=None, sla__first_response_due__lte=soon
        )
        res = Q(
            sla__resolved_at=None, sla__paused_at=None, sla__resolution_breached_at=None, sla__resolution_due__lte=soon
        )
        return qs.filter(frt | res)
    return qs


def ticket_sla(*, ticket: Ticket) -> TicketSla | None:
    return TicketSla.objects.select_related("policy").filter(ticket=ticket).first()
