"""GDPR: export everything we hold about a customer, and erase a customer.

Export: one zip with `customer.json` (customer, identities, organisation, tickets with their
messages, attachments and events, surveys, merges, and what other apps add through
`signals.customer_exporting`) and the attachment files under `attachments/`.

Erase: personal data and message content are removed, identities and attachment files
deleted, and the tickets stay as anonymous rows (status, channel, timestamps, assignee,
team, SLA, survey scores) so every measure (counts, first response, resolution, CSAT/CES)
is unchanged. Customers merged into this one (the same person) are erased with it. Other
apps remove what they hold through `signals.customer_erasing`.

Who may: `can_export_customer` / `can_erase_customer`, the one place to point at roles.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from typing import Any

from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import services as audit
from cxdesk.errors import ApplicationError
from cxdesk.realtime import broadcast_on_commit
from surveys.models import SurveyResponse
from tickets.models import Attachment, Message, Ticket, TicketEvent

from . import signals
from .models import Customer, CustomerMerge, Identity

ERASED = "[erased]"
# TicketEvent data keys that hold ids, enums and numbers only; anything else is scrubbed.
SAFE_EVENT_KEYS = frozenset(
    {
        "channel", "old", "new", "message_id", "old_assignee", "new_assignee", "old_team", "new_team",
        "added", "removed", "kept", "other", "merge_id", "attachment_id", "source", "target", "move_id",
        "message_ids", "metric", "due_at", "csat", "ces", "ticket_id", "reason",
    }
)  # fmt: skip


def can_export_customer(user) -> bool:
    """Any agent who can see the customer may export it (scoping is done by the lookup)."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def can_erase_customer(user) -> bool:
    """Administrators (the admin role or a superuser): erasing is irreversible. The one
    place that decides."""
    from accounts.roles import is_admin

    return is_admin(user)


def _same_person(customer: Customer) -> list[Customer]:
    """The customer and every customer merged into it (tombstones), transitively."""
    found, frontier = {customer.pk: customer}, [customer.pk]
    while frontier:
        more = list(Customer.objects.filter(merged_into_id__in=frontier).exclude(pk__in=found))
        frontier = [c.pk for c in more]
        found.update({c.pk: c for c in more})
    return list(found.values())


# --- export ----------------------------------------------------------------------------------


def _attachment_name(att: Attachment) -> str:
    return f"attachments/{att.message_id}/{att.pk}-{att.filename}"


def customer_export_data(*, customer: Customer) -> tuple[dict[str, Any], list[Attachment]]:
    people = _same_person(customer)
    ids = [c.pk for c in people]
    tickets = list(
        Ticket.objects.filter(customer_id__in=ids)
        .select_related("assignee", "team", "inbox")
        .prefetch_related("tags")
        .order_by("created_at", "id")
    )
    ticket_ids = [t.pk for t in tickets]
    messages = list(
        Message.objects.filter(ticket_id__in=ticket_ids)
        .select_related("identity", "author")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )
    events = list(TicketEvent.objects.filter(ticket_id__in=ticket_ids).order_by("created_at", "id"))
    surveys = {s.ticket_id: s for s in SurveyResponse.objects.filter(ticket_id__in=ticket_ids)}
    files: list[Attachment] = []
    by_ticket: dict[int, list[dict]] = {t: [] for t in ticket_ids}
    for m in messages:
        atts = []
        for a in m.attachments.all():
            entry = {
                "id": a.pk,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "scan_status": a.scan_status,
            }
            if a.file and not a.is_quarantined:
                entry["file"] = _attachment_name(a)
                files.append(a)
            elif a.is_quarantined:
                entry["withheld"] = f"quarantined by the virus scanner ({a.scan_detail})"
            atts.append(entry)
        by_ticket[m.ticket_id].append(
            {
                "id": m.pk,
                "direction": m.direction,
                "internal_note": m.is_note,
                "channel": m.channel,
                "from": (m.identity.address if m.identity else None),
                "author": (m.author.get_full_name() or m.author.get_username()) if m.author else None,
                "subject": m.subject,
                "body_text": m.body_text,
                "body_html": m.body_html,
                "status": m.status,
                "created_at": m.created_at,
                "received_at": m.received_at,
                "sent_at": m.sent_at,
                "attachments": atts,
            }
        )
    events_by_ticket: dict[int, list[dict]] = {t: [] for t in ticket_ids}
    for e in events:
        events_by_ticket[e.ticket_id].append({"kind": e.kind, "data": e.data, "created_at": e.created_at})
    data: dict[str, Any] = {
        "exported_at": timezone.now(),
        "customer": {
            "id": customer.pk,
            "name": customer.name,
            "organization": customer.organization.name if customer.organization else None,
            "language": customer.language,
            "attributes": customer.attributes,
            "created_at": customer.created_at,
        },
        "merged_customers": [
            {"id": c.pk, "name": c.name, "attributes": c.attributes, "created_at": c.created_at}
            for c in people
            if c.pk != customer.pk
        ],
        "identities": [
            {
                "kind": i.kind,
                "address": i.address,
                "display_name": i.display_name,
                "opted_out_at": i.opted_out_at,
                "last_seen_at": i.last_seen_at,
                "created_at": i.created_at,
            }
            for i in Identity.objects.filter(customer_id__in=ids).order_by("kind", "address")
        ],
        "tickets": [
            {
                "id": t.pk,
                "reference": t.reference,
                "subject": t.subject,
                "status": t.status,
                "priority": t.priority,
                "channel": t.channel,
                "tags": [tag.name for tag in t.tags.all()],
                "created_at": t.created_at,
                "solved_at": t.solved_at,
                "closed_at": t.closed_at,
                "messages": by_ticket[t.pk],
                "events": events_by_ticket[t.pk],
                "survey": (
                    {
                        "csat": surveys[t.pk].csat,
                        "ces": surveys[t.pk].ces,
                        "comment": surveys[t.pk].comment,
                        "sent_at": surveys[t.pk].sent_at,
                        "answered_at": surveys[t.pk].answered_at,
                    }
                    if t.pk in surveys
                    else None
                ),
            }
            for t in tickets
        ],
    }
    data["messages_on_other_tickets"] = [
        {
            "id": m.pk,
            "ticket": m.ticket.reference,
            "channel": m.channel,
            "subject": m.subject,
            "body_text": m.body_text,
            "created_at": m.created_at,
        }
        for m in Message.objects.filter(identity__customer_id__in=ids)
        .exclude(ticket_id__in=ticket_ids)
        .select_related("ticket")
        .order_by("created_at", "id")
    ]
    for _receiver, extra in signals.customer_exporting.send(
        sender=Customer, customer_ids=ids, ticket_ids=ticket_ids, message_ids=[m.pk for m in messages]
    ):
        data.update(extra or {})
    return data, files


def customer_export(*, customer: Customer, actor) -> tempfile.SpooledTemporaryFile:
    """The zip for a data-subject request, as a file positioned at its start (kept in memory
    up to 8 MB, then on disk; files are streamed into it). Recorded in the audit log."""
    if not can_export_customer(actor):
        raise ApplicationError(_("you may not export customer data"), code="permission_denied", status=403)
    data, files = customer_export_data(customer=customer)
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - handed to the response
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("customer.json", json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2))
        for att in files:
            try:
                with att.file.open("rb") as src, zf.open(_attachment_name(att), "w") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            except FileNotFoundError:
                zf.writestr(_attachment_name(att) + ".missing.txt", "the file is no longer in storage")
    out.seek(0)
    audit.customer_exported(
        customer_id=customer.pk,
        counts={"tickets": len(data["tickets"]), "attachments": len(files)},
        actor=actor,
    )
    return out


# --- erase ----------------------------------------------------------------------------------


def _scrub_admin_history(*, customer_ids: list[int], identity_ids: list[int]) -> None:
    """Django admin's change history names objects (`object_repr`, change messages)."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    for model, pks in ((Customer, customer_ids), (Identity, identity_ids)):
        if pks:
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(model), object_id__in=[str(pk) for pk in pks]
            ).update(object_repr=ERASED, change_message="")


@transaction.atomic
def customer_erase(*, customer: Customer, actor) -> dict[str, int]:
    """Erase a customer (and the customers merged into it); keep anonymous tickets."""
    if not can_erase_customer(actor):
        raise ApplicationError(_("only administrators can erase customers"), code="permission_denied", status=403)
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if customer.merged_into_id:
        raise ApplicationError(
            _("This customer was merged into #%(id)s; erase that customer instead.") % {"id": customer.merged_into_id},
            code="merged_customer",
            status=409,
        )
    people = _same_person(customer)
    ids = [c.pk for c in people]
    list(Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
    ticket_ids = list(Ticket.objects.filter(customer_id__in=ids).values_list("pk", flat=True))
    identity_ids = list(Identity.objects.filter(customer_id__in=ids).values_list("pk", flat=True))
    # Their tickets' messages, and what they wrote on anyone else's (e.g. a colleague's shared ticket).
    message_ids = list(
        Message.objects.filter(Q(ticket_id__in=ticket_ids) | Q(identity_id__in=identity_ids)).values_list(
            "pk", flat=True
        )
    )
    counts: dict[str, int] = {"customers": len(ids), "tickets": len(ticket_ids), "messages": len(message_ids)}

    # Attachments: rows go; a file goes from storage unless other messages share its bytes.
    atts = list(Attachment.objects.filter(message_id__in=message_ids))
    digests = {a.sha256 for a in atts if a.sha256}
    shared = set(
        Attachment.objects.filter(sha256__in=digests)
        .exclude(message_id__in=message_ids)
        .values_list("sha256", flat=True)
    )
    paths = {a.file.name for a in atts if a.file and a.sha256 not in shared}
    counts["attachments"] = Attachment.objects.filter(pk__in=[a.pk for a in atts]).delete()[0]
    counts["files"] = len(paths)
    transaction.on_commit(lambda: [default_storage.delete(p) for p in paths if default_storage.exists(p)])

    Message.objects.filter(pk__in=message_ids).update(
        subject="",
        body_text=ERASED,
        body_html="",
        identity=None,
        provider_message_id=None,
        email_message_id="",
        in_reply_to="",
        references="",
        error="",
        metadata={"erased": True},
        updated_at=timezone.now(),
    )
    Ticket.objects.filter(pk__in=ticket_ids).update(subject=ERASED)
    for event in TicketEvent.objects.filter(ticket_id__in=ticket_ids).exclude(data={}):
        scrubbed = {k: (v if k in SAFE_EVENT_KEYS else ERASED) for k, v in event.data.items()}
        if scrubbed != event.data:
            TicketEvent.objects.filter(pk=event.pk).update(data=scrubbed)
    counts["survey_comments"] = (
        SurveyResponse.objects.filter(ticket_id__in=ticket_ids).exclude(comment="").update(comment="")
    )
    counts["identities"] = Identity.objects.filter(pk__in=identity_ids).delete()[1].get("customers.Identity", 0)
    CustomerMerge.objects.filter(Q(kept_id__in=ids) | Q(other_id__in=ids)).delete()
    _scrub_admin_history(customer_ids=ids, identity_ids=identity_ids)
    for _receiver, extra in signals.customer_erasing.send(
        sender=Customer, customer_ids=ids, ticket_ids=ticket_ids, message_ids=message_ids
    ):
        for key, value in (extra or {}).items():
            counts[key] = counts.get(key, 0) + value
    now = timezone.now()
    Customer.objects.filter(pk__in=ids).update(
        name="", organization=None, attributes={}, language="", erased_at=now, updated_at=now
    )
    audit.customer_erased(customer_id=customer.pk, counts=counts, actor=actor)
    broadcast_on_commit(f"customer.{customer.pk}", "customer.updated", customer_id=customer.pk)
    return counts
