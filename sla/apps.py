from django.apps import AppConfig


class SlaConfig(AppConfig):
    name = "sla"
    verbose_name = "SLAs and measures"

    def ready(self) -> None:
        from . import receivers

        receivers.connect()

        from cxdesk.memo import watch

        from .models import BusinessCalendar, SlaPolicy

        watch(SlaPolicy, BusinessCalendar)  # the active policies, with their calendars
