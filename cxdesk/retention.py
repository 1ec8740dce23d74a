"""Data retention: old operational rows deleted on beat's schedule (hourly by default).

Each rule: a model (by label, looked up at run time so cxdesk imports no app), the date
field, a filter for what may go, and the setting with the number of days (0 = keep).

- raw mail / webhook payloads (`channels_app.RawInbound`) once processed or ignored —
  failed ones are dead letters an operator still needs, they stay;
- outgoing webhook delivery logs (`integrations.WebhookDelivery`) once delivered or failed;
- the customer activity trail (`customers.PageView`) — HOOK: that model is added by another
  branch; until it exists the rule is skipped with a log line. Adjust its date field here
  if it is not `created_at`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from celery import shared_task
from django.apps import apps
from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)
BATCH = 5000


@dataclass(frozen=True)
class Rule:
    name: str
    model: str
    setting: str
    date_field: str = "created_at"
    filters: dict = field(default_factory=dict)


RULES = [
    Rule(
        "raw_inbound",
        "channels_app.RawInbound",
        "CXDESK_RETAIN_RAW_INBOUND_DAYS",
        "created_at",
        {"status__in": ["processed", "ignored"]},
    ),
    Rule(
        "webhook_deliveries",
        "integrations.WebhookDelivery",
        "CXDESK_RETAIN_WEBHOOK_DELIVERIES_DAYS",
        "created_at",
        {"status__in": ["delivered", "failed"]},
    ),
    # Activity trail: the model comes from another branch (see module docstring).
    Rule("activity_trail", "customers.PageView", "CXDESK_RETAIN_ACTIVITY_DAYS", "created_at"),
]


def purge(*, now=None) -> dict[str, int | str]:
    """Delete expired rows rule by rule in batches; returns {rule: rows deleted or why skipped}."""
    now = now or timezone.now()
    done: dict[str, int | str] = {}
    for rule in RULES:
        days = getattr(settings, rule.setting, 0)
        if not days:
            done[rule.name] = "kept (0 days)"
            continue
        try:
            model = apps.get_model(rule.model)
        except LookupError:
            log.info("retention: %s skipped, model %s is not installed", rule.name, rule.model)
            done[rule.name] = "skipped (no model)"
            continue
        cutoff = now - timedelta(days=days)
        qs = model.objects.filter(**{f"{rule.date_field}__lt": cutoff}, **rule.filters)
        total = 0
        while True:
            ids = list(qs.values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            total += model.objects.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
        log.info("retention: %s deleted %d rows older than %d days", rule.name, total, days, extra={"rule": rule.name})
        done[rule.name] = total
    return done


@shared_task(name="cxdesk.retention.purge_expired", ignore_result=True)
def purge_expired() -> dict[str, int | str]:
    return purge()
