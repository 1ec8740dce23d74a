"""Who gets a conversation: rules, continuity, then the team's strategy. Safe under
concurrency: the ticket row and the team's routing row are locked, so two messages at
once never give a ticket two owners and round-robin/least-loaded see committed loads."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from cxdesk.memo import kept
from outbox.services import batch as outbox_batch
from tickets import events
from tickets.models import Message, Team, Ticket
from tickets.services import ticket_assign, ticket_set_tags, ticket_update

from .models import AgentProfile, RoutingConfig, Rule

log = logging.getLogger(__name__)


def rule_matches(rule: Rule, ticket: Ticket, message: Message | None, now: datetime) -> bool:
    c = rule.conditions or {}
    if c.get("channel") and (message.channel if message else ticket.channel) not in c["channel"]:
        return False
    if c.get("inbox") and ticket.inbox_id not in c["inbox"]:
        return False
    if c.get("keywords"):
        text = f"{ticket.subject}\n{message.body_text if message else ''}".lower()
        if not any(re.search(r"\b" + re.escape(k.lower()) + r"\b", text) for k in c["keywords"]):
            return False
    if c.get("organization") and ticket.customer.organization_id != c["organization"]:
        return False
    for key, value in (c.get("customer_attributes") or {}).items():
        if ticket.customer.attributes.get(key) != value:
            return False
    if "business_hours" in c:
        from sla.clock import Calendar, business_minutes_between
        from sla.models import BusinessCalendar

        cal = BusinessCalendar.objects.filter(teams=ticket.team_id).first() or BusinessCalendar.objects.first()
        if cal is not None:
            open_now = business_minutes_between(now, now + timezone.timedelta(minutes=1), Calendar.from_model(cal)) > 0
            if open_now != bool(c["business_hours"]):
                return False
    return True


def rules_apply(
    *, ticket: Ticket, trigger: str, message: Message | None = None, now: datetime | None = None
) -> list[str]:
    """Run the active rules for `trigger`; returns the names of the rules that fired."""
    now = now or timezone.now()
    fired = []
    for rule in _rules(trigger):
        if not rule_matches(rule, ticket, message, now):
            continue
        a = rule.actions or {}
        kwargs = {}
        if a.get("team"):
            kwargs["team"] = Team.objects.filter(pk=a["team"]).first()
        if a.get("agent"):
            kwargs["assignee"] = get_user_model().objects.filter(pk=a["agent"], is_staff=True).first()
        ticket_update(ticket=ticket, actor=None, priority=a.get("priority"), **kwargs)
        if a.get("tags"):
            current = set(ticket.tags.values_list("name", flat=True))
            ticket_set_tags(ticket=ticket, tags=current | set(a["tags"]), actor=None)
        if a.get("reply") and ticket.messages.filter(direction="inbound").exists():
            from cxdesk.errors import ApplicationError
            from tickets.services import automatic_message_queue, reply_target

            try:  # an automatic answer: not an agent's first response
                automatic_message_queue(
                    ticket=ticket, target=reply_target(ticket=ticket), body=a["reply"], kind="rule_reply"
                )
            except ApplicationError as exc:
                log.warning("rule %s: canned reply not sent: %s", rule.name, exc.message)
        ticket.refresh_from_db()
        fired.append(rule.name)
    return fired


def agent_loads(user_ids: list[int]) -> dict[int, int]:
    rows = (
        Ticket.objects.filter(assignee_id__in=user_ids, status__in=Ticket.OPEN_STATUSES)
        .values("assignee")
        .annotate(n=Count("id"))
    )
    loads = dict.fromkeys(user_ids, 0)
    loads.update({r["assignee"]: r["n"] for r in rows})
    return loads


def _config_for(ticket: Ticket) -> RoutingConfig | None:
    """The inbox's routing config, else the team's; locked (round robin moves its cursor).
    Which inboxes and teams have one is kept by the process (`cxdesk.memo.kept`)."""
    configured = kept("routing.configured", lambda: list(RoutingConfig.objects.values_list("inbox_id", "team_id")))
    if ticket.inbox_id and any(inbox_id == ticket.inbox_id for inbox_id, _ in configured):
        cfg = RoutingConfig.objects.select_for_update().filter(inbox_id=ticket.inbox_id).first()
        if cfg:
            return cfg
    if ticket.team_id and any(team_id == ticket.team_id for _, team_id in configured):
        return RoutingConfig.objects.select_for_update().filter(team_id=ticket.team_id).first()
    return None


def _candidates(team: Team, channel: str) -> list[int]:
    profiles = AgentProfile.objects.filter(
        user__in=team.members.filter(is_active=True, is_staff=True), status=AgentProfile.Status.AVAILABLE
    )
    out = []
    for p in profiles.order_by("user_id"):
        if p.channels and channel not in p.channels:
            continue
        out.append((p.user_id, p.max_concurrent))
    loads = agent_loads([uid for uid, _ in out])
    return [uid for uid, cap in out if loads[uid] < cap]


def _locked_tickets(ids: Iterable[int]) -> dict[int, Ticket]:
    """The tickets to route, row-locked in id order (two routers never wait on each other
    in a cycle)."""
    ids = sorted(set(ids))
    if not ids:  # Django would build the whole query (~1 ms of Python) only to find it empty
        return {}
    return {
        t.pk: t
        for t in Ticket.objects.select_for_update(of=("self",), no_key=True)
        .select_related("customer", "inbox__default_team")
        .filter(pk__in=ids)
        .order_by("pk")
    }


@transaction.atomic
def route_ticket(
    *, ticket_id: int, trigger: str, message_id: int | None = None, now: datetime | None = None
) -> int | None:
    """Rules, continuity, strategy. Returns the assignee id (or None)."""
    return _route(_locked_tickets([ticket_id]).get(ticket_id), trigger=trigger, message_id=message_id, now=now)


def route_tickets(
    items: list[tuple[int, str, int | None]], *, now: datetime | None = None, known: dict[int, Ticket] | None = None
) -> list[int | None]:
    """`route_ticket` for many (ticket id, trigger, message id) at once — a drainer's batch:
    one transaction (an outbox batch: the outbox rows and timeline events it writes go in
    one INSERT each), the tickets locked and read in one statement. All or nothing.
    `known`: tickets created by the caller's own uncommitted transaction, as it holds them
    (no other transaction sees them, so there is nothing to lock or read back)."""
    known = known or {}
    with outbox_batch(kinds=()), events.batched():
        wanted = (ticket_id for ticket_id, _trigger, _message_id in items if ticket_id not in known)
        tickets = {**_locked_tickets(wanted), **known}
        return [
            _route(tickets.get(ticket_id), trigger=trigger, message_id=message_id, now=now)
            for ticket_id, trigger, message_id in items
        ]


def _rules(trigger: str) -> list[Rule]:
    return kept(f"routing.rules.{trigger}", lambda: list(Rule.objects.filter(trigger=trigger, is_active=True)))


def _route(ticket: Ticket | None, *, trigger: str, message_id: int | None, now: datetime | None) -> int | None:
    if ticket is None or not ticket.is_open or ticket.merged_into_id:
        return None
    # The message is read only when something looks at it (a rule, the channel of the
    # candidates): most routings of a continuing conversation need neither.
    message = Message.objects.filter(pk=message_id).first() if message_id and _rules(trigger) else None
    rules_apply(ticket=ticket, trigger=trigger, message=message, now=now)
    if ticket.team_id is None:
        # The inbox's team, else the desk's default team: every entry point gets routed.
        team = ticket.inbox.default_team if ticket.inbox_id else None
        team = team or kept("routing.default_team", lambda: Team.objects.filter(is_default=True).first())
        if team:
            ticket_assign(ticket=ticket, assignee=ticket.assignee, team=team)
    # Continuity: the agent who owns the conversation keeps it, unless away → their team.
    if ticket.assignee_id:
        profile = AgentProfile.objects.filter(user_id=ticket.assignee_id).first()
        if profile is None or profile.status == AgentProfile.Status.AVAILABLE:
            return ticket.assignee_id
        team = ticket.team or Team.objects.filter(members=ticket.assignee_id).first()
        ticket_assign(ticket=ticket, assignee=None, team=team)
    if trigger == Rule.Trigger.TICKET_UPDATED or ticket.team_id is None:
        return ticket.assignee_id
    config = _config_for(ticket)
    if config is None or config.strategy == RoutingConfig.Strategy.MANUAL:
        return None
    if message is None and message_id:
        message = Message.objects.filter(pk=message_id).first()
    candidates = _candidates(ticket.team, message.channel if message else ticket.channel)
    if not candidates:
        return None
    if config.strategy == RoutingConfig.Strategy.ROUND_ROBIN:
        last = config.last_assigned_id or 0
        chosen = next((uid for uid in candidates if uid > last), candidates[0])
    else:
        loads = agent_loads(candidates)
        chosen = min(candidates, key=lambda uid: (loads[uid], uid))
    config.last_assigned_id = chosen
    config.save(update_fields=["last_assigned"])
    ticket_assign(ticket=ticket, assignee=get_user_model().objects.get(pk=chosen), team=ticket.team)
    return chosen


@transaction.atomic
def agent_set_status(*, user, status: str) -> AgentProfile:
    if status not in AgentProfile.Status.values:
        from cxdesk.errors import ApplicationError

        raise ApplicationError(f"status must be one of {AgentProfile.Status.values}", code="invalid_status")
    profile, _ = AgentProfile.objects.get_or_create(user=user)
    profile.status = status
    profile.save(update_fields=["status"])
    return profile
