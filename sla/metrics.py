"""The measures, the same definitions on every channel, from aggregate queries.

- first response time: created → first agent reply (tickets with a reply), average minutes
- resolution time: created → solved (solved tickets), average minutes
- handle time: first agent reply → solved (agent-side working span), average minutes
- first-contact resolution: solved with exactly one agent contact (a reply or an answered
  call) and never reopened, share of solved
- reopen rate: solved tickets reopened at least once, share of solved
- CSAT / CES: averages of survey answers (when the surveys app is installed)
- backlog: tickets open (new / open / pending) now
- volume: tickets created, by channel and by hour of day (UTC)
- SLA attainment: targets met / targets due (first response and resolution)
- calls (voice): calls started in the period — answered, missed (neither answered nor a
  voicemail), voicemails, and average handle time (talk time of answered calls), by the
  call's channel, its ticket's team or the agent who answered
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, ExtractHour

from channels_app.models import Call
from tickets.models import Message, Ticket
from tickets.selectors import tickets_visible_to

DIMENSIONS = {"channel": "channel", "team": "team__name", "agent": "assignee__username"}


def _minutes(value) -> float | None:
    return round(value.total_seconds() / 60, 1) if value is not None else None


def _base(start: datetime, end: datetime, agent=None):
    """Tickets created in [start, end); with `agent`, only those the agent may see."""
    qs = Ticket.objects.all() if agent is None else tickets_visible_to(agent=agent)
    return qs.filter(created_at__gte=start, created_at__lt=end, merged_into=None)


def measures(*, start: datetime, end: datetime, by: str = "channel", agent=None) -> list[dict]:
    """One row per value of the dimension (channel, team or agent) for tickets created in [start, end)."""
    field = DIMENSIONS.get(by, "channel")
    agent_replies = (
        Message.objects.filter(ticket=OuterRef("pk"), direction=Message.Direction.OUTBOUND, author__isnull=False)
        .order_by()
        .values("ticket")
        .annotate(n=Count("id"))
        .values("n")
    )
    answered_calls = (
        Call.objects.filter(message__ticket=OuterRef("pk"), answered_at__isnull=False)
        .order_by()
        .values("message__ticket")
        .annotate(n=Count("id"))
        .values("n")
    )
    dur = DurationField()
    qs = (
        _base(start, end, agent)
        .annotate(replies=Coalesce(Subquery(agent_replies), 0) + Coalesce(Subquery(answered_calls), 0))
        .values(key=F(field))
        .annotate(
            tickets=Count("id"),
            solved=Count("id", filter=Q(solved_at__isnull=False)),
            backlog=Count("id", filter=Q(status__in=Ticket.OPEN_STATUSES)),
            frt=Avg(
                ExpressionWrapper(F("first_response_at") - F("created_at"), output_field=dur),
                filter=Q(first_response_at__isnull=False),
            ),
            resolution=Avg(
                ExpressionWrapper(F("solved_at") - F("created_at"), output_field=dur), filter=Q(solved_at__isnull=False)
            ),
            handle=Avg(
                ExpressionWrapper(F("solved_at") - F("first_response_at"), output_field=dur),
                filter=Q(solved_at__isnull=False, first_response_at__isnull=False),
            ),
            fcr=Count("id", filter=Q(solved_at__isnull=False, replies=1, reopen_count=0)),
            reopened=Count("id", filter=Q(solved_at__isnull=False, reopen_count__gt=0)),
            frt_due=Count("sla", filter=Q(sla__first_response_due__isnull=False)),
            frt_met=Count(
                "sla",
                filter=Q(
                    sla__first_response_due__isnull=False,
                    sla__first_response_breached_at__isnull=True,
                    sla__first_response_met_at__isnull=False,
                ),
            ),
            res_due=Count("sla", filter=Q(sla__resolution_due__isnull=False, sla__resolved_at__isnull=False)),
            res_met=Count("sla", filter=Q(sla__resolved_at__isnull=False, sla__resolution_breached_at__isnull=True)),
        )
        .order_by("key")
    )
    satisfaction = _satisfaction(start, end, field, agent)
    calls = call_measures(start=start, end=end, by=by)
    rows = []
    for r in qs:
        solved = r["solved"] or 0
        sat = satisfaction.get(r["key"], {})
        rows.append(
            {
                by: r["key"] or "—",
                "tickets": r["tickets"],
                "backlog": r["backlog"],
                "solved": solved,
                "first_response_minutes": _minutes(r["frt"]),
                "resolution_minutes": _minutes(r["resolution"]),
                "handle_minutes": _minutes(r["handle"]),
                "first_contact_resolution": round(r["fcr"] / solved, 3) if solved else None,
                "reopen_rate": round(r["reopened"] / solved, 3) if solved else None,
                "csat": sat.get("csat"),
                "ces": sat.get("ces"),
                "sla_first_response_attainment": round(r["frt_met"] / r["frt_due"], 3) if r["frt_due"] else None,
                "sla_resolution_attainment": round(r["res_met"] / r["res_due"], 3) if r["res_due"] else None,
                **calls.pop(r["key"] or "—", NO_CALLS),
            }
        )
    # Calls whose key has no ticket created in the period (a call on an older ticket).
    for key, figures in sorted(calls.items()):
        rows.append({by: key, **dict.fromkeys(TICKET_KEYS), "tickets": 0, "backlog": 0, "solved": 0, **figures})
    return rows


TICKET_KEYS = (
    "first_response_minutes", "resolution_minutes", "handle_minutes", "first_contact_resolution", "reopen_rate",
    "csat", "ces", "sla_first_response_attainment", "sla_resolution_attainment",
)  # fmt: skip
NO_CALLS = {"calls": 0, "calls_answered": 0, "calls_missed": 0, "voicemails": 0, "call_handle_minutes": None}
CALL_DIMENSIONS = {"channel": "message__channel", "team": "message__ticket__team__name", "agent": "agent__username"}


def _call_figures() -> dict:
    return {
        "calls": Count("id"),
        "answered": Count("id", filter=Q(answered_at__isnull=False)),
        "voicemails": Count("id", filter=Q(answered_at__isnull=True, voicemail=True)),
        "aht": Avg("duration", filter=Q(answered_at__isnull=False, duration__isnull=False)),
    }


def _call_row(r: dict) -> dict:
    return {
        "calls": r["calls"],
        "calls_answered": r["answered"],
        "calls_missed": r["calls"] - r["answered"] - r["voicemails"],
        "voicemails": r["voicemails"],
        "call_handle_minutes": round(r["aht"] / 60, 1) if r["aht"] is not None else None,
    }


def call_measures(*, start: datetime, end: datetime, by: str = "channel") -> dict[str, dict]:
    """Calls started in [start, end) by the call's channel, its ticket's team or the agent
    who answered: counts, and the average handle time (talk time of answered calls)."""
    field = CALL_DIMENSIONS.get(by, "message__channel")
    rows = (
        Call.objects.filter(started_at__gte=start, started_at__lt=end)
        .values(key=F(field))
        .annotate(**_call_figures())
        .order_by("key")
    )
    return {r["key"] or "—": _call_row(r) for r in rows}


def call_totals(*, start: datetime, end: datetime) -> dict:
    """All calls of the period (the Reports page's figures), with the answer rate."""
    totals = _call_row(Call.objects.filter(started_at__gte=start, started_at__lt=end).aggregate(**_call_figures()))
    totals["answer_rate"] = round(totals["calls_answered"] / totals["calls"], 3) if totals["calls"] else None
    return totals


def _satisfaction(start: datetime, end: datetime, field: str, agent=None) -> dict:
    try:
        from surveys.models import SurveyResponse  # the surveys app is optional
    except ImportError:
        return {}
    rows = (
        SurveyResponse.objects.filter(ticket__in=_base(start, end, agent))
        .values(key=F(f"ticket__{field}"))
        .annotate(csat=Avg("csat"), ces=Avg("ces"))
    )
    return {
        r["key"]: {"csat": round(r["csat"], 2) if r["csat"] else None, "ces": round(r["ces"], 2) if r["ces"] else None}
        for r in rows
    }


def volume_by_hour(*, start: datetime, end: datetime, agent=None) -> list[dict]:
    rows = (
        _base(start, end, agent)
        .annotate(hour=ExtractHour("created_at"))
        .values("channel", "hour")
        .annotate(n=Count("id"))
        .order_by("hour", "channel")
    )
    return [{"channel": r["channel"], "hour": r["hour"], "tickets": r["n"]} for r in rows]
