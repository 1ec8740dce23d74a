"""Phone calls: who rings, what the timeline says, and the screen-pop.

A call arrives as an `InboundMessage` (channel voice, provider id = the call id) and goes
through `ingest()` like any message, so the caller is resolved by E.164 and the call joins
their open ticket (or opens one). These services then keep the `Call` beside that message:

- `call_received` — decide who rings (the owner of the open ticket if available, else the
  team, else voicemail), record it, and pop the caller's context on those agents' desks;
- `call_progress` — provider status callbacks (ringing, answered, completed, no-answer,
  busy, failed, canceled): forward only, one `TicketEvent` per change;
- `call_voicemail`, `call_recording`, `call_transcript` — the voicemail and recordings
  (fetched into attachments by the `fetch_attachment` Celery task);
- `call_finished` — the call is over: a missed call without a voicemail leaves a clear
  "missed call — call back" event (and the `call-back` tag) on the ticket.

Every function is idempotent on the call id: repeated callbacks change nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cxdesk.realtime import broadcast_on_commit
from tickets import events
from tickets.models import Attachment, Message, Ticket
from tickets.services import broadcast_ticket, ticket_agent_contact, ticket_set_tags

from .models import AgentPhone, Call, Inbox

log = logging.getLogger(__name__)

MAX_RING = 10  # Twilio dials at most 10 numbers at once
CALL_BACK_TAG = "call-back"


@dataclass
class RingTarget:
    user_id: int
    number: str = ""
    sip_uri: str = ""


@dataclass
class CallPlan:
    call: Call
    route: str
    targets: list[RingTarget] = field(default_factory=list)
    repeat: bool = False


def _available_staff():
    """Active staff whose status is available (no profile yet counts as available)."""
    return (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(Q(agent_profile__isnull=True) | Q(agent_profile__status="available"))
    )


def _targets(user_ids: list[int]) -> list[RingTarget]:
    phones = AgentPhone.objects.filter(user_id__in=user_ids, user__in=_available_staff()).exclude(number="", sip_uri="")
    by_user = {p.user_id: p for p in phones}
    return [
        RingTarget(user_id=uid, number=by_user[uid].number, sip_uri=by_user[uid].sip_uri)
        for uid in user_ids
        if uid in by_user
    ]


def call_route(*, ticket: Ticket, inbox: Inbox) -> tuple[str, list[RingTarget]]:
    """Who rings: the agent who owns the caller's open ticket (continuity), else the
    ticket's (or inbox's) team, else nobody (voicemail)."""
    if ticket.is_open and ticket.assignee_id:
        owner = _targets([ticket.assignee_id])
        if owner:
            return Call.Route.AGENT, owner
    team_id = ticket.team_id or inbox.default_team_id
    if team_id:
        members = list(
            _available_staff().filter(teams__id=team_id).order_by("id").values_list("id", flat=True)[: MAX_RING * 3]
        )
        team = _targets(members)[:MAX_RING]
        if team:
            return Call.Route.TEAM, team
    return Call.Route.VOICEMAIL, []


def _pop_recipients(call: Call, ticket: Ticket) -> list[int]:
    """The agents rung, plus the ticket's team (they see who is calling)."""
    ids = list(call.rung)
    team_id = ticket.team_id or call.inbox.default_team_id
    if team_id:
        ids += list(
            get_user_model()
            .objects.filter(teams__id=team_id, is_active=True, is_staff=True)
            .values_list("id", flat=True)[:50]
        )
    if ticket.assignee_id:
        ids.append(ticket.assignee_id)
    return sorted(set(ids))


@transaction.atomic
def call_received(*, inbox: Inbox, message: Message, from_number: str, to_number: str) -> CallPlan:
    """An incoming call was stored as `message`: plan who rings and pop the screen.
    A repeated webhook for the same call returns the plan already made."""
    sid = message.provider_message_id or ""
    call = Call.objects.select_for_update().filter(inbox=inbox, call_sid=sid).first()
    if call is not None:
        targets = _targets(call.rung) if call.route in (Call.Route.AGENT, Call.Route.TEAM) else []
        return CallPlan(call=call, route=call.route, targets=targets, repeat=True)
    ticket = Ticket.objects.select_related("inbox").get(pk=message.ticket_id)
    route, targets = call_route(ticket=ticket, inbox=inbox)
    try:
        with transaction.atomic():
            call = Call.objects.create(
                inbox=inbox,
                call_sid=sid,
                from_number=from_number[:64],
                to_number=to_number[:64],
                message=message,
                route=route,
                rung=[t.user_id for t in targets],
                started_at=message.created_at or timezone.now(),
            )
    except IntegrityError:
        # The same webhook, delivered twice at once: the other delivery planned it.
        call = Call.objects.get(inbox=inbox, call_sid=sid)
        return CallPlan(call=call, route=call.route, targets=_targets(call.rung), repeat=True)
    events.call_status(ticket, call_id=call.pk, call_sid=sid, old="", new=Call.Status.RINGING)
    _summarise(call)
    caller = message.identity.address if message.identity_id else from_number
    for user_id in _pop_recipients(call, ticket):
        broadcast_on_commit(
            f"agent.{user_id}",
            "call.ringing",
            ticket_id=ticket.pk,
            call_id=call.pk,
            message_id=message.pk,
            caller=caller,
            route=route,
            rung=user_id in call.rung,
        )
    return CallPlan(call=call, route=route, targets=targets)


def _locked(inbox: Inbox, call_sid: str) -> Call | None:
    return (
        Call.objects.select_for_update(of=("self",))
        .select_related("message__ticket", "agent")
        .filter(inbox=inbox, call_sid=call_sid)
        .first()
    )


def _announce(call: Call, event: str, **data) -> None:
    ticket = call.message.ticket
    for user_id in _pop_recipients(call, ticket):
        broadcast_on_commit(f"agent.{user_id}", event, ticket_id=ticket.pk, call_id=call.pk, **data)


def _move(call: Call, status: str, *, agent=None, duration: int | None = None) -> bool:
    """Move the call forward to `status` (never back) with its event. Returns whether it moved."""
    rank = Call.STATUS_RANK
    if status not in rank or rank[status] <= rank.get(call.status, 0):
        return False
    old = call.status
    now = timezone.now()
    call.status = status
    answered_by = None
    if status == Call.Status.IN_PROGRESS and call.answered_at is None:
        call.answered_at = now
        if agent is not None:
            call.agent = answered_by = agent
    if status in Call.ENDED:
        call.ended_at = call.ended_at or now
    if duration is not None and call.duration is None and call.answered:
        call.duration = duration
    call.save()
    events.call_status(
        call.message.ticket,
        call_id=call.pk,
        call_sid=call.call_sid,
        old=old,
        new=status,
        agent=call.agent if status != Call.Status.RINGING else None,
        duration=call.duration if status in Call.ENDED else None,
    )
    if answered_by is not None:
        ticket_agent_contact(ticket=call.message.ticket, agent=answered_by, at=now)
    return True


@transaction.atomic
def call_progress(
    *,
    inbox: Inbox,
    call_sid: str,
    status: str,
    agent_id: int | None = None,
    duration: int | None = None,
    leg: bool = False,
) -> Call | None:
    """A status callback. `leg` is one agent's phone (a <Number>/<Sip> of the <Dial>):
    its answer answers the call; its own no-answer/busy does not end the call (another
    phone may still answer). `duration` is the talk time when known."""
    call = _locked(inbox, call_sid)
    if call is None:
        log.info("voice status %s for unknown call %s ignored", status, call_sid)
        return None
    agent = None
    if agent_id is not None and agent_id in call.rung:
        agent = get_user_model().objects.filter(pk=agent_id).first()
    if status == "answered":
        status = Call.Status.IN_PROGRESS
    if leg:
        if status == Call.Status.IN_PROGRESS:
            if _move(call, status, agent=agent):
                name = (agent.get_full_name() or agent.username) if agent else ""
                _announce(call, "call.answered", agent=name)
        elif status == Call.Status.COMPLETED and call.agent_id and call.agent_id == agent_id:
            _end(call, Call.Status.COMPLETED, duration)
        return call
    if status in Call.ENDED:
        # The caller's call is over. (Twilio picking up to play a greeting is not an
        # answer: unanswered, "completed" is a no-answer for us.)
        if status == Call.Status.COMPLETED and not call.answered:
            status = Call.Status.NO_ANSWER
        _end(call, status, duration)
        _finish(call)
    return call


@transaction.atomic
def call_dial_result(*, inbox: Inbox, call_sid: str, status: str, duration: int | None = None) -> Call | None:
    """The ringing (<Dial>) is over: answered and completed, or no-answer / busy / failed /
    canceled (then the caller goes to voicemail)."""
    call = _locked(inbox, call_sid)
    if call is None:
        log.info("voice dial result %s for unknown call %s ignored", status, call_sid)
        return None
    if status in (Call.Status.COMPLETED, "answered"):
        if not call.answered:
            _move(call, Call.Status.IN_PROGRESS)
        _end(call, Call.Status.COMPLETED, duration)
    elif status in Call.ENDED:
        _end(call, status, None)
    return call


def _end(call: Call, status: str, duration: int | None) -> None:
    moved = _move(call, status, duration=duration)
    if not moved and duration is not None and call.duration is None and call.answered:
        call.duration = duration
        call.save(update_fields=["duration"])
        _summarise(call)
    if moved:
        _summarise(call)
        _announce(call, "call.ended", status=status)


@transaction.atomic
def call_voicemail(*, inbox: Inbox, call_sid: str, recording_sid: str, recording_url: str, seconds: int) -> Call | None:
    """The caller reached voicemail. A recording with sound is a voicemail (its file comes
    with the recording callback); none means a missed call."""
    call = _locked(inbox, call_sid)
    if call is None:
        return None
    if recording_sid and seconds > 0:
        if not call.voicemail:
            call.voicemail = True
            call.recording_sid = call.recording_sid or recording_sid[:64]
            call.save(update_fields=["voicemail", "recording_sid"])
            _summarise(call)
    _finish(call)
    return call


@transaction.atomic
def call_recording(*, inbox: Inbox, call_sid: str, recording_sid: str, recording_url: str) -> Attachment | None:
    """A recording is ready: one attachment on the call's message (once per recording),
    fetched through the provider's API by the `fetch_attachment` task."""
    call = _locked(inbox, call_sid)
    if call is None or not recording_sid or not recording_url:
        return None
    message = call.message
    existing = message.attachments.filter(filename__startswith=f"{recording_sid}.").first()
    if existing is not None:
        return existing
    attachment = Attachment.objects.create(
        message=message,
        filename=f"{recording_sid}.mp3",
        content_type="audio/mpeg",
        source_url=f"{recording_url}.mp3"[:2000],
        sha256="",
    )
    if not call.recording_sid:
        call.recording_sid = recording_sid[:64]
        call.save(update_fields=["recording_sid"])
    from .tasks import fetch_attachment

    transaction.on_commit(lambda: fetch_attachment.delay(attachment.pk))
    return attachment


@transaction.atomic
def call_transcript(*, inbox: Inbox, call_sid: str, text: str) -> Call | None:
    call = _locked(inbox, call_sid)
    if call is None or not text or call.transcript == text:
        return call
    call.transcript = text[:20000]
    call.voicemail = True
    call.save(update_fields=["transcript", "voicemail"])
    _summarise(call)
    return call


@transaction.atomic
def call_finished(*, inbox: Inbox, call_sid: str) -> Call | None:
    call = _locked(inbox, call_sid)
    if call is not None:
        _finish(call)
    return call


def _finish(call: Call) -> None:
    """The caller is gone. Unanswered without a voicemail: the ticket says "call back"."""
    if call.status not in Call.ENDED:
        _move(call, Call.Status.NO_ANSWER if not call.answered else Call.Status.COMPLETED)
    if call.answered or call.voicemail or call.missed_recorded:
        return
    call.missed_recorded = True
    call.save(update_fields=["missed_recorded"])
    ticket = Ticket.objects.select_for_update().get(pk=call.message.ticket_id)
    events.call_missed(ticket, call_id=call.pk, call_sid=call.call_sid, caller=call.from_number)
    current = list(ticket.tags.values_list("name", flat=True))
    ticket_set_tags(ticket=ticket, tags=[*current, CALL_BACK_TAG])
    Ticket.objects.filter(pk=ticket.pk).update(updated_at=timezone.now())
    broadcast_ticket(ticket)
    _summarise(call)


def _clock(seconds: int | None) -> str:
    seconds = seconds or 0
    return f"{seconds // 60}:{seconds % 60:02d}"


def _summarise(call: Call) -> None:
    """The call's timeline entry says what happened, in words."""
    lines = [f"Incoming call from {call.from_number}"]
    if call.answered:
        who = (call.agent.get_full_name() or call.agent.username) if call.agent else "an agent"
        lines[0] += f" — answered by {who}" + (f", {_clock(call.duration)}" if call.duration is not None else "")
    elif call.voicemail:
        lines[0] += " — voicemail"
    elif call.status in Call.ENDED:
        lines[0] += " — missed, call back"
    if call.transcript:
        lines.append(f"Voicemail transcript: {call.transcript}")
    text = "\n\n".join(lines)
    message = call.message
    meta = {
        **message.metadata,
        "call": {
            "sid": call.call_sid,
            "status": call.status,
            "route": call.route,
            "agent": call.agent_id,
            "duration": call.duration,
            "voicemail": call.voicemail,
        },
    }
    Message.objects.filter(pk=message.pk).update(body_text=text, metadata=meta, updated_at=timezone.now())
    message.body_text, message.metadata = text, meta
