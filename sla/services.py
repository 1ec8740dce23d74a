"""SLA clocks: apply a policy when a ticket opens, pause while pending, stop on first
response / solve, and mark and escalate breaches. `now` is a parameter everywhere."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from cxdesk.i18n import agent_language
from cxdesk.memo import kept
from tickets import events
from tickets.models import Notification, Ticket
from tickets.notifications import notify

from .clock import Calendar, add_business_minutes, business_minutes_between
from .models import SlaPolicy, TicketSla

log = logging.getLogger(__name__)
ESCALATE_PRIORITY = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}


def policy_for(ticket: Ticket) -> SlaPolicy | None:
    """The most specific active policy: organisation > channel > priority."""
    organization_id = ticket.customer.organization_id
    active = kept(
        "sla.active_policies",
        lambda: list(SlaPolicy.objects.filter(is_active=True).select_related("calendar", "escalate_to")),
    )
    best, best_score = None, -1
    for p in active:
        if p.channel not in ("", ticket.channel) or p.priority not in ("", ticket.priority):
            continue
        if p.organization_id is not None and p.organization_id != organization_id:
            continue
        score = (4 if p.organization_id else 0) + (2 if p.channel else 0) + (1 if p.priority else 0)
        if score > best_score:
            best, best_score = p, score
    return best


def _calendar(policy: SlaPolicy) -> Calendar | None:
    return Calendar.from_model(policy.calendar) if policy.calendar_id else None


@transaction.atomic(savepoint=False)
def sla_apply(*, ticket: Ticket, now: datetime, new: bool = False) -> TicketSla | None:
    """Start (`new`: a ticket just created) or re-target (after a priority/channel change)
    the ticket's SLA clock."""
    policy = policy_for(ticket)
    existing = None if new else TicketSla.objects.select_for_update().filter(ticket=ticket).first()
    if policy is None:
        if existing:
            existing.delete()
        return None
    cal = _calendar(policy)
    start = ticket.created_at or now
    sla = existing or TicketSla(ticket=ticket, started_at=start)
    sla.started_at = start
    sla.policy = policy
    if sla.first_response_met_at is None:
        sla.first_response_due = add_business_minutes(start, policy.first_response_minutes, cal)
    sla.resolution_due = add_business_minutes(start, policy.resolution_minutes, cal)
    sla.save()
    return sla


@transaction.atomic(savepoint=False)  # inside the caller's transaction: no savepoint (two statements)
def sla_status_changed(*, ticket: Ticket, old: str, new: str, now: datetime) -> None:
    rows = TicketSla.objects.select_for_update(of=("self",)).filter(ticket=ticket)
    if Ticket.Status.PENDING in (old, new):
        # Only a pause or its end counts business minutes on the policy's calendar. (Another
        # change reads the clock alone: a one-table statement, planned in a fraction of the
        # three-table join's time — a reopen asks this of every ticket it reopens.)
        rows = rows.select_related("policy__calendar")
    sla = rows.first()
    if sla is None:
        return
    if new == Ticket.Status.PENDING and sla.paused_at is None:
        sla.paused_at = now  # waiting on the customer: the resolution clock stops
    elif old == Ticket.Status.PENDING and sla.paused_at is not None:
        paused = business_minutes_between(sla.paused_at, now, _calendar(sla.policy))
        if sla.resolution_due and not sla.resolved_at:
            sla.resolution_due = (
                add_business_minutes(sla.resolution_due, paused, _calendar(sla.policy))
                if paused
                else sla.resolution_due
            )
        sla.paused_at = None
    if new in (Ticket.Status.SOLVED, Ticket.Status.CLOSED) and sla.resolved_at is None:
        sla.resolved_at = now
    elif old == Ticket.Status.SOLVED and new == Ticket.Status.OPEN:
        sla.resolved_at = None  # reopened: the resolution target is live again
    sla.save()


def sla_first_response(*, ticket_id: int, now: datetime) -> None:
    TicketSla.objects.filter(ticket_id=ticket_id, first_response_met_at=None).update(first_response_met_at=now)


@transaction.atomic
def check_breaches(*, now: datetime) -> list[tuple[int, str]]:
    """Mark every newly breached target, record it on the ticket and escalate."""
    found: list[tuple[int, str]] = []
    frt = (
        TicketSla.objects.select_for_update(of=("self",))
        .select_related("policy", "ticket")
        .filter(
            first_response_met_at=None,
            first_response_breached_at=None,
            first_response_due__lt=now,
            ticket__status__in=Ticket.OPEN_STATUSES,
        )
    )
    for sla in frt:
        sla.first_response_breached_at = now
        sla.save(update_fields=["first_response_breached_at"])
        _escalate(sla, "first_response", now)
        found.append((sla.ticket_id, "first_response"))
    res = (
        TicketSla.objects.select_for_update(of=("self",))
        .select_related("policy", "ticket")
        .filter(
            resolved_at=None,
            resolution_breached_at=None,
            paused_at=None,
            resolution_due__lt=now,
            ticket__status__in=Ticket.OPEN_STATUSES,
        )
    )
    for sla in res:
        sla.resolution_breached_at = now
        sla.save(update_fields=["resolution_breached_at"])
        _escalate(sla, "resolution", now)
        found.append((sla.ticket_id, "resolution"))
    _warn_due_soon(now=now)
    return found


def _warn_due_soon(*, now: datetime) -> None:
    """Tell the assignee once when a target of their ticket falls due within
    CXDESK_SLA_WARNING_MINUTES (a notification in the desk's bell)."""
    soon = now + timedelta(minutes=settings.CXDESK_SLA_WARNING_MINUTES)
    for target in ("first_response", "resolution"):
        done = {
            "first_response": {"first_response_met_at": None},
            "resolution": {"resolved_at": None, "paused_at": None},
        }
        due = (
            TicketSla.objects.select_for_update(of=("self",))
            .select_related("ticket")
            .filter(
                **done[target],
                **{f"{target}_warned_at": None, f"{target}_breached_at": None},
                **{f"{target}_due__gte": now, f"{target}_due__lt": soon},
                ticket__status__in=Ticket.OPEN_STATUSES,
                ticket__assignee__isnull=False,
            )
        )
        for sla in due:
            setattr(sla, f"{target}_warned_at", now)
            sla.save(update_fields=[f"{target}_warned_at"])
            minutes = int((getattr(sla, f"{target}_due") - now).total_seconds() // 60)
            notify(
                user_id=sla.ticket.assignee_id,
                kind=Notification.Kind.SLA_WARNING,
                ticket=sla.ticket,
                text=_warning_text(target, minutes, user_id=sla.ticket.assignee_id),
            )


def _warning_text(target: str, minutes: int, *, user_id: int | None) -> str:
    """The bell's SLA warning, in the agent's desk language."""
    with agent_language(user_id):
        if target == "first_response":
            return _("First response due in %(n)s min") % {"n": minutes}
        return _("Resolution due in %(n)s min") % {"n": minutes}


def _breach_text(target: str, policy: str, *, user_id: int | None) -> str:
    """The bell's SLA breach, in the agent's desk language."""
    with agent_language(user_id):
        if target == "first_response":
            return _("First response target breached (%(policy)s)") % {"policy": policy}
        return _("Resolution target breached (%(policy)s)") % {"policy": policy}


def _escalate(sla: TicketSla, target: str, now: datetime) -> None:
    from tickets.services import ticket_assign, ticket_update

    ticket, policy = sla.ticket, sla.policy
    actions = []
    if policy.escalate_raise_priority and ESCALATE_PRIORITY[ticket.priority] != ticket.priority:
        ticket_update(ticket=ticket, actor=None, priority=ESCALATE_PRIORITY[ticket.priority])
        actions.append("priority raised")
    if policy.escalate_reassign_team_id and policy.escalate_reassign_team_id != ticket.team_id:
        ticket.refresh_from_db()
        ticket_assign(ticket=ticket, assignee=None, team=policy.escalate_reassign_team)
        actions.append("reassigned")
    text = _breach_text(target, policy.name, user_id=ticket.assignee_id)
    notify(user_id=ticket.assignee_id, kind=Notification.Kind.SLA_BREACH, ticket=ticket, text=text)
    if policy.escalate_to_id and policy.escalate_to_id != ticket.assignee_id:
        text = _breach_text(target, policy.name, user_id=policy.escalate_to_id)
        notify(user_id=policy.escalate_to_id, kind=Notification.Kind.SLA_BREACH, ticket=ticket, text=text)
        actions.append("supervisor notified")
    elif policy.escalate_to_id:
        actions.append("supervisor notified")
    events.record(ticket, "sla_breach", target=target, policy=policy.name, at=now.isoformat(), actions=actions)
